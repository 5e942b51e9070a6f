"""Peak memory of ``realness train`` at the default 224 px as the labelled set grows (1,000 / 5,000 / 20,000 faces).

Each size gets its own Realness home with validated face shards (224 px crops of the sample
photographs, half of them face-swapped; ten faces a video, as one sampled frame per second of a
10-second clip gives), then ``realness train`` runs as a separate process with the default
settings except the training faces per epoch (``--faces-per-epoch``) and one epoch per phase, so the
run is short but still goes through everything that scales with the data: reading every shard, the
split, the input pipeline, both training phases, validation after every epoch, the threshold and
the test-split evaluation over every held-out face, the TFLite export and registration. Peak RSS
is the child's own ``ru_maxrss`` (``bench.common.run_measured``).

    python -m bench.bench_train_memory                       # 1000 5000 20000 faces, 640 per epoch
    python -m bench.bench_train_memory --faces 1000 --faces-per-epoch 160
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

from bench.common import ROOT, run_measured
from bench.face_shards import write_labelled_shards

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FACES_PER_VIDEO = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--faces-per-epoch", type=int, default=640,
                        help="training faces per epoch (one frozen, one fine-tuning epoch; 20 batches of 32)")
    args = parser.parse_args()

    from realness_tasks.config import RealnessConfig
    from realness_tasks.storage import open_store

    print("| labelled faces | shards written in | `realness train` wall time | peak RSS |")
    print("|---:|---:|---:|---:|")
    for faces in args.faces:
        with tempfile.TemporaryDirectory(prefix="realness-train-memory-") as home:
            started = time.monotonic()
            store = open_store(RealnessConfig.from_env({}, home=home).resolved_store_uri)
            write_labelled_shards(store, videos_per_class=faces // (2 * FACES_PER_VIDEO),
                                  faces_per_video=FACES_PER_VIDEO, crop_size=224)
            written = time.monotonic() - started
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("REALNESS_")}, "REALNESS_HOME": home,
                   "REALNESS_TRAINING_FACES_PER_EPOCH": str(args.faces_per_epoch),
                   "REALNESS_TRAINING_FROZEN_EPOCHS": "1", "REALNESS_TRAINING_FINETUNE_EPOCHS": "1"}
            with tempfile.TemporaryFile("w+") as output:
                measured = run_measured([sys.executable, "-m", "realness_tasks.cli", "train"], env=env, cwd=ROOT,
                                        output=output)
                if measured["exit_code"] != 0:
                    output.seek(0)
                    raise SystemExit(f"realness train failed for {faces} faces:\n{output.read()[-4000:]}")
            wall, shown = measured["seconds"], f"{measured['peak_rss_mb']} MB"
            print(f"| {faces:,} | {written:.0f} s | {wall:.0f} s | {shown} |", flush=True)


if __name__ == "__main__":
    main()
