"""Ingest: from videos in the landing prefix to validated Parquet face shards.

The steps, each a function the DAG (and the ``realness ingest`` command) calls:

1. :func:`discover` lists the landing prefix and returns the objects not yet processed.
2. :func:`process_video` downloads one object, identifies it by content hash, samples frames,
   detects and crops faces and writes a shard to the staging prefix.
3. :func:`validate_and_publish` checks the staged shards with Great Expectations, many in one run,
   and moves each to the faces prefix, or to quarantine with its validation report beside it.
4. :func:`summarize` writes the run report and the ``runs`` row.

Every object ends with a ledger row saying what happened and why. Bad input never raises;
an unreachable store does (``StorageUnavailable``), so Airflow retries the task, and a retry
rewrites the same keys and rows instead of adding new ones.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import posixpath
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realness_tasks import labels, ledger
from realness_tasks.crash_points import checkpoint
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.ledger import LedgerEntry, Status, VideoRecord
from realness_tasks.resources import run_resources
from realness_tasks.shards import FaceRow, rows_to_table, shard_key, shard_video_id, table_to_bytes
from realness_tasks.storage import ObjectStore, loggable, safe_key
from realness_tasks.workspace import scratch_dir

if TYPE_CHECKING:  # validation imports OpenCV; the gate imports it when it runs
    from realness_tasks.embeddings import FaceEmbedder
    from realness_tasks.validation import ValidationReport

log = logging.getLogger(__name__)

SIDECAR_NAMES = {"metadata.json"}
# Where a video's ingest time goes (VideoOutcome.stage_seconds, summed in the run report).
# The load_* stages are one-off: MTCNN, paid by a task's first video; Great Expectations, paid by the process's
# first validation run and, like each run's validate seconds, split evenly over that run's shards.
STAGES = ("load_detector", "download", "decode", "detect", "crop", "embed", "write", "load_checks", "validate", "publish")
# Shards per Great Expectations run: its cost is per run; the run's DataFrame holds their rows without the crops.
SHARDS_PER_VALIDATION_RUN = 200
LABEL_DIRECTORIES = {"real": "REAL", "fake": "FAKE"}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class VideoRef:
    """A landing object to ingest; small enough to travel through XCom."""

    key: str
    etag: str
    size: int
    label: str | None = None
    label_source: str | None = None   # where the label came from: a sidecar's key, or the video's own (folder)
    label_etag: str | None = None     # that sidecar's etag when it was read
    split_group: str | None = None    # the videos it must share a training split with (``split_groups``)


# What became of one landing object: the ledger row's record type (also travels through XCom).
VideoOutcome = LedgerEntry


# --- 1. discovery -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sidecar:
    """A ``metadata.json`` as read: the labels it gives (video key -> label), or why it gives none.

    ``groups`` and ``originals`` say which videos must share a training split (see :func:`split_groups`).
    """

    key: str
    etag: str
    labels: dict[str, str]
    problem: str | None = None     # set: the sidecar is unusable (BAD_SIDECAR); its videos go on unlabelled
    ignored: dict[str, str] = field(default_factory=dict)    # entry name -> why it gives no label
    groups: dict[str, str] = field(default_factory=dict)     # video key -> its entry's "group"
    originals: dict[str, str] = field(default_factory=dict)  # video key -> key of the video it was made from


WITHOUT_LABEL = "without a REAL/FAKE label"
BAD_GROUPING = "whose group or original is not a non-empty string"


def parse_sidecar(key: str, etag: str, data: bytes) -> Sidecar:
    """A DFDC-style sidecar; never raises.

    ``{"name.mp4": {"label": "REAL"|"FAKE", "group": "any string", "original": "real.mp4"}, ...}``, with
    ``group`` and ``original`` optional; names and originals are relative to the sidecar's folder. An
    entry whose group or original is malformed gives no label rather than a wrong group: a wrong group
    lets a person leak between the training splits.
    """
    try:
        metadata = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return Sidecar(key, etag, {}, f"not valid JSON: {str(exc)[:200]}")
    if not isinstance(metadata, dict):
        return Sidecar(key, etag, {}, f"JSON {type(metadata).__name__} where an object of video names was expected")
    folder = posixpath.dirname(key)

    def video_key(name: str) -> str:  # "./a.mp4" and "x/../a.mp4" name the listed key "a.mp4"
        return posixpath.normpath(posixpath.join(folder, name) if folder else name)

    labels: dict[str, str] = {}
    groups: dict[str, str] = {}
    originals: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for name, entry in metadata.items():
        label = str(entry.get("label", "")).upper() if isinstance(entry, dict) else ""
        if label not in ("REAL", "FAKE"):
            ignored[str(name)] = WITHOUT_LABEL
            continue
        group, original = entry.get("group"), entry.get("original")
        if any(value is not None and not (isinstance(value, str) and value.strip()) for value in (group, original)):
            ignored[str(name)] = BAD_GROUPING
            continue
        labels[video_key(name)] = label
        if group is not None:
            groups[video_key(name)] = group
        if original is not None:
            originals[video_key(name)] = video_key(original)
    if metadata and not labels:
        problem = (f"none of its {len(metadata)} entries has a REAL/FAKE label"
                   if set(ignored.values()) == {WITHOUT_LABEL}
                   else f"none of its {len(metadata)} entries is usable: {describe_ignored(ignored)}")
        return Sidecar(key, etag, {}, problem, ignored)
    return Sidecar(key, etag, labels, None, ignored, groups, originals)


def describe_ignored(ignored: dict[str, str]) -> str:
    """``1 entry without a REAL/FAKE label ignored: b.mp4``, one such clause per reason, joined by ``; ``."""
    clauses = []
    for why in dict.fromkeys(ignored.values()):
        names = [name for name, reason in ignored.items() if reason == why]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        clauses.append(f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} {why} ignored: {shown}")
    return "; ".join(clauses)


def sidecar_reason(sidecar: Sidecar, unmatched: Sequence[str] = ()) -> str:
    """The ledger reason of a sidecar: its labels, then the entries that give none, then those naming no listed
    video (``unmatched``: their labels wait for the video to arrive)."""
    if sidecar.problem:
        return sidecar.problem
    text = f"{len(sidecar.labels) - len(unmatched)} label(s)"
    if sidecar.ignored:
        text += f"; {describe_ignored(sidecar.ignored)}"
    if unmatched:
        folder = posixpath.dirname(sidecar.key)
        names = [loggable(posixpath.relpath(key, folder or ".")) for key in unmatched[:5]]
        text += (f"; {len(unmatched)} entr{'y' if len(unmatched) == 1 else 'ies'} naming no listed video: "
                 f"{', '.join(names)}{', ...' if len(unmatched) > 5 else ''}")
    return text


def unmatched_entries(sidecar: Sidecar, listed: set[str]) -> list[str]:
    """The keys a sidecar labels that the listing does not hold (a typo, a video not uploaded yet), sorted."""
    return sorted(key for key in sidecar.labels if key not in listed)


def read_sidecars(store: ObjectStore, objects: Sequence, max_bytes: int | None = None) -> list[Sidecar]:
    """Every sidecar among ``objects`` (``StoredObject`` or plain keys), parsed; bad ones carry their problem.

    A listed sidecar over ``max_bytes`` is not read (every run re-reads every sidecar): it is a bad
    sidecar whose problem gives its size. Plain keys carry no size and are read whole.
    """
    sidecars = []
    for obj in objects:
        key, etag = (obj, "") if isinstance(obj, str) else (obj.key, obj.etag)
        if posixpath.basename(key) not in SIDECAR_NAMES:
            continue
        if max_bytes is not None and not isinstance(obj, str) and obj.size > max_bytes:
            sidecars.append(Sidecar(key, etag, {}, f"{obj.size} bytes, over REALNESS_SIDECAR_MAX_MEGABYTES "
                                                   f"({max_bytes} bytes): not read; split it per folder, or raise "
                                                   "the limit"))
            continue
        try:
            data = store.get_bytes(key)
        except KeyError:  # removed since it was listed: the next run sees what is there then
            log.warning("sidecar %s vanished while it was being read", loggable(key))
            continue
        sidecars.append(parse_sidecar(key, etag, data))
    return sidecars


def folder_label(landing_prefix: str, key: str) -> str | None:
    folders = key[len(landing_prefix):].lower().split("/")[:-1]
    found = [LABEL_DIRECTORIES[f] for f in folders if f in LABEL_DIRECTORIES]
    return found[-1] if found else None


def split_groups(sidecars: Sequence[Sidecar]) -> dict[str, str]:
    """Video key -> the group that keeps it in one training split, for the videos the sidecars group.

    A video's own ``group``; else, for a fake with an ``original``, the original's group (followed
    from original to original); else the key of the first video up that chain without an original. A
    video other entries name as their original, without a group of its own, is grouped under its own
    key, so it joins its fakes. A cycle of originals takes its smallest key. Videos absent from the
    result are each a group of their own.
    """
    groups: dict[str, str] = {}
    originals: dict[str, str] = {}
    for sidecar in sidecars:
        groups.update(sidecar.groups)
        originals.update(sidecar.originals)

    def resolve(key: str) -> str:
        chain: list[str] = []
        while key not in groups and key in originals and key not in chain:
            chain.append(key)
            key = originals[key]
        if key in groups:
            return groups[key]
        return min(chain[chain.index(key):]) if key in chain else key

    return {key: resolve(key) for key in sorted({*groups, *originals, *originals.values()})}


def label_facts(landing_prefix: str, keys: Sequence[str], sidecars: Sequence[Sidecar]
                ) -> dict[str, tuple[str, str, str, str | None]]:
    """key -> (label, source key, source etag, split group): a sidecar's label, else the ``real/`` / ``fake/``
    folder's; the split group (see :func:`split_groups`) whichever gave the label."""
    groups = split_groups(sidecars)
    facts: dict[str, tuple[str, str, str, str | None]] = {}
    for sidecar in sidecars:
        for video_key, label in sidecar.labels.items():
            facts[video_key] = (label, sidecar.key, sidecar.etag, groups.get(video_key))
    for key in keys:
        if key not in facts and (label := folder_label(landing_prefix, key)):
            facts[key] = (label, key, "", groups.get(key))
    return facts


def read_labels(store: ObjectStore, landing_prefix: str, keys: Sequence[str]) -> dict[str, str]:
    """Labels from DFDC-style ``metadata.json`` files beside the videos, else ``real/`` / ``fake/`` folders."""
    sidecars = read_sidecars(store, keys)
    for sidecar in sidecars:
        if sidecar.problem:
            log.warning("ignoring %s: %s", sidecar.key, sidecar.problem)
    return {k: fact[0] for k, fact in label_facts(landing_prefix, keys, sidecars).items()}


@dataclass(frozen=True)
class Discovery:
    """What one listing of the landing prefix found."""

    refs: list[VideoRef]                  # objects to process
    recorded: list[VideoOutcome]          # ledger rows discovery itself wrote this run (sidecars, refused links)
    skipped: list[dict[str, str]]         # objects with no ledger row, each with the reason (for the run report)
    already_processed: int = 0


def skip_reason(key: str, size: int) -> str | None:
    """Why a listed object is not an input at all (no ledger row; the run report lists it), or None."""
    name = posixpath.basename(key)
    if key.endswith("/"):
        return "folder marker"
    if name.startswith(".") and ".tmp-" in name:
        return "temporary file of an unfinished write"
    if name.startswith("."):
        return "hidden file"
    return None


def scan_landing(cfg: RealnessConfig, store: ObjectStore, db: Database, *, reprocess: bool = False,
                 run_id: str = "discover") -> Discovery:
    """List the landing prefix once: the objects to process, with every other object accounted for.

    Sidecars get a ``SIDECAR`` or ``BAD_SIDECAR`` ledger row (``SIDECAR_GONE`` once no longer listed),
    refused local links an ``UNSAFE_KEY`` row, hidden and temporary files a line in the run report; rows
    are written only when new or changed, so a re-run changes nothing. Labels found for videos ingested
    before are recorded in the ``labels`` table.
    """
    listed = list(store.list(cfg.landing_prefix))
    skipped = [{"source_uri": store.uri_for(o.key), "reason": reason}
               for o in listed if (reason := skip_reason(o.key, o.size))]
    objects = [o for o in listed if not skip_reason(o.key, o.size)]
    sidecars = read_sidecars(store, [o for o in objects if o.problem is None],
                             max_bytes=cfg.sidecar_max_megabytes * 1024 * 1024)
    facts = label_facts(cfg.landing_prefix, [o.key for o in objects], sidecars)
    rows = {r["source_uri"]: r for r in db.query("SELECT source_uri, source_etag, status, reason, video_id "
                                                 "FROM ingest_ledger")}
    recorded: list[VideoOutcome] = []

    def note(obj, status: Status, reason: str) -> None:
        uri = store.uri_for(obj.key)
        row = rows.get(uri)
        if row and (row["source_etag"], row["status"], row["reason"]) == (obj.etag, str(status), reason):
            return
        entry = LedgerEntry(uri, obj.etag, status, run_id, reason=reason)
        ledger.record(db, entry)
        recorded.append(entry)
        log.info("%s -> %s (%s)", loggable(obj.key), status, reason)

    by_key = {o.key: o for o in objects}
    for sidecar in sidecars:
        unmatched = unmatched_entries(sidecar, set(by_key))
        if unmatched:
            log.warning("%s: %d labelled entr(ies) name no listed video, e.g. %s", loggable(sidecar.key),
                        len(unmatched), ", ".join(loggable(k) for k in unmatched[:5]))
        note(by_key[sidecar.key], Status.BAD_SIDECAR if sidecar.problem else Status.SIDECAR,
             sidecar_reason(sidecar, unmatched))
    recorded += mark_gone_sidecars(store, db, rows, {store.uri_for(o.key) for o in listed},
                                   store.uri_for(cfg.landing_prefix), run_id=run_id)
    for obj in objects:
        if obj.problem:
            note(obj, Status.UNSAFE_KEY, obj.problem)
    labels.sync_from_landing(db, store, facts, rows, {o.key: o.etag for o in objects}, sidecars, run_id=run_id)
    clean_staging(cfg, store, db)

    done = {} if reprocess else {uri: r["source_etag"] for uri, r in rows.items() if Status(r["status"]).terminal}
    videos = [o for o in objects if o.problem is None and posixpath.basename(o.key) not in SIDECAR_NAMES]
    refs = [VideoRef(o.key, o.etag, o.size, *facts.get(o.key, (None, None, None, None))) for o in videos
            if done.get(store.uri_for(o.key)) != o.etag]
    already = len(videos) - len(refs)
    log.info("discovered %d new object(s) under %s (%d already processed, %d sidecar(s), %d skipped, %d refused)",
             len(refs), store.uri_for(cfg.landing_prefix), already, len(sidecars), len(skipped),
             sum(1 for o in objects if o.problem))
    for item in skipped:
        log.info("skipped %s: %s", loggable(item["source_uri"]), item["reason"])
    return Discovery(refs, recorded, skipped, already)


def mark_gone_sidecars(store: ObjectStore, db: Database, rows: dict[str, dict], listed: set[str], landing_uri: str, *,
                       run_id: str) -> list[VideoOutcome]:
    """``SIDECAR_GONE`` for the sidecar rows under the landing prefix whose file is no longer listed.

    The labels it gave stay (``labels.py``: archives often move sidecars away after ingest); the row
    says the file is gone rather than that it is still read. A sidecar put back is ``SIDECAR`` again.
    """
    gone = []
    for uri, row in sorted(rows.items()):
        if (row["status"] in (Status.SIDECAR, Status.BAD_SIDECAR) and uri not in listed
                and uri.startswith(landing_uri)):
            entry = LedgerEntry(uri, row["source_etag"], Status.SIDECAR_GONE, run_id,
                                reason=f"no longer listed (was {row['status']}); the labels it gave stay")
            ledger.record(db, entry)
            gone.append(entry)
            log.info("%s -> %s", loggable(uri), Status.SIDECAR_GONE)
    return gone


def clean_staging(cfg: RealnessConfig, store: ObjectStore, db: Database) -> list[str]:
    """Delete staged shards that no run will publish: their video reached a final status since.

    A run that dies after staging leaves ``STAGED``; the next run processes the video again, on its
    own date, and publishes that shard, so the first one would stay under ``staging/`` for ever.
    """
    in_flight = {r["video_id"] for r in db.query(
        "SELECT video_id FROM ingest_ledger WHERE status IN ('PENDING', 'STAGED') AND video_id IS NOT NULL")}
    finished = {r["video_id"] for r in db.query(
        "SELECT video_id FROM ingest_ledger WHERE status IN ('PUBLISHED', 'QUARANTINED', 'NO_FACE', 'DUPLICATE')"
        " AND video_id IS NOT NULL")}
    removed = []
    for obj in store.list(cfg.staging_prefix):
        video_id = posixpath.basename(obj.key).removesuffix(".parquet")
        if obj.key.endswith(".parquet") and video_id in finished and video_id not in in_flight:
            store.delete(obj.key)
            removed.append(obj.key)
    if removed:
        log.info("removed %d orphaned staged shard(s): %s", len(removed), ", ".join(removed))
    return removed


def discover(cfg: RealnessConfig, store: ObjectStore, db: Database, *, reprocess: bool = False,
             run_id: str = "discover") -> list[VideoRef]:
    """Landing objects whose (key, etag) has not reached a final ledger status yet (see :func:`scan_landing`).

    Every object is a candidate, whatever its extension: content decides (see ``frames.sniff_container``),
    so a non-video file gets its NOT_VIDEO row instead of being silently ignored.
    """
    return scan_landing(cfg, store, db, reprocess=reprocess, run_id=run_id).refs


def batch_refs(refs: Sequence[VideoRef], cfg: RealnessConfig, max_map_length: int) -> list[list[VideoRef]]:
    """Split the discovered videos into mapped tasks, never more than the run's task limit.

    ``cfg.videos_per_task`` > 0 puts that many videos in each task, in listing order. Otherwise
    (automatic) the number of tasks follows the total size, about ``cfg.megabytes_per_task`` each
    but at least ``cfg.min_tasks_per_run``, and the videos are dealt largest first to the lightest
    task so far, so small clips are grouped, a video larger than a task's share gets one of its own
    and the tasks end at about the same time (decoding cost follows the bytes).
    """
    if not refs:
        return []
    max_tasks = max(1, min(max_map_length, cfg.max_tasks_per_run))
    if cfg.videos_per_task > 0:
        size = max(cfg.videos_per_task, math.ceil(len(refs) / max_tasks))
        return [list(refs[i:i + size]) for i in range(0, len(refs), size)]
    total = sum(max(1, ref.size) for ref in refs)
    wanted = max(cfg.min_tasks_per_run, math.ceil(total / (cfg.megabytes_per_task * 1024 * 1024)))
    tasks = max(1, min(len(refs), max_tasks, wanted))
    loads = [(0, task) for task in range(tasks)]  # a heap of (bytes so far, task)
    batches: list[list[VideoRef]] = [[] for _ in range(tasks)]
    for ref in sorted(refs, key=lambda r: r.size, reverse=True):
        load, task = heapq.heappop(loads)
        batches[task].append(ref)
        heapq.heappush(loads, (load + max(1, ref.size), task))
    return batches


class BatchProgress:
    """One line per frame batch for a task's batch of videos: video i of n, frames done, elapsed time
    and the expected remaining time, extrapolated from the bytes done so far (decoding cost follows
    the bytes, see ``batch_refs``)."""

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
        ref = self.refs[self.number - 1]
        total = sum(max(1, r.size) for r in self.refs)
        finished = self.bytes_before + max(1, ref.size) * done / max(1, planned)
        elapsed = self.clock() - self.started
        remaining = elapsed * (total - finished) / finished
        self.emit(f"video {self.number} of {len(self.refs)} ({loggable(posixpath.basename(ref.key))}): {done}/{planned} "
                  f"frames, {faces} faces; elapsed {elapsed:.0f} s, about {remaining:.0f} s remaining")


# --- 2. frames -> faces -> staged shard -----------------------------------------------------------

def content_hash(path: Path) -> str:
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


def extract_face_rows(path: Path, cfg: RealnessConfig, detector, *, video_id: str, source_uri: str,
                      label: str | None, run_id: str, progress: BatchProgress | None = None,
                      stage_seconds: dict[str, float] | None = None, embedder: FaceEmbedder | None = None):
    """Sample, detect and crop one video; returns (info, rows, the sampler: what it covered, where the stream
    ended, how it decoded).

    With ``embedder``, the faces of ``REALNESS_IDENTITY_EMBEDDED_FRAMES`` frames spread over the
    video get a face-recognition embedding (the first frame with a face at or after each target).
    Every face gets its ``track_id`` once all frames are read (``realness_tasks.tracks``: by box, and
    by embedding or the crop's colour histogram when boxes jump).
    ``stage_seconds`` (if given) accumulates the seconds spent decoding, detecting, cropping and embedding.
    """
    import cv2
    import numpy as np

    from realness_tasks.faces import crop_face, dominant_faces, encode_jpeg
    from realness_tasks.frames import FrameSampler, probe_video
    from realness_tasks.tracks import Sighting, colour_histogram, link

    timings = stage_seconds if stage_seconds is not None else {}
    clock = time.monotonic()
    info = probe_video(path, cfg.sampling)
    sampler = FrameSampler(path, info, cfg.sampling)
    rows: list[FaceRow] = []
    sightings: list[Sighting] = []
    sampled = 0
    created = datetime.now(timezone.utc)
    chunks = _chunks(iter(sampler), _frames_per_batch(cfg, info.width, info.height))
    targets = embedding_targets(sampler.planned, cfg.identity.embedded_frames) if embedder else []
    while True:
        chunk = next(chunks, None)
        clock = _lap(timings, "decode", clock)
        if chunk is None:
            break
        found = detector.detect([frame.image for frame in chunk])
        clock = _lap(timings, "detect", clock)
        embedded_seconds = 0.0
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
            for face_index, det in enumerate(faces):
                crop = crop_face(frame.image, det.box, cfg.crop)
                x, y, w, h = _pixel_box(det.box, width, height)
                sightings.append(Sighting(frame.index, (x, y, w, h), colour_histogram(crop),
                                          None if embeddings[face_index] is None
                                          else np.asarray(embeddings[face_index], np.float32)))
                rows.append(FaceRow(
                    video_id=video_id, source_uri=source_uri, frame_index=frame.index,
                    timestamp_s=round(frame.timestamp_s, 4), face_index=face_index, detector=det.detector,
                    confidence=float(min(1.0, max(0.0, det.confidence))), box_x=x, box_y=y, box_w=w, box_h=h,
                    frame_width=width, frame_height=height,
                    landmarks=[float(v) for v in det.landmarks] if det.landmarks else None,
                    crop_jpeg=encode_jpeg(crop, cfg.crop.jpeg_quality), crop_width=crop.shape[1],
                    crop_height=crop.shape[0], crop_margin=cfg.crop.margin, label=label,
                    azure_status=frame_faces.azure_status, run_id=run_id, created_at=created,
                    embedding=embeddings[face_index]))
        sampled += len(chunk)
        clock = _lap(timings, "crop", clock)
        if embedder:
            _add_seconds(timings, "crop", -embedded_seconds)
            _add_seconds(timings, "embed", embedded_seconds)
        if progress:
            progress.frames(sampled, len(sampler.planned), len(rows))
    rows = [replace(row, track_id=track) for row, track in zip(rows, link(sightings), strict=True)]
    return info, rows, sampler


def _lap(timings: dict[str, float], stage: str, since: float) -> float:
    """Add the seconds since ``since`` to ``stage``; returns now."""
    now = time.monotonic()
    _add_seconds(timings, stage, now - since)
    return now


def _add_seconds(timings: dict[str, float], stage: str, seconds: float) -> None:
    timings[stage] = round(timings.get(stage, 0.0) + seconds, 4)


def _stats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: int(v) - int(before.get(k, 0)) for k, v in after.items() if int(v) - int(before.get(k, 0))}


def process_video(cfg: RealnessConfig, store: ObjectStore, db: Database, ref: VideoRef, *, run_id: str,
                  run_date: str, detector, progress: BatchProgress | None = None,
                  embedder: FaceEmbedder | None = None) -> VideoOutcome:
    """Turn one landing object into a staged shard, or a ledger row explaining why not.

    ``embedder`` (``build_embedder``: None unless REALNESS_IDENTITY_ENABLED) embeds faces for identities."""
    from realness_tasks.frames import VideoError

    source_uri = store.uri_for(ref.key)
    timings: dict[str, float] = {}

    def finish(status: Status, reason: str | None = None, **extra: Any) -> VideoOutcome:
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
        _lap(timings, "download", clock)
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
        _lap(timings, "load_detector", clock)
        stats_before = detector.stats()
        started = time.monotonic()
        try:
            info, rows, sampler = extract_face_rows(
                path, cfg, detector, video_id=video_id, source_uri=source_uri, label=ref.label,
                run_id=run_id, progress=progress, stage_seconds=timings, embedder=embedder)
        except VideoError as exc:
            return finish(Status(exc.status), exc.reason, video_id=video_id)
        ledger.upsert_video(db, VideoRecord(video_id, source_uri, path.stat().st_size, ref.label, info.width,
                                            info.height, info.fps, info.frame_count, info.duration_s))
    stats = _stats_delta(stats_before, detector.stats())
    ended_early_at, covered, decode_path = sampler.ended_early_at, sampler.coverage(), sampler.choice.path
    truncated = f"stream ended at frame {ended_early_at} of {info.frame_count}" if ended_early_at is not None else None
    sampled = covered.frames_sampled
    log.info("%s: %d frames (%s decoding, %d decoded: %s), %d faces in %.1f s", loggable(ref.key), sampled,
             decode_path, sampler.decoded, sampler.choice.reason, len(rows), time.monotonic() - started)
    if sampled == 0:
        return finish(Status.UNREADABLE, truncated or "no frame could be decoded", video_id=video_id,
                      decode_path=decode_path)
    if not rows:
        reason = f"no face in {sampled} sampled frames" + (f"; {truncated}" if truncated else "")
        return finish(Status.NO_FACE, reason, video_id=video_id, detector_stats=stats, decode_path=decode_path,
                      **asdict(covered))
    staged = f"{cfg.staging_prefix}{run_date}/{video_id}.parquet"
    clock = time.monotonic()
    store.put_bytes(staged, table_to_bytes(rows_to_table(rows)))
    _lap(timings, "write", clock)
    checkpoint("ingest.staged")
    return finish(Status.STAGED, truncated, video_id=video_id, staged_key=staged, faces=len(rows),
                  detector_stats=stats, decode_path=decode_path, **asdict(covered))


# --- 3. validation gate ---------------------------------------------------------------------------

def validate_and_publish(cfg: RealnessConfig, store: ObjectStore, db: Database, outcomes: Sequence[VideoOutcome], *,
                         run_id: str, run_date: str) -> list[VideoOutcome]:
    """Publish each staged shard that passes validation, quarantine the others with their reports.

    Outcomes that are not staged shards come back unchanged. Shards are validated
    ``SHARDS_PER_VALIDATION_RUN`` at a time in one Great Expectations run, whose cost is per run
    rather than per shard; a shard an earlier attempt of the task already moved is recognised.
    """
    results = list(outcomes)
    waiting: list[int] = []
    for index, outcome in enumerate(results):
        if outcome.status != Status.STAGED or outcome.staged_key is None:
            continue
        if store.exists(outcome.staged_key):
            waiting.append(index)
        else:  # a retry after the move already happened
            results[index] = _moved_earlier(cfg, store, db, outcome, run_id=run_id, run_date=run_date)
    for chunk in _chunks(iter(waiting), SHARDS_PER_VALIDATION_RUN):
        validated = _validate_chunk(cfg, store, db, [results[index] for index in chunk], run_id=run_id,
                                    run_date=run_date)
        for index, outcome in zip(chunk, validated):
            results[index] = outcome
    remove_superseded_shards(cfg, store, {o.video_id: store.key_for(o.shard_uri) for o in results
                                          if o.status == Status.PUBLISHED and o.video_id and o.shard_uri})
    return results


def remove_superseded_shards(cfg: RealnessConfig, store: ObjectStore, current: dict[str, str]) -> list[str]:
    """Delete the other shards of the videos just published (``current``: video id -> its new shard's key).

    Reprocessing on another date publishes under another date= partition; without this, the older
    shard stays beside it and a reader of every shard counts the video's faces twice. One listing
    per call, not per video.
    """
    if not current:
        return []
    removed = [obj.key for obj in store.list(cfg.faces_prefix)
               if obj.key.endswith(".parquet") and current.get(shard_video_id(obj.key), obj.key) != obj.key]
    for key in removed:
        store.delete(key)
    if removed:
        log.info("removed %d superseded shard(s): %s", len(removed), ", ".join(removed))
    return removed


def _moved_earlier(cfg: RealnessConfig, store: ObjectStore, db: Database, outcome: VideoOutcome, *, run_id: str,
                   run_date: str) -> VideoOutcome:
    """The outcome of a shard whose staged copy is gone because an earlier attempt published or quarantined it."""
    for status, key in ((Status.PUBLISHED, shard_key(cfg.faces_prefix, run_date, outcome.video_id)),
                        (Status.QUARANTINED, shard_key(cfg.quarantine_prefix, run_date, outcome.video_id))):
        if store.exists(key):
            reason = outcome.reason if status == Status.PUBLISHED else "see validation report"
            return _record_validated(store, db, outcome, status, reason, key, run_id=run_id)
    raise FileNotFoundError(f"staged shard {outcome.staged_key} is gone and was never published")


def _validate_chunk(cfg: RealnessConfig, store: ObjectStore, db: Database, staged: Sequence[VideoOutcome], *,
                    run_id: str, run_date: str) -> list[VideoOutcome]:
    """Validate ``staged`` in one run, then publish or quarantine each shard by its own report.

    The run's seconds (``load_checks``: building the checks, paid by the process's first run;
    ``validate``) are split evenly over its shards, so the run report's sums are the time spent.
    """
    from realness_tasks.validation import StagedShard, load_checks, validate_shards

    clock = time.monotonic()
    load_checks(cfg.crop)
    loading = time.monotonic() - clock
    clock = time.monotonic()
    reports = validate_shards([StagedShard(o.video_id, partial(store.get_bytes, o.staged_key)) for o in staged],
                              cfg.crop)
    validating = time.monotonic() - clock
    results = []
    for outcome, report in zip(staged, reports):
        timings = dict(outcome.stage_seconds)
        _add_seconds(timings, "load_checks", loading / len(staged))
        _add_seconds(timings, "validate", validating / len(staged))
        results.append(_publish_or_quarantine(cfg, store, db, replace(outcome, stage_seconds=timings), report,
                                              run_id=run_id, run_date=run_date))
    return results


def _publish_or_quarantine(cfg: RealnessConfig, store: ObjectStore, db: Database, outcome: VideoOutcome,
                           report: ValidationReport, *, run_id: str, run_date: str) -> VideoOutcome:
    """Move a validated shard under the faces prefix, or to quarantine with its ``.validation.json`` beside it."""
    if report.success:
        final_key = shard_key(cfg.faces_prefix, run_date, outcome.video_id)
        clock = time.monotonic()
        store.move(outcome.staged_key, final_key)
        timings = dict(outcome.stage_seconds)
        _lap(timings, "publish", clock)
        checkpoint("ingest.published")
        return _record_validated(store, db, replace(outcome, stage_seconds=timings), Status.PUBLISHED, outcome.reason,
                                 final_key, run_id=run_id)
    quarantine_key = shard_key(cfg.quarantine_prefix, run_date, outcome.video_id)
    store.put_bytes(quarantine_key.removesuffix(".parquet") + ".validation.json",
                    json.dumps({"failures": report.failures, "result": report.details}, indent=1, default=str).encode())
    store.move(outcome.staged_key, quarantine_key)
    return _record_validated(store, db, outcome, Status.QUARANTINED, "validation failed: " + report.reason(),
                             quarantine_key, run_id=run_id)


def _record_validated(store: ObjectStore, db: Database, outcome: VideoOutcome, status: Status, reason: str | None,
                      key: str, *, run_id: str) -> VideoOutcome:
    result = replace(outcome, status=status, reason=reason, run_id=run_id, staged_key=None,
                     shard_uri=store.uri_for(key))
    ledger.record(db, result)
    log.info("%s -> %s%s", loggable(outcome.source_uri), status, f" ({reason})" if reason else "")
    return result


# --- 4. run summary --------------------------------------------------------------------------------

def summarize(cfg: RealnessConfig, store: ObjectStore, db: Database, outcomes: Sequence[VideoOutcome], *,
              run_id: str, dag_id: str, started_at: datetime, skipped: Sequence[dict] = ()) -> dict[str, Any]:
    """Counts per status, faces, detector contributions; saved as a report and as the ``runs`` row.

    ``outcomes`` are the ledger rows this run wrote (videos, and the sidecar and refused-link rows
    discovery wrote); ``skipped`` the listed objects that got no ledger row, each with its reason.
    """
    detector_totals: Counter[str] = Counter()
    stage_totals: Counter[str] = Counter()
    for outcome in outcomes:
        detector_totals.update(outcome.detector_stats)
        stage_totals.update(outcome.stage_seconds)
    summary = {
        "run_id": run_id,
        "videos": sum(1 for o in outcomes if Status(o.status).video),
        "statuses": dict(Counter(o.status for o in outcomes)),
        "faces": sum(o.faces for o in outcomes if o.status == Status.PUBLISHED),
        "frames_sampled": sum(o.frames_sampled for o in outcomes),
        "decode_paths": dict(Counter(o.decode_path for o in outcomes if o.decode_path)),
        "detectors": dict(detector_totals),
        "stage_seconds": {stage: round(stage_totals[stage], 2) for stage in STAGES if stage in stage_totals},
        "published": sorted(o.shard_uri for o in outcomes if o.status == Status.PUBLISHED and o.shard_uri),
        "problems": [{"source_uri": o.source_uri, "status": o.status, "reason": o.reason}
                     for o in outcomes
                     if o.status not in (Status.PUBLISHED, Status.NO_FACE, Status.SIDECAR, Status.SIDECAR_GONE)],
        "skipped": list(skipped),
    }
    clean_staging(cfg, store, db)  # shards a crashed run staged for videos this run published
    store.put_bytes(report_key(cfg, run_id), json.dumps(summary, indent=1).encode())
    db.execute(
        """
        INSERT INTO runs (run_id, dag_id, started_at, finished_at, status, summary)
        VALUES (:run_id, :dag_id, :started, :finished, :status, :summary)
        ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at, status = excluded.status,
            summary = excluded.summary
        """,
        {"run_id": run_id, "dag_id": dag_id, "started": started_at.replace(tzinfo=None),
         "finished": datetime.now(timezone.utc).replace(tzinfo=None), "status": "success",
         "summary": json.dumps(summary)},
    )
    return summary


def report_key(cfg: RealnessConfig, run_id: str) -> str:
    """Where a run's ingest report goes (run ids hold ':' and '+', which some stores dislike)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{cfg.reports_prefix}ingest/{safe}.json"


def run_ingest(cfg: RealnessConfig, *, run_id: str, run_date: str, reprocess: bool = False,
               progress: Progress | None = None) -> dict[str, Any]:
    """The whole ingest in one process (the ``realness ingest`` command): same steps as the DAG."""
    from realness_tasks.embeddings import build_embedder
    from realness_tasks.faces import build_detector

    started = datetime.now(timezone.utc)
    with run_resources(cfg) as run:
        store, db = run.store, run.db
        found = scan_landing(cfg, store, db, reprocess=reprocess, run_id=run_id)
        detector = build_detector(cfg) if found.refs else None
        embedder = build_embedder(cfg) if found.refs else None
        tracker = BatchProgress(found.refs, progress or log.debug)
        staged = [process_video(cfg, store, db, ref, run_id=run_id, run_date=run_date, detector=detector,
                                progress=tracker, embedder=embedder) for ref in tracker]
        outcomes = found.recorded + validate_and_publish(cfg, store, db, staged, run_id=run_id, run_date=run_date)
        return summarize(cfg, store, db, outcomes, run_id=run_id, dag_id="realness_ingest", started_at=started,
                         skipped=found.skipped)
