"""MTCNN on LiteRT: the same faces as the TensorFlow path it replaced, and no TensorFlow once converted."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.face_shards import fake_image
from realness_tasks import mtcnn_lite, samples
from realness_tasks.mtcnn_lite import LiteMtcnn, converted_networks, pyramid_scales
from realness_tasks.settings import DetectionSettings
from tests.conftest import MTCNN_NETWORKS_DIR, ROOT

PHOTOS = samples.sample_photos()


@pytest.fixture(scope="module")
def networks() -> dict[str, Path]:
    """The session's shared cache, converted here if no test converted it yet."""
    return converted_networks(Path(MTCNN_NETWORKS_DIR))


@pytest.fixture(scope="module")
def tensorflow_mtcnn():
    """Builds the TensorFlow reference on demand, one per settings (importing it imports TensorFlow)."""
    from bench.mtcnn_reference import TensorFlowMtcnn

    built: dict[DetectionSettings, TensorFlowMtcnn] = {}
    return lambda settings: built.setdefault(settings, TensorFlowMtcnn(settings))


def rgb(frame: np.ndarray, max_side: int = 640) -> np.ndarray:
    """A BGR frame as ``MtcnnDetector`` hands it to MTCNN: long side at most ``max_side``, RGB."""
    scale = max_side / max(frame.shape[:2])
    if scale < 1:
        frame = cv2.resize(frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
                           interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def pasted_frames() -> np.ndarray:
    """Four 720p frames, each with one sample face placed somewhere on its own background."""
    frames = []
    for i, photo in enumerate(PHOTOS):
        frame = samples.background((1280, 720), seed=i)
        samples.place(frame, photo.image, 0.3 + 0.2 * i, (160 * i - 240, 40 - 30 * i))
        frames.append(rgb(frame))
    return np.stack(frames)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x1, y1, x2, y2 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def batches() -> list[tuple[str, np.ndarray]]:
    """Each sample photo alone (four sizes), face swaps of them, and a batch of four 720p frames."""
    found = [(photo.name, rgb(photo.image)[None]) for photo in PHOTOS]
    found += [(f"swap-{i}", rgb(fake_image(PHOTOS[i], PHOTOS[(i + 1) % 4], seed=i))[None]) for i in (0, 2)]
    return found + [("720p-batch", pasted_frames())]


@pytest.mark.parametrize("min_face_size", [40, 20, 10])  # the default; more pyramid levels; a level upscaled
def test_litert_finds_the_faces_tensorflow_finds(networks, tensorflow_mtcnn, min_face_size):
    """Every O-Net row (before the confidence cut): same count per image, same boxes, scores, landmarks."""
    settings = DetectionSettings(min_face_size=min_face_size)
    lite, reference = LiteMtcnn(networks, settings, threads=2), tensorflow_mtcnn(settings)
    compared = 0
    for name, images in batches():
        ours, theirs = lite.detect(images), reference.detect(images)
        for image in range(len(images)):
            mine, expected = ours[ours[:, 0] == image], theirs[theirs[:, 0] == image]
            assert len(mine) == len(expected), f"{name}[{image}]: {len(mine)} faces on LiteRT, {len(expected)} on TF"
            for row in expected:
                match = max(mine, key=lambda candidate: box_iou(candidate[1:5], row[1:5]))
                assert box_iou(match[1:5], row[1:5]) > 0.98, name
                assert abs(match[5] - row[5]) < 1e-3, name
                assert np.abs(match[6:16] - row[6:16]).max() < 1.0, name  # landmarks, in pixels
                compared += 1
    assert compared >= len(PHOTOS) + 2 + 4  # at least every face that is there was compared


def test_crops_match_tf_crop_and_resize():
    """Boxes inside, across the border and fully outside (samples off the image are 0, as in TF)."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    images = rng.uniform(-1, 1, (2, 61, 83, 3)).astype(np.float32)
    corners = rng.uniform(-20, 100, (40, 2))
    sides = rng.uniform(4, 50, (40, 1))
    rows = np.column_stack([rng.integers(0, 2, 40), corners, corners + sides, np.ones(40)])
    rows[0, 1:5] = (90, 70, 120, 100)  # entirely outside
    expected = tf.image.crop_and_resize(images, rows[:, [2, 1, 4, 3]] / np.asarray([[61, 83, 61, 83]]),
                                        rows[:, 0].astype(int), (24, 24)).numpy()
    actual = mtcnn_lite.crop_and_resize(images, rows, 24)
    assert actual.shape == (40, 24, 24, 3) and not actual[0].any()
    assert np.abs(actual - expected).max() < 1e-5


@pytest.mark.parametrize("scale", [1.2, 0.3, 12 / 40 * 0.709 ** 7])
def test_pyramid_levels_match_tf_area_resize(scale):
    import tensorflow as tf

    images = (rgb(PHOTOS[1].image)[None].astype(np.float32) - 127.5) / 128
    expected = tf.image.resize(images, np.asarray(images.shape[1:3]) * scale, method="area").numpy()
    actual = mtcnn_lite.resize_area(images, scale)
    assert actual.shape == expected.shape
    assert np.abs(actual - expected).max() < 2e-4  # on the [-1, 1] scale; OpenCV and TF round differently


@pytest.mark.parametrize("min_face_size", [20, 40, 80, 150])
def test_pyramid_never_goes_below_the_pnet_window(min_face_size):
    for min_side in (90, 211, 360, 480, 1080):
        scales = pyramid_scales(min_side, min_face_size)
        if min_side < min_face_size:
            assert scales == []  # no face that large fits in the image
            continue
        assert scales[0] == pytest.approx(12 / min_face_size)
        assert all(min_side * s >= 12 for s in scales)
        assert min_side * scales[-1] * 0.709 < 12  # nothing left out that P-Net could still use


def test_a_cold_cache_converts_once_into_files_named_by_the_weights(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="realness_tasks.mtcnn_lite"):
        first = converted_networks(tmp_path)
    assert caplog.text.count("MTCNN: converting pnet, rnet, onet") == 1
    sha = mtcnn_lite.weights_sha256(mtcnn_lite.source_weights_dir())
    assert first == {name: tmp_path / f"mtcnn-{name}-{sha[:16]}.tflite" for name in ("pnet", "rnet", "onet")}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in first.values())  # no partial files
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="realness_tasks.mtcnn_lite"):
        assert converted_networks(tmp_path) == first
    assert "converting" not in caplog.text
    rows = LiteMtcnn(first, DetectionSettings(), threads=1).detect(rgb(PHOTOS[0].image)[None])
    assert len(rows) == 1 and rows[0, 5] > 0.9


def test_other_weights_get_other_files(tmp_path):
    for name in ("pnet.lz4", "rnet.lz4", "onet.lz4"):
        (tmp_path / name).write_bytes(name.encode())
    before = mtcnn_lite.weights_sha256(tmp_path)
    (tmp_path / "rnet.lz4").write_bytes(b"retrained")
    assert mtcnn_lite.weights_sha256(tmp_path) != before


def test_a_cached_file_of_another_network_is_refused(networks):
    wrong = mtcnn_lite.LiteNetwork(networks["rnet"], mtcnn_lite.NETWORKS["onet"].outputs, threads=1)
    with pytest.raises(ValueError, match="delete the file to have it converted again"):
        wrong(np.zeros((1, 24, 24, 3), np.float32))


def test_missing_mtcnn_package_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(mtcnn_lite.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="mtcnn is not installed"):
        converted_networks(tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_warm_cache_detects_faces_without_importing_tensorflow(networks):
    """What a mapped extract_faces task does once the networks are converted: no TensorFlow, no Keras."""
    script = (
        "import json, sys\n"
        "from realness_tasks import samples\n"
        "from realness_tasks.faces import MtcnnDetector\n"
        "from realness_tasks.settings import DetectionSettings\n"
        "found = MtcnnDetector(DetectionSettings()).detect([p.image for p in samples.sample_photos()])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'mtcnn', 'tf_keras'))\n"
        "print(json.dumps({'faces': [len(f.detections) for f in found], 'heavy': heavy}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REALNESS_DETECTION_NETWORKS_DIR": str(networks["pnet"].parent)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"faces": [1] * len(PHOTOS), "heavy": []}
