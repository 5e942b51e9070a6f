"""Peak memory and wall time of the real ingest path (``realness_tasks.ingest.run_ingest``) per resolution.

Each resolution runs in a fresh process on one generated face video (10 s at 30 fps, one frame
sampled per second), through everything the DAG's mapped task and validation do: download, hash,
probe, streamed sampling, MTCNN, crops, Parquet, Great Expectations, publish. MTCNN's networks are
converted to LiteRT once beforehand, as the Docker image does, so the children find a warm cache.
Peak RSS is the child's own ``ru_maxrss`` (KiB on Linux); it includes the libraries (Great
Expectations, pyarrow, OpenCV, LiteRT), so the growth between resolutions is what the frames cost.
Streaming means it should grow with one frame batch, not with the video.

    python -m bench.bench_ingest_memory [--resolutions 1280x720,1920x1080,3840x2160] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT

CHILD = """
import json, resource, sys, time
from realness_tasks.config import RealnessConfig
from realness_tasks.ingest import run_ingest
started = time.monotonic()
summary = run_ingest(RealnessConfig.from_env(), run_id="bench", run_date="2026-01-01")
print(json.dumps({"seconds": time.monotonic() - started, "frames": summary["frames_sampled"],
                  "faces": summary["faces"], "statuses": summary["statuses"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_one(width: int, height: int, seconds: float, workdir: Path, networks_dir: Path) -> dict:
    from realness_tasks import samples
    from realness_tasks.storage import open_store

    home = workdir / f"{height}p"
    store = open_store((home / "store").as_uri())
    video = samples.face_video(workdir / f"{height}p.mp4", samples.sample_photos()[2].image, seconds=seconds,
                               fps=30, size=(width, height), height_fraction=0.5)
    store.upload(video.path, "landing/clip.mp4")
    env = {**os.environ, "REALNESS_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3",
           "REALNESS_DETECTION_NETWORKS_DIR": str(networks_dir), "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process_s"] = time.monotonic() - started  # includes Python's start and the imports
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", default="1280x720,1920x1080,3840x2160")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"# real ingest path, {args.seconds:g} s videos at 30 fps, 1 frame sampled per second, {os.cpu_count()} cores")
    print("| resolution | frames sampled | faces | ingest s (in process) | s per sampled frame | process s | "
          "peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        # Converted in a process of its own (TensorFlow): a child's ru_maxrss starts at its parent's RSS.
        networks_dir = Path(tmp) / "networks"
        subprocess.run([sys.executable, "-m", "realness_tasks.mtcnn_lite", str(networks_dir)], check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        for res in args.resolutions.split(","):
            width, height = (int(v) for v in res.split("x"))
            r = run_one(width, height, args.seconds, Path(tmp), networks_dir)
            print(f"| {height}p | {r['frames']} | {r['faces']} | {r['seconds']:.1f} | "
                  f"{r['seconds'] / max(1, r['frames']):.2f} | {r['process_s']:.1f} | {r['peak_rss_mb']:.0f} |",
                  flush=True)


if __name__ == "__main__":
    main()
