"""Keyframe-aware sampling (issue 33): decode only the keyframes nearest the planned frames when the
sampling gap is at least the keyframe interval, and what that changes (nothing, at the same frames)."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from realness_tasks import frames as frames_module
from realness_tasks import ledger, samples
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.frames import FrameSampler, coverage, keyframe_interval, probe_video
from realness_tasks.ingest import run_ingest
from realness_tasks.settings import SamplingSettings
from realness_tasks.shards import read_shard
from realness_tasks.storage import open_store
from tests.conftest import MTCNN_NETWORKS_DIR

SIZE = (320, 180)
FPS = 10.0
SECONDS = 20


def moving(i: int) -> np.ndarray:
    """Frame ``i``: a grey level and a bar position of its own, so frames differ after lossy coding."""
    image = np.full((SIZE[1], SIZE[0], 3), (40 + 3 * i) % 220, np.uint8)
    cv2.rectangle(image, (8 * i % (SIZE[0] - 40), 40), (8 * i % (SIZE[0] - 40) + 40, 140), (20, 200, 240), -1)
    return image


def keyframed(path: Path, keyframe_every: int) -> Path:
    samples.write_keyframed_video(path, (moving(i) for i in range(int(SECONDS * FPS))), FPS, SIZE, keyframe_every)
    return path


@pytest.fixture(scope="module")
def short_gop(tmp_path_factory) -> Path:
    """A keyframe every 0.5 s (5 frames)."""
    return keyframed(tmp_path_factory.mktemp("gop") / "short.mp4", 5)


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory) -> Path:
    """A keyframe every 5 s (50 frames)."""
    return keyframed(tmp_path_factory.mktemp("gop") / "long.mp4", 50)


def every_frame(path: Path) -> list[np.ndarray]:
    """Full sequential decoding with OpenCV: the reference."""
    capture = cv2.VideoCapture(str(path))
    decoded = []
    ok, image = capture.read()
    while ok:
        decoded.append(image)
        ok, image = capture.read()
    capture.release()
    return decoded


def test_keyframe_interval_comes_from_the_packet_flags(short_gop, long_gop):
    assert keyframe_interval(short_gop, float("inf")) == pytest.approx(0.5)
    assert keyframe_interval(long_gop, float("inf")) == pytest.approx(5.0)
    # Reading stops once a stretch without keyframe exceeds what the caller needs to know.
    assert 1.0 < keyframe_interval(long_gop, 1.0) < 5.0


def test_a_long_gap_over_short_gops_decodes_only_keyframes_identical_to_full_decoding(short_gop):
    sampling = SamplingSettings(every_seconds=2.0)
    info = probe_video(short_gop, sampling)
    sampler = FrameSampler(short_gop, info, sampling)
    sampled = list(sampler)

    assert sampler.choice.path == "keyframes" and sampler.choice.keyframe_interval_s == pytest.approx(0.5)
    assert sampler.planned == list(range(0, 200, 20))
    # One decoded frame per sample, against every frame up to the last planned one (181) sequentially.
    assert sampler.decoded == len(sampled) == len(sampler.planned)
    reference = every_frame(short_gop)
    for frame, planned in zip(sampled, sampler.planned):
        assert frame.index % 5 == 0 and abs(frame.index - planned) <= 2  # the nearest keyframe, at its own index
        assert frame.timestamp_s == pytest.approx(frame.index / FPS)
        assert frame.image.dtype == np.uint8 and frame.image.shape == (SIZE[1], SIZE[0], 3)
        assert np.array_equal(frame.image, reference[frame.index]), f"frame {frame.index} differs from full decoding"
    assert sampler.coverage() == coverage([f.index for f in sampled], info)


def test_planned_frames_between_keyframes_get_the_nearest_keyframe_at_its_true_index(short_gop):
    """Planned frames 0, 7, 14, ... (0.7 s apart): keyframes every 5 frames; each sample is the nearest one."""
    sampling = SamplingSettings(every_seconds=0.7)
    info = probe_video(short_gop, sampling)
    sampler = FrameSampler(short_gop, info, sampling)
    sampled = list(sampler)
    assert sampler.choice.path == "keyframes"
    assert [f.index for f in sampled] == [5 * round(p / 5) for p in sampler.planned]
    reference = every_frame(short_gop)
    assert all(np.array_equal(f.image, reference[f.index]) for f in sampled)
    # Coverage counts what was decoded, where it was: the last keyframe (195) before the end (200).
    assert sampler.coverage() == coverage([f.index for f in sampled], info)
    assert sampler.coverage().largest_gap_s == pytest.approx(1.0)


def test_a_gop_longer_than_the_gap_is_decoded_sequentially(long_gop):
    sampling = SamplingSettings(every_seconds=1.0)
    info = probe_video(long_gop, sampling)
    sampler = FrameSampler(long_gop, info, sampling)
    sampled = list(sampler)
    assert sampler.choice.path == "sequential" and "< keyframe interval" in sampler.choice.reason
    assert [f.index for f in sampled] == sampler.planned
    assert sampler.decoded == sampler.planned[-1] + 1


def test_the_setting_forces_either_path(short_gop, long_gop):
    forced = FrameSampler(short_gop, probe_video(short_gop, SamplingSettings()),
                          SamplingSettings(every_seconds=2.0, decode="sequential"))
    assert forced.choice.path == "sequential" and [f.index for f in forced] == forced.planned
    forced = FrameSampler(long_gop, probe_video(long_gop, SamplingSettings()),
                          SamplingSettings(every_seconds=1.0, decode="keyframes"))
    assert forced.choice.path == "keyframes"
    assert {f.index for f in forced} == {0, 50, 100, 150}
    with pytest.raises(ValueError, match="REALNESS_SAMPLING_DECODE"):
        SamplingSettings(decode="fast")


def test_a_file_pyav_cannot_read_is_decoded_by_opencv_and_says_so(short_gop, monkeypatch, caplog):
    def unreadable(path, enough_s):
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(frames_module, "keyframe_interval", unreadable)
    sampling = SamplingSettings(every_seconds=2.0)
    with caplog.at_level(logging.WARNING, logger="realness_tasks.frames"):
        sampler = FrameSampler(short_gop, probe_video(short_gop, sampling), sampling)
    assert sampler.choice.path == "sequential" and "PyAV cannot read" in sampler.choice.reason
    assert "OpenCV decodes every frame instead" in caplog.text
    assert [f.index for f in sampler] == sampler.planned


def test_ingest_finds_the_same_faces_on_the_keyframe_path_and_records_it(tmp_path):
    """Keyframes every second, one look every 2 s: the planned frames are keyframes, so both paths see
    the same frames and must find the same faces; the ledger and the run report say which path ran."""
    photo = next(p for p in samples.sample_photos() if p.name == "obama")
    clip = samples.face_video(tmp_path / "keyframed.mp4", photo.image, seconds=12.0, fps=10.0, size=(480, 270),
                              face_between=(4.0, 12.0), keyframe_every=10)
    found = {}
    for mode in ("auto", "sequential"):
        cfg = RealnessConfig.from_env({}, home=str(tmp_path / mode),
                                      sampling={"every_seconds": 2.0, "decode": mode},
                                      detection={"networks_dir": MTCNN_NETWORKS_DIR})
        store = open_store(cfg.resolved_store_uri)
        store.upload(clip.path, "landing/keyframed.mp4")
        summary = run_ingest(cfg, run_id=f"run-{mode}", run_date="2026-12-01")
        assert summary["statuses"] == {"PUBLISHED": 1}
        row = next(r for r in ledger.entries(Database(cfg.resolved_database_url)))
        expected = "keyframes" if mode == "auto" else "sequential"
        assert row["decode_path"] == expected and summary["decode_paths"] == {expected: 1}
        shard = read_shard(store.get_bytes(store.key_for(row["shard_uri"]))).to_pylist()
        found[mode] = sorted((r["frame_index"], r["timestamp_s"], r["box_x"], r["box_y"], r["box_w"], r["box_h"],
                              round(r["confidence"], 4)) for r in shard)
    assert [f[0] for f in found["auto"]] == [40, 60, 80, 100]
    assert found["auto"] == found["sequential"]
