"""Container sniffing, the checks that reject bad files, and the frame-sampling plans."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from realness_tasks import samples
from realness_tasks.frames import (Coverage, FrameSampler, VideoError, VideoInfo, coverage, plan_frames, probe_video,
                                  sniff_container)
from realness_tasks.settings import SamplingSettings

CONTAINERS = {".mp4": "mp4", ".avi": "avi", ".mkv": "mkv", ".mov": "mov", ".webm": "webm"}
SIZE = (160, 96)
FPS = 10.0


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, samples.SampleVideo]:
    """One short face video per container."""
    directory = tmp_path_factory.mktemp("containers")
    photo = samples.sample_photos()[0].image
    return {ext: samples.face_video(directory / f"face{ext}", photo, seconds=2.0, fps=FPS, size=SIZE)
            for ext in CONTAINERS}


@pytest.fixture(scope="module")
def counting_video(tmp_path_factory) -> Path:
    """An MJPEG .avi whose frame i is a flat grey of level 8 * i, so a frame tells its own index."""
    path = tmp_path_factory.mktemp("counting") / "counting.avi"
    frames = (np.full((SIZE[1], SIZE[0], 3), 8 * i, np.uint8) for i in range(30))
    samples.write_video(path, frames, FPS, SIZE)
    return path


@pytest.mark.parametrize("ext", CONTAINERS)
def test_each_container_is_sniffed_and_probed(videos, ext):
    video = videos[ext]
    assert sniff_container(video.path.read_bytes()[:64]) == CONTAINERS[ext]
    info = probe_video(video.path, SamplingSettings())
    assert info.container == CONTAINERS[ext]
    assert (info.width, info.height) == SIZE
    assert info.fps == pytest.approx(FPS, rel=0.01)
    assert info.frame_count == video.frame_count
    assert info.duration_s == pytest.approx(video.frame_count / FPS, rel=0.05)


def test_sniffing_rejects_what_is_not_a_video():
    rng = np.random.default_rng(3)
    assert sniff_container(rng.bytes(256)) is None
    assert sniff_container(b"just some text, honestly\n" * 4) is None
    assert sniff_container(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None  # RIFF, but audio
    assert sniff_container(b"") is None


@pytest.mark.parametrize(("content", "status"), [
    (b"", "EMPTY"),
    (np.random.default_rng(7).bytes(4096), "NOT_VIDEO"),
    (b"This is a text file that someone renamed to .mp4\n" * 20, "NOT_VIDEO"),
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + np.random.default_rng(8).bytes(4096), "UNREADABLE"),
], ids=["zero-bytes", "random-bytes", "text-renamed", "mp4-magic-then-garbage"])
def test_bad_files_raise_the_matching_status(tmp_path, content, status):
    path = tmp_path / "upload.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoError) as caught:
        probe_video(path, SamplingSettings())
    assert caught.value.status == status
    assert caught.value.reason


def test_truncated_mp4_is_unreadable(videos, tmp_path):
    """OpenCV's mp4 writer puts the index (moov) last: without it nothing can be decoded."""
    data = videos[".mp4"].path.read_bytes()
    path = tmp_path / "half.mp4"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(VideoError) as caught:
        probe_video(path, SamplingSettings())
    assert caught.value.status == "UNREADABLE"


@pytest.mark.parametrize("ext", [".avi", ".mkv", ".webm"])
def test_truncated_stream_ends_early_and_keeps_what_decoded(videos, tmp_path, ext):
    data = videos[ext].path.read_bytes()
    path = tmp_path / f"half{ext}"
    path.write_bytes(data[:len(data) // 2])
    sampling = SamplingSettings(every_seconds=1 / FPS)  # plan every frame the header promises
    info = probe_video(path, sampling)
    sampler = FrameSampler(path, info, sampling)
    frames = list(sampler)
    assert sampler.planned == list(range(info.frame_count))
    assert sampler.ended_early_at is not None
    assert 0 < len(frames) < len(sampler.planned)
    assert frames[-1].index < sampler.ended_early_at <= info.frame_count
    # What was never read counts as unseen: the longest gap runs from the last frame read to the declared end.
    assert sampler.coverage().frames_sampled == len(frames)
    assert sampler.coverage().largest_gap_s == pytest.approx(info.duration_s - frames[-1].timestamp_s, abs=1e-3)


def test_every_n_seconds_returns_the_planned_frames(counting_video):
    sampling = SamplingSettings(every_seconds=0.5, max_frames=100)
    info = probe_video(counting_video, sampling)
    sampler = FrameSampler(counting_video, info, sampling)
    step = round(0.5 * info.fps)
    assert sampler.planned == list(range(0, info.frame_count, step))
    frames = list(sampler)
    assert [f.index for f in frames] == sampler.planned
    assert sampler.ended_early_at is None
    for frame in frames:
        assert frame.timestamp_s == pytest.approx(frame.index / info.fps)
        assert frame.image.shape == (SIZE[1], SIZE[0], 3)
        # The decoded content is the frame that was written at that index (MJPEG is near-lossless on flat grey).
        assert abs(float(frame.image.mean()) - 8 * frame.index) < 3


def test_max_frames_spreads_the_plan_over_the_whole_video(counting_video):
    """A budget smaller than the plan widens the gap; it never cuts the video after its first frames."""
    sampling = SamplingSettings(every_seconds=0.1, max_frames=4)
    info = probe_video(counting_video, sampling)
    sampler = FrameSampler(counting_video, info, sampling)
    assert sampler.planned == [0, 10, 19, 29]
    frames = list(sampler)
    assert [f.index for f in frames] == sampler.planned
    assert all(abs(float(f.image.mean()) - 8 * f.index) < 3 for f in frames)
    # 30 frames at 10 fps: frames 0 to 29 cover the 3 s; the longest stretch is 19 -> 29 (1 s).
    assert sampler.coverage() == Coverage(frames_sampled=4, seconds_covered=3.0, largest_gap_s=1.0)


def test_plan_of_a_long_video_spreads_the_budget_evenly():
    hour = VideoInfo("mp4", 64, 64, 25.0, 90_000, 3600.0)
    planned = plan_frames(hour, SamplingSettings(every_seconds=1.0, max_frames=64))
    assert len(planned) == 64
    assert planned[0] == 0 and planned[-1] == 89_999
    gaps = np.diff(planned)
    assert gaps.max() - gaps.min() <= 1  # about 57 s apart (89,999 / 63 frames)
    assert coverage(planned, hour) == Coverage(64, 3600.0, round(float(gaps.max()) / 25.0, 3))


def test_plan_of_a_video_within_the_budget_keeps_the_gap():
    """30 s at one frame a second fits a budget of 64: the plan is the one it always was."""
    short = probe_info(frame_count=300)
    assert plan_frames(short, SamplingSettings(every_seconds=1.0, max_frames=64)) == list(range(0, 300, 10))
    assert plan_frames(short, SamplingSettings(every_seconds=1.0, max_frames=30)) == list(range(0, 300, 10))
    spread = plan_frames(short, SamplingSettings(every_seconds=1.0, max_frames=29))
    assert len(spread) == 29 and spread[0] == 0 and spread[-1] == 299


def test_budget_larger_than_the_video_samples_every_frame():
    tiny = probe_info(frame_count=6)
    assert plan_frames(tiny, SamplingSettings(every_seconds=0.01, max_frames=64)) == list(range(6))
    assert plan_frames(tiny, SamplingSettings(frames_per_video=64, max_frames=1000)) == list(range(6))
    assert plan_frames(probe_info(frame_count=1), SamplingSettings(max_frames=1)) == [0]


def test_coverage_counted_by_hand():
    info = probe_info(frame_count=100)  # 10 s at 10 fps
    assert coverage([0, 33, 66, 99], info) == Coverage(4, 10.0, 3.3)
    # Frames 20 and 30: from 2.0 s to the end of frame 30 (3.1 s); the longest gap runs from 3.0 s to the end.
    assert coverage([20, 30], info) == Coverage(2, 1.1, 7.0)
    assert coverage([50], info) == Coverage(1, 0.1, 5.0)
    assert coverage([], info) == Coverage(0, None, None)


def test_a_budget_below_one_frame_is_refused():
    with pytest.raises(ValueError, match="REALNESS_SAMPLING_MAX_FRAMES"):
        SamplingSettings(max_frames=0)


def test_evenly_spread_plan_covers_the_whole_video(counting_video):
    sampling = SamplingSettings(frames_per_video=5)
    info = probe_video(counting_video, sampling)
    sampler = FrameSampler(counting_video, info, sampling)
    planned = sampler.planned
    assert len(planned) == 5
    assert planned[0] == 0 and planned[-1] == info.frame_count - 1
    gaps = np.diff(planned)
    assert gaps.max() - gaps.min() <= 1
    frames = list(sampler)
    assert [f.index for f in frames] == planned
    assert all(abs(float(f.image.mean()) - 8 * f.index) < 3 for f in frames)


def test_evenly_spread_plan_respects_max_frames_and_short_videos():
    info = probe_info(frame_count=6)
    assert plan_frames(info, SamplingSettings(frames_per_video=32, max_frames=64)) == list(range(6))
    capped = plan_frames(probe_info(frame_count=1000), SamplingSettings(frames_per_video=32, max_frames=8))
    assert len(capped) == 8 and capped[-1] == 999
    assert plan_frames(probe_info(frame_count=0), SamplingSettings()) == []


def probe_info(frame_count: int) -> VideoInfo:
    return VideoInfo("mp4", 64, 64, FPS, frame_count, frame_count / FPS)


def test_frames_over_max_pixels_are_too_large(videos):
    video = videos[".mkv"]
    width, height = video.size
    with pytest.raises(VideoError) as caught:
        probe_video(video.path, SamplingSettings(max_pixels=width * height - 1))
    assert caught.value.status == "TOO_LARGE"
    assert probe_video(video.path, SamplingSettings(max_pixels=width * height)).width == width


def test_default_limit_rejects_8k_and_accepts_6k():
    """docs/ingest.md: 8K (7680x4320) and above are TOO_LARGE with the default limit, 6K is accepted."""
    from realness_tasks.frames import _check_pixels

    with pytest.raises(VideoError, match="7680x4320 frames exceed 33177599 pixels"):
        _check_pixels(7680, 4320, SamplingSettings())
    _check_pixels(6144, 3456, SamplingSettings())
    _check_pixels(3840, 2160, SamplingSettings())
    doc = (Path(__file__).resolve().parent.parent / "docs" / "ingest.md").read_text()
    assert f"{SamplingSettings().max_pixels:,}" in doc and "8K and above are rejected" in doc


def without_duration(data: bytes) -> bytes:
    """A Matroska file with its Duration element (ID 0x4489) overwritten by an EBML Void of equal length."""
    at = data.find(b"\x44\x89")
    length = 3 + (data[at + 2] & 0x7F)  # ID (2) + one-byte size + payload
    return data[:at] + b"\xec" + bytes([0x80 | (length - 2)]) + bytes(length - 2) + data[at + length:]


@pytest.mark.parametrize("ext", [".mkv", ".webm"])
def test_missing_frame_count_is_counted_by_streaming(videos, tmp_path, ext):
    path = tmp_path / f"no-duration{ext}"
    path.write_bytes(without_duration(videos[ext].path.read_bytes()))
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) <= 0  # what OpenCV makes of a stream with no duration
    capture.release()
    sampling = SamplingSettings(frames_per_video=4)
    info = probe_video(path, sampling)
    assert info.frame_count == videos[ext].frame_count
    sampler = FrameSampler(path, info, sampling)
    assert [f.index for f in sampler] == sampler.planned
    assert sampler.planned[-1] == info.frame_count - 1 and sampler.ended_early_at is None
