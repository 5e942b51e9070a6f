"""Test hooks for crash and concurrency tests: kill, or hold, this process at a named point.

``REALNESS_TEST_KILL_AT=<point>`` makes :func:`checkpoint` send SIGKILL to its own process when the
run reaches ``<point>``, as a power cut or OOM kill would. ``REALNESS_TEST_HOLD_AT=<point>=<seconds>``
makes it sleep there instead, so a test can see tasks that overlap whatever their own speed. Unset
(always, outside the tests) a checkpoint costs two dictionary look-ups. The points:
``ingest.downloaded``, ``ingest.claimed``, ``ingest.staged``, ``ingest.published``,
``score.committed`` (verdicts committed, Parquet export not yet written).
"""

from __future__ import annotations

import os
import signal
import time

KILL_AT = "REALNESS_TEST_KILL_AT"
HOLD_AT = "REALNESS_TEST_HOLD_AT"


def checkpoint(point: str) -> None:
    """Kill or hold this process here when a test asked for ``point``; otherwise return at once."""
    if os.environ.get(KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    held_point, _, seconds = os.environ.get(HOLD_AT, "").partition("=")
    if held_point == point:
        time.sleep(float(seconds))
