"""What the benchmarks share, some of it with the tests: the repository root, a child's own peak
memory, a free port and a scratch PostgreSQL database.

Importing this module changes no environment variable and no import path, so tests may import it too.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent

LAUNCHER = r"""
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"exit_code": os.waitstatus_to_exitcode(status), "peak_rss_mb": round(usage.ru_maxrss / 1024)}, out)
"""


def run_measured(command: list[str], *, env: dict[str, str], cwd: Path, output: IO) -> dict:
    """Run ``command`` (stdout and stderr to ``output``): wall seconds, exit code, its own peak RSS in MB.

    Linux carries a process's resident high-water mark across fork and exec, so the ``ru_maxrss`` of a
    child started by a benchmark that holds gigabytes (decoded photographs, TensorFlow) starts at the
    benchmark's size. The command is therefore started by a small launcher process, which forks it
    while small and reports the child's own resource usage.
    """
    with tempfile.TemporaryDirectory(prefix="realness-measured-") as folder:
        result = Path(folder) / "usage.json"
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", LAUNCHER, str(result), *command], env=env, cwd=cwd, stdout=output,
                       stderr=subprocess.STDOUT, check=False)
        seconds = time.monotonic() - started
        usage = json.loads(result.read_text())
    return {"seconds": round(seconds, 1), **usage}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``server_url``, dropped (connections and all) afterwards."""
    import sqlalchemy as sa

    name = f"realness_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
