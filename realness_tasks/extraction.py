"""Extraction: one landing object -> frames -> faces -> a shard in the staging prefix.

:func:`process_video` downloads the object, identifies it by content hash, samples frames, detects
and crops faces (:func:`extract_face_rows`) and writes the shard under the staging prefix, where the
validation gate (:mod:`realness_tasks.publication`) finds it. Every object ends with a ledger row
saying what happened and why; bad input never raises.
"""

from __future__ import annotations

import hashlib
import logging
import math
import posixpath
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realness_tasks import labels, ledger
from realness_tasks.config import RealnessConfig
from realness_tasks.crash_points import checkpoint
from realness_tasks.db import Database
from realness_tasks.discovery import VideoRef
from realness_tasks.ledger import LedgerEntry, Status, VideoRecord
from realness_tasks.shards import FaceRow, ShardWriter
from realness_tasks.stage_timings import add_seconds, lap
from realness_tasks.storage import ObjectStore, loggable, safe_key
from realness_tasks.workspace import scratch_dir

if TYPE_CHECKING:
    from realness_tasks.embeddings import FaceEmbedder

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class BatchProgress:
    """One line per frame batch for a task's batch of videos: video i of n, frames done, elapsed time
    and the expected remaining time, extrapolated from the bytes done so far (decoding cost follows
    the bytes, see ``discovery.batch_refs``)."""

    def __init__(self, refs: Sequence[VideoRef], emit: Progress, clock: Callable[[], float] = time.monotonic):
        self.refs = list(refs)
        self.emit = emit
        self.clock = clock
        self.started = clock()
        self.number = 0
        self.bytes_before = 0  # bytes of the videos before the current one

    def __iter__(self) -> Iterator[VideoRef]:
        """The videos in order; the lines that follow each one are about it."""
        for number, ref in enumerate(self.refs, 1):
            self.number = number
            yield ref
            self.bytes_before += max(1, ref.size)

    def frames(self, done: int, planned: int, faces: int) -> None:
        """Emit the line for the current video: ``done`` of its ``planned`` frames read, ``faces`` found."""
        ref = self.refs[self.number - 1]
        total = sum(max(1, r.size) for r in self.refs)
        finished = self.bytes_before + max(1, ref.size) * done / max(1, planned)
        elapsed = self.clock() - self.started
        remaining = elapsed * (total - finished) / finished
        self.emit(f"video {self.number} of {len(self.refs)} ({loggable(posixpath.basename(ref.key))}): {done}/{planned} "
                  f"frames, {faces} faces; elapsed {elapsed:.0f} s, about {remaining:.0f} s remaining")



def content_hash(path: Path) -> str:
    """The video id: the sha256 of the bytes, so a re-upload under another key is recognised."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    while chunk := list(islice(items, size)):
        yield chunk


def _frames_per_batch(cfg: RealnessConfig, width: int, height: int) -> int:
    """Fewer full-resolution frames in memory at once for huge videos (8 x 1080p worth at most)."""
    budget = 8 * 1920 * 1080
    return max(1, min(cfg.detection.batch_size, budget // max(1, width * height)))


def _pixel_box(box: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """A detector's float box as integer pixels clamped inside the frame (at least 1 px)."""
    x0 = min(max(0, int(math.floor(box[0]))), width - 1)
    y0 = min(max(0, int(math.floor(box[1]))), height - 1)
    x1 = min(width, max(x0 + 1, int(math.ceil(box[0] + box[2]))))
    y1 = min(height, max(y0 + 1, int(math.ceil(box[1] + box[3]))))
    return x0, y0, x1 - x0, y1 - y0


def embedding_targets(planned: Sequence[int], count: int) -> list[int]:
    """``count`` frame indices spread evenly over the planned ones: the first sampled frame with a face
    at or after each gets its faces embedded (see :func:`extract_face_rows`)."""
    import numpy as np

    if not planned:
        return []
    picks = np.linspace(0, len(planned) - 1, min(count, len(planned))).round().astype(int)
    return sorted({planned[i] for i in picks})


def extract_face_rows(path: Path, cfg: RealnessConfig, detector, shard: ShardWriter, *, video_id: str,
                      source_uri: str, label: str | None, run_id: str, progress: BatchProgress | None = None,
                      stage_seconds: dict[str, float] | None = None, embedder: FaceEmbedder | None = None):
    """Sample, detect and crop one video, writing the faces' rows to ``shard`` a frame batch at a time (a
    long video's faces are never all in memory); returns (info, faces written, the sampler: what it covered,
    where the stream ended, how it decoded).

    With ``embedder``, the faces of ``REALNESS_IDENTITY_EMBEDDED_FRAMES`` frames spread over the
    video get a face-recognition embedding (the first frame with a face at or after each target).
    Every face gets its ``track_id`` from the faces of the frames before it (``realness_tasks.tracks``:
    by box, and by embedding or the crop's colour histogram when boxes jump).
    ``stage_seconds`` (if given) accumulates the seconds spent decoding, detecting, cropping, embedding and
    writing the rows.
    """
    import cv2
    import numpy as np

    from realness_tasks.faces import crop_face, dominant_faces, encode_jpeg
    from realness_tasks.frames import FrameSampler, probe_video
    from realness_tasks.tracks import Linker, Sighting, colour_histogram

    timings = stage_seconds if stage_seconds is not None else {}
    clock = time.monotonic()
    info = probe_video(path, cfg.sampling)
    sampler = FrameSampler(path, info, cfg.sampling)
    linker = Linker()
    sampled = 0
    created = datetime.now(timezone.utc)
    chunks = _chunks(iter(sampler), _frames_per_batch(cfg, info.width, info.height))
    targets = embedding_targets(sampler.planned, cfg.identity.embedded_frames) if embedder else []
    while True:
        chunk = next(chunks, None)
        clock = lap(timings, "decode", clock)
        if chunk is None:
            break
        found = detector.detect([frame.image for frame in chunk])
        clock = lap(timings, "detect", clock)
        embedded_seconds = 0.0
        rows: list[FaceRow] = []
        for frame, frame_faces in zip(chunk, found):
            height, width = frame.image.shape[:2]
            faces = dominant_faces(frame_faces.detections, cfg.detection.max_faces_per_frame)
            embeddings: list[list[float] | None] = [None] * len(faces)
            if faces and targets and frame.index >= targets[0]:
                started = time.monotonic()
                rgb = cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB)
                embeddings = [[float(v) for v in e] for e in embedder.embed(rgb, [det.box for det in faces])]
                targets = [t for t in targets if t > frame.index]
                embedded_seconds += time.monotonic() - started
            crops = [crop_face(frame.image, det.box, cfg.crop) for det in faces]
            boxes = [_pixel_box(det.box, width, height) for det in faces]
            tracks = linker.add_frame([
                Sighting(frame.index, box, colour_histogram(crop), None if embedding is None
                         else np.asarray(embedding, np.float32))
                for box, crop, embedding in zip(boxes, crops, embeddings, strict=True)])
            for face_index, (det, crop, (x, y, w, h)) in enumerate(zip(faces, crops, boxes, strict=True)):
                rows.append(FaceRow(
                    video_id=video_id, source_uri=source_uri, frame_index=frame.index,
                    timestamp_s=round(frame.timestamp_s, 4), face_index=face_index, detector=det.detector,
                    confidence=float(min(1.0, max(0.0, det.confidence))), box_x=x, box_y=y, box_w=w, box_h=h,
                    frame_width=width, frame_height=height,
                    landmarks=[float(v) for v in det.landmarks] if det.landmarks else None,
                    crop_jpeg=encode_jpeg(crop, cfg.crop.jpeg_quality), crop_width=crop.shape[1],
                    crop_height=crop.shape[0], crop_margin=cfg.crop.margin, label=label,
                    azure_status=frame_faces.azure_status, run_id=run_id, created_at=created,
                    embedding=embeddings[face_index], track_id=tracks[face_index]))
        sampled += len(chunk)
        clock = lap(timings, "crop", clock)
        if embedder:
            add_seconds(timings, "crop", -embedded_seconds)
            add_seconds(timings, "embed", embedded_seconds)
        for row in rows:
            shard.write(row)
        clock = lap(timings, "write", clock)
        if progress:
            progress.frames(sampled, len(sampler.planned), shard.rows)
    return info, shard.rows, sampler


def _stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: int(v) - int(before.get(k, 0)) for k, v in after.items() if int(v) - int(before.get(k, 0))}


def process_video(cfg: RealnessConfig, store: ObjectStore, db: Database, ref: VideoRef, *, run_id: str,
                  run_date: str, detector, progress: BatchProgress | None = None,
                  embedder: FaceEmbedder | None = None) -> LedgerEntry:
    """Turn one landing object into a staged shard, or a ledger row explaining why not.

    ``embedder`` (``build_embedder``: None unless REALNESS_IDENTITY_ENABLED) embeds faces for identities."""
    from realness_tasks.frames import VideoError

    source_uri = store.uri_for(ref.key)
    timings: dict[str, float] = {}

    def finish(status: Status, reason: str | None = None, **extra: Any) -> LedgerEntry:
        staged = extra.get("staged_key")
        outcome = LedgerEntry(source_uri, ref.etag, status, run_id, reason=reason,
                              shard_uri=store.uri_for(staged) if staged else None, stage_seconds=timings, **extra)
        ledger.record(db, outcome)
        log.info("%s -> %s%s", loggable(ref.key), status, f" ({reason})" if reason else "")
        return outcome

    try:
        safe_key(ref.key)
    except ValueError as exc:
        return finish(Status.UNSAFE_KEY, str(exc))
    ledger.record(db, LedgerEntry(source_uri, ref.etag, Status.PENDING, run_id))
    if ref.size == 0:
        return finish(Status.EMPTY, "zero-byte object")

    with scratch_dir(cfg.home, "realness-video") as scratch:
        path = Path(scratch) / "video"
        clock = time.monotonic()
        try:
            store.download(ref.key, path)
        except ValueError as exc:  # a local link that leads outside the store since it was listed
            return finish(Status.UNSAFE_KEY, str(exc))
        checkpoint("ingest.downloaded")
        video_id = content_hash(path)
        lap(timings, "download", clock)
        if path.stat().st_size == 0:
            return finish(Status.EMPTY, "zero-byte object", video_id=video_id)
        owner = ledger.claim_video(db, video_id, source_uri, path.stat().st_size, ref.label)
        if ref.label and ref.label_source:
            labels.record(db, video_id, label=ref.label, source=store.uri_for(ref.label_source),
                          kind=labels.FOLDER if ref.label_source == ref.key else labels.METADATA,
                          source_uri=source_uri, source_etag=ref.label_etag, split_group=ref.split_group,
                          run_id=run_id)
        checkpoint("ingest.claimed")
        if owner != source_uri:
            return finish(Status.DUPLICATE, f"same content as {owner}", video_id=video_id)
        clock = time.monotonic()
        detector.load()
        lap(timings, "load_detector", clock)
        stats_before = detector.stats()
        started = time.monotonic()
        try:
            with ShardWriter(Path(scratch) / "shard.parquet") as shard:
                info, faces, sampler = extract_face_rows(
                    path, cfg, detector, shard, video_id=video_id, source_uri=source_uri, label=ref.label,
                    run_id=run_id, progress=progress, stage_seconds=timings, embedder=embedder)
                closing = time.monotonic()
            lap(timings, "write", closing)  # the last row group and the footer
        except VideoError as exc:
            return finish(Status(exc.status), exc.reason, video_id=video_id)
        ledger.upsert_video(db, VideoRecord(video_id, source_uri, path.stat().st_size, ref.label, info.width,
                                            info.height, info.fps, info.frame_count, info.duration_s))
        stats = _stats_delta(stats_before, detector.stats())
        ended_early_at, covered, decode_path = sampler.ended_early_at, sampler.coverage(), sampler.choice.path
        truncated = (f"stream ended at frame {ended_early_at} of {info.frame_count}" if ended_early_at is not None
                     else None)
        sampled = covered.frames_sampled
        log.info("%s: %d frames (%s decoding, %d decoded: %s), %d faces in %.1f s", loggable(ref.key), sampled,
                 decode_path, sampler.decoded, sampler.choice.reason, faces, time.monotonic() - started)
        if sampled == 0:
            return finish(Status.UNREADABLE, truncated or "no frame could be decoded", video_id=video_id,
                          decode_path=decode_path)
        if not faces:
            reason = f"no face in {sampled} sampled frames" + (f"; {truncated}" if truncated else "")
            return finish(Status.NO_FACE, reason, video_id=video_id, detector_stats=stats, decode_path=decode_path,
                          **asdict(covered))
        staged = f"{cfg.staging_prefix}{run_date}/{video_id}.parquet"
        clock = time.monotonic()
        store.upload(shard.path, staged)
        lap(timings, "write", clock)
    checkpoint("ingest.staged")
    return finish(Status.STAGED, truncated, video_id=video_id, staged_key=staged, faces=faces,
                  detector_stats=stats, decode_path=decode_path, **asdict(covered))
