"""The validation gate: staged shards -> the faces prefix, or quarantine with their validation report.

:func:`validate_and_publish` checks the staged shards with Great Expectations, many in one run, and
moves each by its own report. A retried task recognises a shard an earlier attempt already moved.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING

from realness_tasks import ledger
from realness_tasks.config import RealnessConfig
from realness_tasks.crash_points import checkpoint
from realness_tasks.db import Database
from realness_tasks.ledger import LedgerEntry, Status
from realness_tasks.shards import shard_key, shard_video_id
from realness_tasks.stage_timings import add_seconds, lap
from realness_tasks.storage import ObjectStore, loggable

if TYPE_CHECKING:  # validation imports OpenCV; the gate imports it when it runs
    from realness_tasks.validation import ValidationReport

log = logging.getLogger(__name__)

# Shards per Great Expectations run: its cost is per run; the run's DataFrame holds their rows without the crops.
SHARDS_PER_VALIDATION_RUN = 200


def validate_and_publish(cfg: RealnessConfig, store: ObjectStore, db: Database, outcomes: Sequence[LedgerEntry], *,
                         run_id: str, run_date: str) -> list[LedgerEntry]:
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
    for start in range(0, len(waiting), SHARDS_PER_VALIDATION_RUN):
        chunk = waiting[start:start + SHARDS_PER_VALIDATION_RUN]
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


def _moved_earlier(cfg: RealnessConfig, store: ObjectStore, db: Database, outcome: LedgerEntry, *, run_id: str,
                   run_date: str) -> LedgerEntry:
    """The outcome of a shard whose staged copy is gone because an earlier attempt published or quarantined it."""
    for status, key in ((Status.PUBLISHED, shard_key(cfg.faces_prefix, run_date, outcome.video_id)),
                        (Status.QUARANTINED, shard_key(cfg.quarantine_prefix, run_date, outcome.video_id))):
        if store.exists(key):
            reason = outcome.reason if status == Status.PUBLISHED else "see validation report"
            return _record_validated(store, db, outcome, status, reason, key, run_id=run_id)
    raise FileNotFoundError(f"staged shard {outcome.staged_key} is gone and was never published")


def _validate_chunk(cfg: RealnessConfig, store: ObjectStore, db: Database, staged: Sequence[LedgerEntry], *,
                    run_id: str, run_date: str) -> list[LedgerEntry]:
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
        add_seconds(timings, "load_checks", loading / len(staged))
        add_seconds(timings, "validate", validating / len(staged))
        results.append(_publish_or_quarantine(cfg, store, db, replace(outcome, stage_seconds=timings), report,
                                              run_id=run_id, run_date=run_date))
    return results


def _publish_or_quarantine(cfg: RealnessConfig, store: ObjectStore, db: Database, outcome: LedgerEntry,
                           report: ValidationReport, *, run_id: str, run_date: str) -> LedgerEntry:
    """Move a validated shard under the faces prefix, or to quarantine with its ``.validation.json`` beside it."""
    if report.success:
        final_key = shard_key(cfg.faces_prefix, run_date, outcome.video_id)
        clock = time.monotonic()
        store.move(outcome.staged_key, final_key)
        timings = dict(outcome.stage_seconds)
        lap(timings, "publish", clock)
        checkpoint("ingest.published")
        return _record_validated(store, db, replace(outcome, stage_seconds=timings), Status.PUBLISHED, outcome.reason,
                                 final_key, run_id=run_id)
    quarantine_key = shard_key(cfg.quarantine_prefix, run_date, outcome.video_id)
    store.put_bytes(quarantine_key.removesuffix(".parquet") + ".validation.json",
                    json.dumps({"failures": report.failures, "result": report.details}, indent=1, default=str).encode())
    store.move(outcome.staged_key, quarantine_key)
    return _record_validated(store, db, outcome, Status.QUARANTINED, "validation failed: " + report.reason(),
                             quarantine_key, run_id=run_id)


def _record_validated(store: ObjectStore, db: Database, outcome: LedgerEntry, status: Status, reason: str | None,
                      key: str, *, run_id: str) -> LedgerEntry:
    result = replace(outcome, status=status, reason=reason, run_id=run_id, staged_key=None,
                     shard_uri=store.uri_for(key))
    ledger.record(db, result)
    log.info("%s -> %s%s", loggable(outcome.source_uri), status, f" ({reason})" if reason else "")
    return result
