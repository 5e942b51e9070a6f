"""The fixed cost of a mapped ingest task, part by part, each measured in a fresh process.

An Airflow 3 task runs in a process forked for it alone (LocalExecutor and Celery alike), so every
``extract_faces`` task pays its imports and MTCNN's set-up before its first frame, and every
``validate_shards`` task pays Great Expectations' import before its first shard. This times those
parts in the order a task meets them, in ``--repeats`` fresh processes (median shown):

- imports of the ingest modules (``realness_tasks.ingest``, ``faces``: OpenCV, pyarrow, SQLAlchemy);
- ``import tensorflow`` (pulled in by MTCNN) and building MTCNN's three networks from their weights;
- MTCNN's first call on a batch of 8 frames, less a warm call on the same batch (the one-off part);
- ``import great_expectations``;
- validating the first shard, less validating a second one (the one-off part), and a warm shard.

It does not include Airflow's own per-task start (fork, DAG parse, API calls): ``bench_scan.py``
measures a whole task through Airflow.

    python bench/bench_task_startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, time
clock = [time.monotonic()]
parts = {}
def lap(name):
    now = time.monotonic(); parts[name] = now - clock[0]; clock[0] = now
import realness_tasks.ingest, realness_tasks.faces; lap("import ingest modules")
import tensorflow; lap("import tensorflow")
import cv2
from realness_tasks import samples
from realness_tasks.config import DetectionSettings
from realness_tasks.faces import MtcnnDetector
frames = [cv2.resize(samples.sample_photos()[2].image, (1280, 720))] * 8
clock[0] = time.monotonic()
detector = MtcnnDetector(DetectionSettings()); detector._networks(); lap("build MTCNN networks")
detector.detect(frames); first = time.monotonic() - clock[0]
clock[0] = time.monotonic(); detector.detect(frames); lap("MTCNN warm call (8 frames)")
parts["MTCNN first-call extra"] = first - parts["MTCNN warm call (8 frames)"]
clock[0] = time.monotonic(); import great_expectations; lap("import great_expectations")
from realness_tasks.shards import rows_to_table
from realness_tasks.validation import validate_shard
from tests.factories import valid_rows
table = rows_to_table(valid_rows(224))
clock[0] = time.monotonic(); validate_shard(table, 224); first = time.monotonic() - clock[0]
clock[0] = time.monotonic(); validate_shard(table, 224); lap("validate a shard, warm")
parts["validation first-shard extra"] = first - parts["validate a shard, warm"]
print(json.dumps(parts))
"""

ONE_OFF = ["import ingest modules", "import tensorflow", "build MTCNN networks", "MTCNN first-call extra",
           "import great_expectations", "validation first-shard extra"]


def measure_once() -> dict[str, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs = [measure_once() for _ in range(args.repeats)]
    print(f"# fixed cost of an ingest task, median of {args.repeats} fresh processes, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print("| part | seconds | paid |")
    print("|---|---|---|")
    for part in runs[0]:
        paid = "once per task" if part in ONE_OFF else "per frame batch / per shard"
        print(f"| {part} | {statistics.median(r[part] for r in runs):.2f} | {paid} |")
    fixed_extract = sum(statistics.median(r[p] for r in runs) for p in ONE_OFF[:4])
    fixed_validate = sum(statistics.median(r[p] for r in runs) for p in ONE_OFF[4:])
    print(f"\nextract_faces one-off: {fixed_extract:.2f} s; validate_shards one-off: {fixed_validate:.2f} s")


if __name__ == "__main__":
    main()
