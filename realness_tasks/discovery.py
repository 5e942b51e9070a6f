"""Discovery: list the landing prefix once and account for every object in it.

:func:`scan_landing` returns the videos to process (:class:`VideoRef`, small enough for XCom) and
writes a ledger row for every other input (sidecars, refused links); :func:`batch_refs` deals the
videos out to the mapped extraction tasks. Labels come from :mod:`realness_tasks.landing_labels`.
"""

from __future__ import annotations

import heapq
import logging
import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

from realness_tasks import labels, ledger
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.landing_labels import (SIDECAR_NAMES, find_labels, read_sidecars, sidecar_reason,
                                           unmatched_entries)
from realness_tasks.ledger import LedgerEntry, Status
from realness_tasks.storage import ObjectStore, loggable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoRef:
    """A landing object to ingest; small enough to travel through XCom."""

    key: str
    etag: str
    size: int
    label: str | None = None
    label_source: str | None = None   # where the label came from: a sidecar's key, or the video's own (folder)
    label_etag: str | None = None     # that sidecar's etag when it was read
    split_group: str | None = None    # the videos it must share a training split with (see ``landing_labels``)


@dataclass(frozen=True)
class Discovery:
    """What one listing of the landing prefix found."""

    refs: list[VideoRef]                  # objects to process
    recorded: list[LedgerEntry]           # ledger rows discovery itself wrote this run (sidecars, refused links)
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
    facts = find_labels(cfg.landing_prefix, [o.key for o in objects], sidecars)
    rows = ledger.ledger_rows(db)
    recorded: list[LedgerEntry] = []

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
                       run_id: str) -> list[LedgerEntry]:
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
    in_flight = ledger.video_ids_with_status(db, [Status.PENDING, Status.STAGED])
    finished = ledger.video_ids_with_status(db, [Status.PUBLISHED, Status.QUARANTINED, Status.NO_FACE,
                                                 Status.DUPLICATE])
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
