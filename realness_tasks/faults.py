"""A test hook for crash tests: kill this process at a named point, as a power cut or OOM kill would.

``REALNESS_TEST_KILL_AT=<point>`` makes :func:`checkpoint` send SIGKILL to its own process when the
run reaches ``<point>``; unset (always, outside the fault tests) a checkpoint costs one dictionary
look-up. The points: ``ingest.downloaded``, ``ingest.claimed``, ``ingest.staged``, ``ingest.published``,
``score.committed`` (verdicts committed, Parquet export not yet written).
"""

from __future__ import annotations

import os
import signal

KILL_AT = "REALNESS_TEST_KILL_AT"


def checkpoint(point: str) -> None:
    if os.environ.get(KILL_AT) == point:
        os.kill(os.getpid(), signal.SIGKILL)
