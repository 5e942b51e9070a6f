"""Where a video's ingest time goes: ``LedgerEntry.stage_seconds``, summed per stage in the run report.

The load_* stages are one-off: MTCNN, paid by a task's first video; Great Expectations, paid by the
process's first validation run and, like each run's validate seconds, split evenly over that run's shards.
"""

from __future__ import annotations

import time

STAGES = ("load_detector", "download", "decode", "detect", "crop", "embed", "write", "load_checks", "validate", "publish")


def lap(timings: dict[str, float], stage: str, since: float) -> float:
    """Add the seconds since ``since`` to ``stage``; returns now."""
    now = time.monotonic()
    add_seconds(timings, stage, now - since)
    return now


def add_seconds(timings: dict[str, float], stage: str, seconds: float) -> None:
    """Add ``seconds`` to ``stage`` (negative seconds move time out of it)."""
    timings[stage] = round(timings.get(stage, 0.0) + seconds, 4)
