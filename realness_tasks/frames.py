"""Checking that a file is a video we can read, and sampling its frames without loading it whole.

The sampler walks the stream once with ``grab()`` (demux + decode, no colour conversion) and calls
``retrieve()`` only on the frames it keeps: seeking with ``CAP_PROP_POS_FRAMES`` is about ten times
slower because every seek decodes again from the previous keyframe.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from realness_tasks.config import SamplingSettings

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
EBML_DOCTYPE_ID = b"\x42\x82"
# Top-level QuickTime atoms that old .mov files start with instead of an ``ftyp`` box.
QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
HEAD_BYTES = 4096
FALLBACK_FPS = 25.0


@dataclass(frozen=True)
class VideoInfo:
    container: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp_s: float
    image: np.ndarray  # BGR uint8, full resolution


class VideoError(Exception):
    """A file that cannot be ingested; ``status`` goes to the ledger: EMPTY, NOT_VIDEO, UNREADABLE or TOO_LARGE."""

    def __init__(self, status: str, reason: str):
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def sniff_container(head: bytes) -> str | None:
    """The container named by the file's magic bytes ("mp4", "mov", "avi", "mkv", "webm"), or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in QUICKTIME_ATOMS:
        return "mov"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head[:4] == EBML_MAGIC:
        return "webm" if _ebml_doctype(head) == "webm" else "mkv"
    return None


def _ebml_doctype(head: bytes) -> str | None:
    """The DocType string of an EBML header ("webm", "matroska"), if it lies within ``head``."""
    at = head.find(EBML_DOCTYPE_ID, len(EBML_MAGIC))
    if at < 0 or at + 2 >= len(head):
        return None
    first = head[at + 2]
    width = 8 - first.bit_length() + 1  # an EBML size is a variable-length integer: leading zeros + 1 bytes
    if first == 0 or at + 2 + width > len(head):
        return None
    size = first & ((1 << (8 - width)) - 1)
    for byte in head[at + 3:at + 2 + width]:
        size = (size << 8) | byte
    start = at + 2 + width
    return head[start:start + size].decode("ascii", errors="replace").rstrip("\x00")


def probe_video(path: Path, sampling: SamplingSettings) -> VideoInfo:
    """What the video is, after checking it can be ingested; raises ``VideoError`` otherwise."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise VideoError("EMPTY", "the file has no bytes")
    with path.open("rb") as handle:
        container = sniff_container(handle.read(HEAD_BYTES))
    if container is None:
        raise VideoError("NOT_VIDEO", "no mp4/mov/avi/mkv/webm signature in the first bytes")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoError("UNREADABLE", f"OpenCV cannot open this {container} file")
        # Check the size the header declares before decoding a possibly huge frame, then the real one.
        _check_pixels(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), sampling)
        ok, first = capture.read()
        if not ok or first is None:
            raise VideoError("UNREADABLE", f"no frame of this {container} file decodes")
        height, width = first.shape[:2]
        _check_pixels(width, height, sampling)
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else FALLBACK_FPS
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if frame_count <= 0:
            # Some containers (webm without cues, live captures) carry no count or duration: count by
            # grabbing, one frame in memory at a time. The frame already read counts as one.
            frame_count = 1
            while capture.grab():
                frame_count += 1
    finally:
        capture.release()
    return VideoInfo(container, width, height, fps, frame_count, frame_count / fps)


def _check_pixels(width: int, height: int, sampling: SamplingSettings) -> None:
    if width * height > sampling.max_pixels:
        raise VideoError("TOO_LARGE", f"{width}x{height} frames exceed {sampling.max_pixels} pixels")


def plan_frames(info: VideoInfo, sampling: SamplingSettings) -> list[int]:
    """Frame indices to sample, from the first frame to the last: one every ``every_seconds`` (or
    ``frames_per_video`` of them), spread evenly over the whole video when that exceeds ``max_frames``.

    The budget widens the gap instead of cutting the list, so a long video is looked at all through.
    """
    if info.frame_count <= 0:
        return []
    if sampling.frames_per_video > 0:
        return _spread(info.frame_count, min(sampling.frames_per_video, sampling.max_frames))
    step = max(1, int(round(sampling.every_seconds * info.fps)))
    if math.ceil(info.frame_count / step) > sampling.max_frames:
        return _spread(info.frame_count, sampling.max_frames)
    return list(range(0, info.frame_count, step))


def _spread(frame_count: int, wanted: int) -> list[int]:
    """``wanted`` indices spread evenly from the first frame to the last (fewer when the video is shorter)."""
    return sorted({int(round(i)) for i in np.linspace(0, frame_count - 1, min(wanted, frame_count))})


@dataclass(frozen=True)
class Coverage:
    """What a sampler looked at; the field names are the ingest ledger's columns.

    ``seconds_covered`` runs from the start of the first sampled frame to the end of the last (the whole
    duration when both ends were sampled); ``largest_gap_s`` is the longest distance between the starts
    of consecutive sampled frames, counting the video's start and its end (declared duration) as ends.
    """

    frames_sampled: int
    seconds_covered: float | None   # None: nothing sampled
    largest_gap_s: float | None     # None: nothing sampled


def coverage(indices: Sequence[int], info: VideoInfo) -> Coverage:
    """The coverage of the sampled frame ``indices`` (ascending) of a video described by ``info``."""
    if not indices:
        return Coverage(0, None, None)
    marks = [0.0, *(index / info.fps for index in indices), info.duration_s]
    largest_gap = max(later - earlier for earlier, later in zip(marks, marks[1:]))
    return Coverage(len(indices), round((indices[-1] + 1 - indices[0]) / info.fps, 3), round(largest_gap, 3))


class FrameSampler:
    """Streams the planned frames of a video; ``ended_early_at`` tells where a short stream stopped, and
    ``coverage()`` what the frames returned so far cover."""

    def __init__(self, path: Path, info: VideoInfo, sampling: SamplingSettings):
        self.path = Path(path)
        self.info = info
        self.planned: list[int] = plan_frames(info, sampling)
        self.ended_early_at: int | None = None
        self.returned: list[int] = []  # indices only (at most max_frames): memory stays flat

    def coverage(self) -> Coverage:
        return coverage(self.returned, self.info)

    def __iter__(self) -> Iterator[Frame]:
        self.ended_early_at = None
        self.returned = []
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0  # index of the next frame grab() would return
            for target in self.planned:
                while index <= target:
                    if not capture.grab():
                        self.ended_early_at = index
                        return
                    index += 1
                ok, image = capture.retrieve()
                if not ok or image is None:
                    self.ended_early_at = target
                    return
                self.returned.append(target)
                yield Frame(target, target / self.info.fps, image)
        finally:
            capture.release()
