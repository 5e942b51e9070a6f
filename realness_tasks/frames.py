"""Checking that a file is a video we can read, and sampling its frames without loading it whole.

Two ways to decode the sampled frames (``DecodeChoice``, docs/detection.md "Keyframe-aware decoding"):

* sequential (OpenCV): walk the stream once with ``grab()`` (demux + decode, no colour conversion) and
  ``retrieve()`` only the frames kept. Seeking with ``CAP_PROP_POS_FRAMES`` is about ten times slower
  because every seek decodes again from the previous keyframe.
* keyframes (PyAV): when planned frames are at least a keyframe interval apart, seek to the keyframe
  nearest each and decode that one packet: nothing between keyframes is decoded.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from realness_tasks.settings import SamplingSettings

EBML_MAGIC = b"\x1a\x45\xdf\xa3"
EBML_DOCTYPE_ID = b"\x42\x82"
# Top-level QuickTime atoms that old .mov files start with instead of an ``ftyp`` box.
QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}
HEAD_BYTES = 4096
FALLBACK_FPS = 25.0
KEYFRAMES = "keyframes"
SEQUENTIAL = "sequential"
# How much of the stream's start the demuxer reads (packet flags only, nothing decoded) to find the keyframe interval.
KEYFRAME_PROBE_SECONDS = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video found: container, size, frame rate and length."""

    container: str
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float


@dataclass(frozen=True)
class Frame:
    """One decoded frame and where it is in the video."""

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


@dataclass(frozen=True)
class DecodeChoice:
    """How a sampler decodes a video and why; ``path`` is logged per video and kept in the ledger (``decode_path``)."""

    path: str                           # KEYFRAMES or SEQUENTIAL
    reason: str
    keyframe_interval_s: float | None   # None: not measured (sequential forced, or PyAV could not read the file)


def sampling_gap_s(planned: Sequence[int], fps: float) -> float:
    """The smallest distance between consecutive planned frames, in seconds (infinite for one frame)."""
    if len(planned) < 2:
        return math.inf
    return min(later - earlier for earlier, later in zip(planned, planned[1:])) / fps


def keyframe_interval(path: Path, enough_s: float) -> float | None:
    """The longest stretch between keyframes at the start of the video stream, from the demuxer's packet
    flags (nothing decoded, so it costs a read of those seconds); None when the stream has no timed keyframe.

    Reading stops after ``KEYFRAME_PROBE_SECONDS`` and two keyframes, at the end of the stream, or once a
    stretch exceeds ``enough_s`` (the caller only needs to know it is longer). The stretch still open
    when reading stops counts with its length so far. Raises ``av.error.FFmpegError`` if PyAV cannot read it.
    """
    with av.open(str(path)) as container:
        if not container.streams.video:
            return None
        stream = container.streams.video[0]
        start = stream.start_time or 0
        keys: list[float] = []
        latest = longest = 0.0
        for packet in container.demux(stream):
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                continue
            at = float((stamp - start) * stream.time_base)
            if packet.is_keyframe:
                longest = max(longest, at - keys[-1]) if keys else longest
                keys.append(at)
            latest = max(latest, at)
            if keys and (latest - keys[-1] > enough_s or (len(keys) >= 2 and latest >= KEYFRAME_PROBE_SECONDS)):
                break
    return max(longest, latest - keys[-1]) if keys else None


def choose_decode(path: Path, planned: Sequence[int], fps: float, mode: str) -> DecodeChoice:
    """Keyframes when ``mode`` (REALNESS_SAMPLING_DECODE) forces it, or in ``auto`` when the plan's gap is at
    least the keyframe interval (to within half a frame), so each planned frame has a keyframe within half a
    gap; sequential otherwise, and whenever PyAV cannot read the file (logged: OpenCV decodes it instead)."""
    if mode == SEQUENTIAL:
        return DecodeChoice(SEQUENTIAL, "REALNESS_SAMPLING_DECODE=sequential", None)
    gap = sampling_gap_s(planned, fps)
    try:
        interval = keyframe_interval(path, gap if mode == "auto" else math.inf)
    except av.error.FFmpegError as exc:
        log.warning("PyAV cannot read %s (%s): OpenCV decodes every frame instead", path, exc)
        return DecodeChoice(SEQUENTIAL, f"PyAV cannot read the file: {exc}", None)
    if interval is None:
        log.warning("PyAV finds no timed keyframe in %s: OpenCV decodes every frame instead", path)
        return DecodeChoice(SEQUENTIAL, "PyAV finds no timed keyframe", None)
    if mode == KEYFRAMES:
        return DecodeChoice(KEYFRAMES, "REALNESS_SAMPLING_DECODE=keyframes", interval)
    if gap + 0.5 / fps >= interval:
        return DecodeChoice(KEYFRAMES, f"sampling gap {gap:.2f} s >= keyframe interval {interval:.2f} s", interval)
    return DecodeChoice(SEQUENTIAL, f"sampling gap {gap:.2f} s < keyframe interval {interval:.2f} s", interval)


class FrameSampler:
    """Streams the planned frames of a video; ``ended_early_at`` tells where a short stream stopped,
    ``coverage()`` what the frames returned so far cover, ``choice`` how they are decoded and ``decoded``
    how many frames the decoder produced for them.

    On the keyframe path a frame carries the index and timestamp of the keyframe that was decoded (near
    the planned one, not necessarily it), and a keyframe nearest to two planned frames is returned once.
    """

    def __init__(self, path: Path, info: VideoInfo, sampling: SamplingSettings):
        self.path = Path(path)
        self.info = info
        self.planned: list[int] = plan_frames(info, sampling)
        self.choice: DecodeChoice = choose_decode(self.path, self.planned, info.fps, sampling.decode)
        self.ended_early_at: int | None = None
        self.returned: list[int] = []  # indices only (at most max_frames): memory stays flat
        self.decoded = 0

    def coverage(self) -> Coverage:
        """How much of the video the frames returned so far cover."""
        return coverage(self.returned, self.info)

    def __iter__(self) -> Iterator[Frame]:
        self.ended_early_at = None
        self.returned = []
        self.decoded = 0
        return self._keyframes() if self.choice.path == KEYFRAMES else self._sequential()

    def _sequential(self) -> Iterator[Frame]:
        """Every frame up to the last planned one is decoded; only the planned ones are converted to BGR."""
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0  # index of the next frame grab() would return
            for target in self.planned:
                while index <= target:
                    if not capture.grab():
                        self.ended_early_at = index
                        return
                    index += 1
                    self.decoded += 1
                ok, image = capture.retrieve()
                if not ok or image is None:
                    self.ended_early_at = target
                    return
                self.returned.append(target)
                yield Frame(target, target / self.info.fps, image)
        finally:
            capture.release()

    def _keyframes(self) -> Iterator[Frame]:
        """Per planned frame, seek backward from half a keyframe interval past it (landing on the nearest
        keyframe while keyframes are at most an interval apart) and decode that keyframe's packet alone."""
        half = (self.choice.keyframe_interval_s or 0.0) / 2
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            start = stream.start_time or 0
            # Just under half an interval (in stream ticks): of two keyframes equally near, the earlier one.
            reach = max(0, math.ceil(half / stream.time_base) - 1)
            for target in self.planned:
                planned_pts = start + round(target / self.info.fps / stream.time_base)
                try:
                    packet = _keyframe_packet(container, stream, planned_pts + reach)
                    if packet is not None and self.returned and self._index(packet.pts, start, stream) <= self.returned[-1]:
                        # The keyframe nearest the previous planned frame too, or the last one of a stream that
                        # ends before this planned frame (a truncated file): the packets after it say which.
                        if _stream_reaches(container, stream, planned_pts):
                            continue
                        packet = None
                    decoded = _decode_alone(stream, packet) if packet is not None else []
                except av.error.FFmpegError:
                    decoded = []
                if not decoded:
                    self.ended_early_at = target
                    return
                self.decoded += len(decoded)
                frame = decoded[0]
                index = self._index(frame.pts, start, stream)
                self.returned.append(index)
                yield Frame(index, float((frame.pts - start) * stream.time_base), _bgr(frame))

    def _index(self, pts: int, start: int, stream: av.video.stream.VideoStream) -> int:
        """The frame index of a presentation timestamp (its time times the probed frame rate)."""
        return int(round(float((pts - start) * stream.time_base) * self.info.fps))


def _keyframe_packet(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                     offset: int) -> av.Packet | None:
    """The first keyframe packet at or after where seeking backward from ``offset`` (stream time) lands."""
    container.seek(offset, stream=stream, backward=True, any_frame=False)
    return next((packet for packet in container.demux(stream) if packet.is_keyframe and packet.pts is not None), None)


def _stream_reaches(container: av.container.InputContainer, stream: av.video.stream.VideoStream, pts: int) -> bool:
    """Whether the stream, demuxed on from where it is (nothing decoded), has a packet at or after ``pts``."""
    return any(packet.pts is not None and packet.pts >= pts for packet in container.demux(stream))


def _decode_alone(stream: av.video.stream.VideoStream, packet: av.Packet) -> list[av.VideoFrame]:
    """Decode one keyframe packet and drain the decoder, so the frame comes out at once: a decoder that
    reorders B-frames would otherwise hold it until later keyframes arrive. The next seek flushes it again."""
    return stream.codec_context.decode(packet) + stream.codec_context.decode(None)


def _bgr(frame: av.VideoFrame) -> np.ndarray:
    """The frame as BGR uint8, turned upright as its display matrix says (OpenCV rotates its frames too)."""
    image = frame.to_ndarray(format="bgr24")
    turns = int(round(frame.rotation / 90)) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image
