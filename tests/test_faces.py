"""MTCNN detection on real photos and sample videos, the crop convention, and merging two detectors."""

from __future__ import annotations

import logging
import sys
import threading
import types
from dataclasses import replace

import cv2
import numpy as np
import pytest

from realness_tasks import samples
from realness_tasks.config import RealnessConfig
from realness_tasks.faces import (
    Detection,
    FrameFaces,
    MergingDetector,
    MtcnnDetector,
    build_detector,
    crop_box,
    crop_face,
    dominant_faces,
    encode_jpeg,
    iou,
    merge_detections,
)
from realness_tasks.frames import FrameSampler, probe_video
from realness_tasks.settings import AzureSettings, CropSettings, DetectionSettings, SamplingSettings

PHOTOS = {p.name: p for p in samples.sample_photos()}


@pytest.fixture(scope="module")
def mtcnn() -> MtcnnDetector:
    """One MTCNN for the module, on the default settings (min_face_size 40, detect_max_side 640)."""
    return MtcnnDetector(DetectionSettings())


def test_mtcnn_uses_the_configured_threads_or_one_per_core(mtcnn):
    import os

    mtcnn.load()
    fixed = MtcnnDetector(DetectionSettings(threads=1), mtcnn.networks_dir)
    fixed.load()
    assert {n.threads for n in (fixed._mtcnn.pnet, fixed._mtcnn.rnet, fixed._mtcnn.onet)} == {1}
    assert mtcnn._mtcnn.pnet.threads == os.cpu_count()


def pasted(photo: samples.SamplePhoto, size: tuple[int, int], height_fraction: float, offset: tuple[int, int],
           seed: int = 0) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A frame with ``photo`` pasted in, and where the photo's known face box landed in it.

    The landing spot is measured (where the frame differs from the background), not recomputed.
    """
    background = samples.background(size, seed)
    frame = background.copy()
    samples.place(frame, photo.image, height_fraction, offset)
    ys, xs = np.nonzero((frame != background).any(axis=2))
    x0, y0 = xs.min(), ys.min()
    scale_x = (xs.max() + 1 - x0) / photo.image.shape[1]
    scale_y = (ys.max() + 1 - y0) / photo.image.shape[0]
    fx, fy, fw, fh = photo.face_box
    return frame, (x0 + fx * scale_x, y0 + fy * scale_y, fw * scale_x, fh * scale_y)


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_faces_found_with_min_face_size_above_20(mtcnn, name):
    """mtcnn 1.0.0's own pyramid finds nothing here at min_face_size 40: its last levels are under 12 px."""
    photo = PHOTOS[name]
    assert mtcnn.settings.min_face_size == 40
    [found] = mtcnn.detect([photo.image])
    assert len(found.detections) == 1
    face = found.detections[0]
    assert iou(face.box, photo.face_box) > 0.8
    assert face.confidence >= mtcnn.settings.min_confidence and face.detector == "mtcnn"


def test_larger_min_face_size_still_finds_large_faces():
    photo = PHOTOS["obama2"]  # face about 117 x 161 px
    detector = MtcnnDetector(DetectionSettings(min_face_size=80))
    [found] = detector.detect([photo.image])
    assert len(found.detections) == 1 and iou(found.detections[0].box, photo.face_box) > 0.8


def test_boxes_and_landmarks_map_back_to_full_resolution(mtcnn):
    """Frames of two sizes in one call: each is downscaled by its own factor and mapped back by it."""
    frames, expected = [], []
    for size, name, offset in [((1280, 720), "astronaut", (-150, 0)), ((1920, 1080), "obama", (200, 40)),
                               ((1280, 720), "biden", (90, -20))]:
        frame, box = pasted(PHOTOS[name], size, 0.9, offset)
        frames.append(frame)
        expected.append(box)
    results = mtcnn.detect(frames)
    assert mtcnn.settings.detect_max_side < 1280  # the frames really were downscaled
    for frame, box, found in zip(frames, expected, results):
        assert len(found.detections) == 1
        face = found.detections[0]
        assert iou(face.box, box) > 0.75, (face.box, box)
        x, y, w, h = face.box
        xs, ys = face.landmarks[0::2], face.landmarks[1::2]
        assert all(x <= v <= x + w for v in xs) and all(y <= v <= y + h for v in ys)
        left_eye, right_eye, nose = xs[0], xs[1], xs[2]
        assert left_eye < nose < right_eye  # order: eyes, nose, mouth corners


def test_faces_only_where_the_video_shows_one(mtcnn, tmp_path):
    photo = PHOTOS["obama2"]
    video = samples.face_video(tmp_path / "span.mp4", photo.image, seconds=2.0, fps=5.0, size=(1280, 720),
                               face_between=(0.6, 1.4))
    sampling = SamplingSettings(every_seconds=0.2)
    sampler = FrameSampler(video.path, probe_video(video.path, sampling), sampling)
    frames = list(sampler)
    assert [f.index for f in frames] == list(range(video.frame_count))
    assert 0 < len(video.face_frames) < video.frame_count
    results = mtcnn.detect([f.image for f in frames])
    with_faces = {f.index for f, found in zip(frames, results) if found.detections}
    assert with_faces == video.face_frames
    assert all(len(found.detections) == 1 for found in results if found.detections)


def test_batches_split_by_batch_size_give_the_same_faces(mtcnn):
    frames = [pasted(PHOTOS[name], (640, 360), 0.9, (0, 0), seed=i)[0] for i, name in enumerate(sorted(PHOTOS))]
    small_batches = MtcnnDetector(replace(mtcnn.settings, batch_size=3))
    together = mtcnn.detect(frames)
    split = small_batches.detect(frames)
    assert small_batches.stats()["batches"] == 2
    # Not bit-identical: mtcnn's NMS breaks ties between candidates scored 1.0 by an unstable sort over
    # the whole batch, so which of two near-identical candidates survives depends on the batch.
    for a, b in zip(together, split):
        assert len(a.detections) == len(b.detections) == 1
        assert iou(a.detections[0].box, b.detections[0].box) > 0.85


# --- the crop convention ---------------------------------------------------------------------------------

def marked_image(box: tuple[int, int, int, int], shape=(300, 400)) -> np.ndarray:
    """Grey image with the box painted white, so crops show where the box and the padding went."""
    image = np.full((*shape, 3), 60, np.uint8)
    x, y, w, h = box
    image[y:y + h, x:x + w] = 255
    return image


def content_extent(crop: np.ndarray, level: int) -> tuple[int, int, int, int]:
    """Bounding box (x0, y0, x1, y1) of the pixels at about ``level``."""
    ys, xs = np.nonzero(np.abs(crop.astype(int) - level).max(axis=2) <= 12)
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def test_crop_adds_the_margin_and_pads_to_a_square():
    box = (120, 100, 80, 40)  # wide box: the crop is padded top and bottom
    settings = CropSettings(margin=0.25, size=120)
    crop = crop_face(marked_image(box), box, settings)
    assert crop.shape == (settings.size, settings.size, 3) and crop.dtype == np.uint8
    region_w, region_h = box[2] * 1.5, box[3] * 1.5  # margin on each side
    scale = settings.size / max(region_w, region_h)
    content_h = round(region_h * scale)
    pad = (settings.size - content_h) // 2
    assert np.all(crop[:pad - 1] == 0) and np.all(crop[pad + content_h + 1:] == 0)
    assert crop[pad + 2:pad + content_h - 2].min() > 0  # no black inside the region
    x0, y0, x1, y1 = content_extent(crop, 255)
    assert x1 - x0 == pytest.approx(box[2] * scale, abs=2)  # the box keeps its aspect
    assert y1 - y0 == pytest.approx(box[3] * scale, abs=2)
    assert (x0 + x1) / 2 == pytest.approx(settings.size / 2, abs=1.5)  # and sits in the middle
    assert (y0 + y1) / 2 == pytest.approx(settings.size / 2, abs=1.5)


def test_crop_of_a_tall_box_is_padded_left_and_right():
    box = (150, 60, 40, 100)
    settings = CropSettings(margin=0.1, size=64)
    crop = crop_face(marked_image(box), box, settings)
    content_w = round(box[2] * 1.2 * settings.size / (box[3] * 1.2))
    pad = (settings.size - content_w) // 2
    assert np.all(crop[:, :pad - 1] == 0) and np.all(crop[:, pad + content_w + 1:] == 0)
    assert crop[:, pad + 1:pad + content_w - 1].min() > 0


def test_crop_is_clamped_at_the_image_border():
    box = (0, 0, 80, 40)  # in the top-left corner: no margin available left and above
    settings = CropSettings(margin=0.25, size=100)
    image = marked_image(box)
    assert crop_box(image.shape, box, settings.margin) == (0, 0, 100, 50)
    crop = crop_face(image, box, settings)
    x0, y0, x1, y1 = content_extent(crop, 255)
    region_top = (settings.size - 50) // 2  # 100 x 50 region scaled by 1, centred vertically
    assert (x0, y0) == (0, region_top)  # the box starts where the region starts: nothing was invented
    assert (x1 - x0, y1 - y0) == (80, 40)
    far = (380, 280, 60, 60)  # running off the bottom-right corner
    assert crop_box(image.shape, far, 0.3) == (362, 262, 400, 300)


def test_crop_of_a_box_outside_the_image_is_refused():
    with pytest.raises(ValueError):
        crop_face(marked_image((10, 10, 5, 5)), (500, 500, 20, 20), CropSettings())


def test_jpeg_round_trip_keeps_the_crop():
    crop = crop_face(PHOTOS["biden"].image, PHOTOS["biden"].face_box, CropSettings())
    data = encode_jpeg(crop, 92)
    assert data[:2] == b"\xff\xd8"
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == crop.shape
    assert np.abs(decoded.astype(int) - crop.astype(int)).mean() < 4
    assert len(encode_jpeg(crop, 30)) < len(data)


# --- choosing and merging faces --------------------------------------------------------------------------

def face(box, confidence=0.99, detector="mtcnn", landmarks=None) -> Detection:
    return Detection(tuple(float(v) for v in box), confidence, landmarks, detector)


def test_dominant_faces_orders_by_area_times_confidence():
    big_unsure = face((0, 0, 100, 100), 0.5)  # 5000
    small_sure = face((200, 0, 60, 60), 1.0)  # 3600
    medium = face((300, 0, 80, 80), 0.9)  # 5760
    assert dominant_faces([small_sure, big_unsure, medium], 2) == [medium, big_unsure]
    assert dominant_faces([], 2) == []


def test_overlapping_faces_merge_into_one_with_weighted_box():
    landmarks = tuple(float(v) for v in range(10))
    mtcnn = face((100, 100, 50, 60), 0.9, "mtcnn", landmarks)
    azure = face((110, 104, 50, 60), 0.6, "azure")
    [merged] = merge_detections([mtcnn], [azure], 0.4)
    assert merged.detector == "both"
    assert merged.confidence == 0.9
    assert merged.landmarks == landmarks
    expected_x = (0.9 * 100 + 0.6 * 110) / 1.5
    assert merged.box[0] == pytest.approx(expected_x)
    assert merged.box[1] == pytest.approx((0.9 * 100 + 0.6 * 104) / 1.5)
    assert mtcnn.box[0] < merged.box[0] < azure.box[0]  # closer to the more confident box
    assert merged.box[0] - mtcnn.box[0] < azure.box[0] - merged.box[0]


def test_merged_face_takes_the_secondary_landmarks_when_the_primary_has_none():
    azure_landmarks = tuple(float(v) for v in range(10, 20))
    [merged] = merge_detections([face((0, 0, 40, 40))], [face((2, 2, 40, 40), 0.95, "azure", azure_landmarks)], 0.4)
    assert merged.landmarks == azure_landmarks and merged.confidence == 0.99


def test_disjoint_faces_are_kept_with_their_own_detector():
    mtcnn = face((0, 0, 40, 40), 0.95, "mtcnn")
    azure = face((200, 200, 40, 40), 0.8, "azure")
    merged = merge_detections([mtcnn], [azure], 0.4)
    assert merged == [mtcnn, azure]


def test_one_detector_empty_keeps_the_other():
    faces = [face((0, 0, 40, 40)), face((100, 0, 40, 40), 0.92)]
    assert merge_detections(faces, [], 0.4) == faces
    assert merge_detections([], [replace(f, detector="azure") for f in faces], 0.4) == \
        [replace(f, detector="azure") for f in faces]


def test_matching_is_greedy_by_highest_iou_and_respects_the_threshold():
    a1 = face((100, 100, 50, 50), 0.9)
    a2 = face((120, 100, 50, 50), 0.9)
    b1 = face((118, 100, 50, 50), 0.9, "azure")  # overlaps a2 more than a1
    merged = merge_detections([a1, a2], [b1], 0.4)
    assert [d.detector for d in merged] == ["mtcnn", "both"]
    assert merged[0] == a1
    low_overlap = face((130, 100, 50, 50), 0.9, "azure")
    assert iou(a1.box, low_overlap.box) < 0.4
    assert [d.detector for d in merge_detections([a1], [low_overlap], 0.4)] == ["mtcnn", "azure"]


# --- two detectors together ------------------------------------------------------------------------------

class ScriptedAzure:
    """Stands in for AzureFaceDetector: answers from a script, one (faces, status) per frame."""

    name = "azure"

    def __init__(self, script: list[tuple[list[Detection], str]]):
        self.script = script
        self.threads: set[str] = set()

    def detect(self, frames):
        self.threads.add(threading.current_thread().name)
        assert len(frames) == len(self.script)
        return [FrameFaces(list(found), azure_status=status) for found, status in self.script]

    def stats(self) -> dict[str, int]:
        return {"calls": len(self.script), "cached": 1}


def test_merging_detector_merges_per_frame_and_counts_contributions(mtcnn):
    photo = PHOTOS["astronaut"]
    frame_face, box = pasted(photo, (640, 360), 0.9, (0, 0))
    frame_empty = samples.background((640, 360), seed=5)
    x, y, w, h = box
    azure = ScriptedAzure([
        ([face((x + 3, y + 2, w, h), 0.97, "azure"), face((10, 10, 50, 50), 0.9, "azure")], "ok"),
        ([], "skipped:budget"),
        ([face((300, 100, 60, 60), 0.93, "azure")], "cached"),
    ])
    merging = MergingDetector(mtcnn, azure, iou_threshold=0.4)
    results = merging.detect([frame_face, frame_face, frame_empty])

    assert [r.azure_status for r in results] == ["ok", "skipped:budget", "cached"]
    assert sorted(d.detector for d in results[0].detections) == ["azure", "both"]
    assert [d.detector for d in results[1].detections] == ["mtcnn"]
    assert [d.detector for d in results[2].detections] == ["azure"]
    both = next(d for d in results[0].detections if d.detector == "both")
    assert both.landmarks is not None and iou(both.box, box) > 0.8
    assert azure.threads and threading.main_thread().name not in azure.threads  # ran beside MTCNN

    stats = merging.stats()
    assert stats["both"] == 1 and stats["mtcnn_only"] == 1 and stats["azure_only"] == 2
    assert stats["frames"] == 3
    assert stats["frames_mtcnn_only"] == 1  # the frame Azure skipped
    assert stats["frames_found_by_mtcnn_only"] == 1 and stats["frames_found_by_azure_only"] == 1
    assert stats["azure_calls"] == 3 and stats["azure_cached"] == 1
    assert stats["mtcnn_frames"] >= 3


def test_without_azure_the_detector_is_mtcnn_alone(tmp_path, caplog):
    cfg = RealnessConfig(home=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="realness_tasks.faces"):
        detector = build_detector(cfg)
    assert isinstance(detector, MtcnnDetector)
    assert detector.networks_dir == tmp_path / "weights"  # converted networks cached under the home by default
    assert "Azure Face not configured; detecting with MTCNN only" in caplog.text


def test_with_azure_configured_mtcnn_is_merged_with_it(tmp_path, monkeypatch):
    built = {}

    class RecordingAzure(ScriptedAzure):
        def __init__(self, settings, cache_dir=None):
            super().__init__([])
            built.update(settings=settings, cache_dir=cache_dir)

    monkeypatch.setitem(sys.modules, "realness_tasks.azure_face",
                        types.SimpleNamespace(AzureFaceDetector=RecordingAzure))
    azure = AzureSettings(endpoint="https://example.cognitiveservices.azure.com", key="k")
    cfg = RealnessConfig(home=str(tmp_path), azure=azure, detection=DetectionSettings(merge_iou=0.55))
    detector = build_detector(cfg)
    assert isinstance(detector, MergingDetector)
    assert isinstance(detector.primary, MtcnnDetector) and isinstance(detector.secondary, RecordingAzure)
    assert detector.iou_threshold == 0.55
    assert built == {"settings": azure, "cache_dir": tmp_path / "azure-cache"}
