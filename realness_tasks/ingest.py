"""Ingest: from videos in the landing prefix to validated Parquet face shards.

The stages, each a module whose functions the DAG (and the ``realness ingest`` command) calls:

1. :mod:`realness_tasks.discovery` lists the landing prefix and returns the objects not yet processed
   (labels from :mod:`realness_tasks.landing_labels`).
2. :mod:`realness_tasks.extraction` downloads one object, identifies it by content hash, samples frames,
   detects and crops faces and writes a shard to the staging prefix.
3. :mod:`realness_tasks.publication` checks the staged shards with Great Expectations, many in one run,
   and moves each to the faces prefix, or to quarantine with its validation report beside it.
4. :mod:`realness_tasks.run_summary` writes the run report and the ``runs`` row.

Every object ends with a ledger row saying what happened and why. Bad input never raises;
an unreachable store does (``StorageUnavailable``), so Airflow retries the task, and a retry
rewrites the same keys and rows instead of adding new ones.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from realness_tasks.config import RealnessConfig
from realness_tasks.discovery import scan_landing
from realness_tasks.extraction import BatchProgress, Progress, process_video
from realness_tasks.publication import validate_and_publish
from realness_tasks.resources import run_resources
from realness_tasks.run_summary import write_run_summary

log = logging.getLogger(__name__)


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
        return write_run_summary(cfg, store, db, outcomes, run_id=run_id, dag_id="realness_ingest",
                                 started_at=started, skipped=found.skipped)
