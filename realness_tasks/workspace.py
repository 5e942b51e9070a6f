"""Scratch folders that a crash cannot leave behind for long.

Each run makes its scratch folders under ``<REALNESS_HOME>/scratch`` with the host name and process
id in the name, and removes them in every exit path it controls. A SIGKILL or a power cut skips
that; so every new scratch folder first removes the folders of processes of this host that are no
longer running.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)


def scratch_root(home: str) -> Path:
    """The scratch folder under ``home``, made when missing."""
    path = Path(home, "scratch")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _tag() -> str:
    host = "".join(c if c.isalnum() or c == "-" else "_" for c in socket.gethostname())[:40] or "host"
    return f"{host}.{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_leftovers(home: str) -> list[Path]:
    """Remove scratch folders of this host's processes that have ended; returns what was removed."""
    host = _tag().rsplit(".", 1)[0]
    removed = []
    for path in scratch_root(home).iterdir():
        parts = path.name.split("~")
        if len(parts) < 3 or not path.is_dir():
            continue
        owner_host, _, pid = parts[1].rpartition(".")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d scratch folder(s) left by ended processes: %s", len(removed),
                 ", ".join(p.name for p in removed))
    return removed


def scratch_dir(home: str, purpose: str) -> tempfile.TemporaryDirectory:
    """A ``TemporaryDirectory`` under ``<home>/scratch`` named ``<purpose>~<host>.<pid>~<random>``."""
    clean_leftovers(home)
    return tempfile.TemporaryDirectory(prefix=f"{purpose}~{_tag()}~", dir=scratch_root(home))
