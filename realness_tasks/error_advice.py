"""What the ``realness`` command prints when a step fails for a reason its user can fix.

One line naming the fault and the setting or input to change, instead of a traceback; the
traceback itself is kept in a file under ``<REALNESS_HOME>/logs/`` for whoever needs it.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path


def explain(exc: BaseException) -> str | None:
    """One line saying what failed and which setting or input to fix, for the faults a user can fix."""
    import sqlalchemy.exc

    from realness_tasks.dataset import NotEnoughData
    from realness_tasks.model import BackboneUnavailable
    from realness_tasks.settings import ConfigurationError
    from realness_tasks.storage import StorageUnavailable
    from realness_tasks.promotion import ChampionUnavailable

    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, StorageUnavailable):
        return (f"the object store could not be reached: {first}. Check REALNESS_STORE_URI and the "
                "REALNESS_S3_* settings (endpoint, keys, timeouts) or the aws_default connection")
    if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        return (f"the verdict database could not be used: {detail}. Check REALNESS_DATABASE_URL (or the "
                "realness_db connection) and that the database server is running")
    if isinstance(exc, NotEnoughData):
        return (f"not enough labelled data to train: {first}. Add labelled videos under the landing prefix "
                "(a metadata.json or real/ and fake/ folders) and run realness ingest")
    if isinstance(exc, (BackboneUnavailable, ChampionUnavailable)):
        return first
    if isinstance(exc, ConfigurationError):  # our own message, whole: its advice comes last
        return f"configuration: {str(exc).strip().splitlines()[0]}"
    if isinstance(exc, ValueError) and str(exc).startswith("REALNESS_"):
        return f"configuration: {first}"
    if isinstance(exc, OSError):
        return _explain_os_error(exc, first)
    return None


def _explain_os_error(exc: OSError, first: str) -> str:
    """The hint that fits the error: free space for a full disk, writable folders for a refused write; an
    error raised with a message of ours (a model file missing from the registry) says what to do itself."""
    import errno

    if exc.errno is None:
        return first
    name = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{exc.strerror}{name}. Check free space under REALNESS_HOME and the store root"
    return f"{exc.strerror or first}{name}. Check that REALNESS_HOME and the store root are writable folders (not files)"


def save_traceback(command: str) -> str | None:
    """Write the traceback being handled to ``<REALNESS_HOME>/logs/``; returns the file, or None if impossible."""
    import traceback

    home = Path(os.environ.get("REALNESS_HOME") or Path.home() / ".realness")
    try:
        folder = home / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{command}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}.log"
        path.write_text(traceback.format_exc())
        logging.getLogger("realness").debug("traceback saved to %s", path)
        return str(path)
    except OSError:
        traceback.print_exc()
        return None

