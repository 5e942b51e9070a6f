"""Run a command in a process of its own and read that process's own peak memory.

Linux carries a process's resident high-water mark across fork and exec, so the ``ru_maxrss`` of a
child started by a benchmark that holds gigabytes (decoded photographs, TensorFlow) starts at the
benchmark's size, not at the child's. The command is therefore started by a small launcher process,
which forks it while small and reports the child's own resource usage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

LAUNCHER = r"""
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({"exit_code": os.waitstatus_to_exitcode(status), "peak_rss_mb": round(usage.ru_maxrss / 1024)}, out)
"""


def run_measured(command: list[str], *, env: dict[str, str], cwd: Path, output: IO) -> dict:
    """Run ``command`` (stdout and stderr to ``output``): wall seconds, exit code, its own peak RSS in MB."""
    with tempfile.TemporaryDirectory(prefix="realness-measured-") as folder:
        result = Path(folder) / "usage.json"
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", LAUNCHER, str(result), *command], env=env, cwd=cwd, stdout=output,
                       stderr=subprocess.STDOUT, check=False)
        seconds = time.monotonic() - started
        usage = json.loads(result.read_text())
    return {"seconds": round(seconds, 1), **usage}
