"""The fixed cost of an ingest task, part by part, each measured in a fresh process.

An Airflow 3 task runs in a process forked for it alone (LocalExecutor and Celery alike), so every
``extract_faces`` task (one per batch of videos) pays its imports and MTCNN's set-up before its
first frame, and the ``validate_shards`` task (one per run) pays Great Expectations' import before
its first shard. This times those
parts in the order a task meets them, in ``--repeats`` fresh processes (median shown), for MTCNN
on LiteRT (what tasks run) beside MTCNN on TensorFlow (what they ran before,
``bench/mtcnn_reference.py``):

- imports of the ingest modules (``realness_tasks.ingest``, ``faces``: OpenCV, pyarrow, SQLAlchemy);
- importing the engine: ``ai_edge_litert.interpreter`` or ``tensorflow``;
- loading MTCNN's networks: LiteRT finds its converted files (hashing the weights that name them);
  TensorFlow builds the three Keras networks from their weights;
- MTCNN's first call on a batch of 8 720p frames, less a warm call on the same batch (the one-off
  part: interpreters per pyramid level, XNNPACK set-up, TF's tracing);
- ``import great_expectations``; the first validation run (one shard) less a warm one; and warm runs
  of 1, 20 and 200 shards of 32 rows (a 10 s clip's) each, per shard: Great Expectations' cost is
  per run, so it spreads over the shards a run validates together.

Once per deployment, not per task, the networks are converted to LiteRT (the Docker image does it
at build); that conversion is timed too, in its own process, into a fresh directory.

It does not include Airflow's own per-task start (fork, DAG parse, API calls): ``bench_scan.py``
measures a whole task through Airflow.

    python -m bench.bench_task_startup [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT

CHILD = r"""
import json, sys, time
engine = sys.argv[1]
clock = [time.monotonic()]
parts = {}
def lap(name):
    now = time.monotonic(); parts[name] = now - clock[0]; clock[0] = now
import realness_tasks.ingest, realness_tasks.faces; lap("import ingest modules")
if engine == "litert":
    import ai_edge_litert.interpreter
else:
    import tensorflow
lap("import the engine")
import cv2
import numpy as np
from realness_tasks import samples
from realness_tasks.faces import MtcnnDetector
from realness_tasks.settings import DetectionSettings
frames = [cv2.resize(samples.sample_photos()[2].image, (1280, 720))] * 8
clock[0] = time.monotonic()
if engine == "litert":
    detector = MtcnnDetector(DetectionSettings()); detector.load(); lap("load MTCNN networks")
    detect = detector.detect
else:
    from bench.mtcnn_reference import TensorFlowMtcnn
    tf_mtcnn = TensorFlowMtcnn(DetectionSettings()); lap("load MTCNN networks")
    def detect(batch):  # as MtcnnDetector did: downscale to 640, RGB, then the three stages
        return tf_mtcnn.detect(np.stack([cv2.cvtColor(cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA),
                                                      cv2.COLOR_BGR2RGB) for f in batch]))
detect(frames); first = time.monotonic() - clock[0]
clock[0] = time.monotonic(); detect(frames); lap("MTCNN warm call (8 frames)")
parts["MTCNN first-call extra"] = first - parts["MTCNN warm call (8 frames)"]
parts["tensorflow imported"] = "tensorflow" in sys.modules
if engine == "litert":
    clock[0] = time.monotonic(); import great_expectations; lap("import great_expectations")
    from dataclasses import replace
    from bench.face_shards import valid_rows
    from realness_tasks.settings import CropSettings
    from realness_tasks.shards import rows_to_table, table_to_bytes
    from realness_tasks.validation import StagedShard, validate_shards
    rows = valid_rows(224, ROWS_PER_SHARD)
    staged = [table_to_bytes(rows_to_table([replace(r, video_id=f"v{i:03d}") for r in rows]))
              for i in range(max(SHARDS_PER_RUN))]
    shards = [StagedShard(f"v{i:03d}", lambda data=data: data) for i, data in enumerate(staged)]
    def validate(count):
        started = time.monotonic()
        if not all(report.success for report in validate_shards(shards[:count], CropSettings())):
            raise SystemExit("a generated shard failed validation")
        return time.monotonic() - started
    first = validate(1)
    for count in SHARDS_PER_RUN:
        parts[f"validate {count} shard(s) in one run, warm, per shard"] = validate(count) / count
    parts["validation first-run extra"] = first - parts["validate 1 shard(s) in one run, warm, per shard"]
print(json.dumps(parts))
"""
SHARDS_PER_RUN = (1, 20, 200)
ROWS_PER_SHARD = 32  # a 10 s clip sampled at 32 frames per 10 s, one face a frame

EXTRACT_ONE_OFF = ["import ingest modules", "import the engine", "load MTCNN networks", "MTCNN first-call extra"]
VALIDATE_ONE_OFF = ["import great_expectations", "validation first-run extra"]
VALIDATE_WARM = [f"validate {count} shard(s) in one run, warm, per shard" for count in SHARDS_PER_RUN]


def measure_once(engine: str, networks_dir: Path) -> dict[str, float]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT),
           "REALNESS_DETECTION_NETWORKS_DIR": str(networks_dir)}
    child = f"SHARDS_PER_RUN = {SHARDS_PER_RUN!r}; ROWS_PER_SHARD = {ROWS_PER_SHARD}\n" + CHILD
    done = subprocess.run([sys.executable, "-c", child, engine], env=env, cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def convert(networks_dir: Path) -> float:
    """Seconds to convert the networks into an empty directory (a fresh process: TensorFlow's import included)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "realness_tasks.mtcnn_lite", str(networks_dir)], env=env, cwd=ROOT,
                   capture_output=True, check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        networks_dir = Path(tmp)
        conversion_s = convert(networks_dir)
        runs = {engine: [measure_once(engine, networks_dir) for _ in range(args.repeats)]
                for engine in ("litert", "tensorflow")}

    def median(engine: str, part: str) -> float:
        return statistics.median(r[part] for r in runs[engine])

    print(f"# fixed cost of an ingest task, median of {args.repeats} fresh processes, {os.cpu_count()} cores, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| part | MTCNN on LiteRT, s | MTCNN on TensorFlow (before), s | paid |")
    print("|---|---|---|---|")
    for part in EXTRACT_ONE_OFF + ["MTCNN warm call (8 frames)"]:
        paid = "once per `extract_faces` task" if part in EXTRACT_ONE_OFF else "per batch of 8 frames"
        print(f"| {part} | {median('litert', part):.3f} | {median('tensorflow', part):.3f} | {paid} |")
    for part in VALIDATE_ONE_OFF + VALIDATE_WARM:
        paid = "once per `validate_shards` task (one per run)" if part in VALIDATE_ONE_OFF else "per shard"
        print(f"| {part} | {median('litert', part):.3f} | (same) | {paid} |")
    extract = {engine: sum(median(engine, p) for p in EXTRACT_ONE_OFF) for engine in runs}
    validate = sum(median("litert", p) for p in VALIDATE_ONE_OFF)
    tensorflow_loaded = any(r["tensorflow imported"] for r in runs["litert"])
    print(f"\nextract_faces one-off: {extract['litert']:.2f} s on LiteRT ({extract['tensorflow']:.2f} s on TensorFlow); "
          f"validate_shards one-off: {validate:.2f} s")
    print(f"TensorFlow imported by the LiteRT task: {tensorflow_loaded}")
    print(f"converting the networks to LiteRT (once per deployment, TensorFlow's import included): {conversion_s:.1f} s")


if __name__ == "__main__":
    main()
