"""The run summary: what one ingest run did, as a report in the store and as its ``runs`` row."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from realness_tasks import ledger
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.discovery import clean_staging
from realness_tasks.ledger import LedgerEntry, Status
from realness_tasks.stage_timings import STAGES
from realness_tasks.storage import ObjectStore


def write_run_summary(cfg: RealnessConfig, store: ObjectStore, db: Database, outcomes: Sequence[LedgerEntry], *,
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
    ledger.record_run(db, run_id=run_id, dag_id=dag_id, started_at=started_at, summary=summary)
    return summary


def report_key(cfg: RealnessConfig, run_id: str) -> str:
    """Where a run's ingest report goes (run ids hold ':' and '+', which some stores dislike)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{cfg.reports_prefix}ingest/{safe}.json"
