"""How the foundation head's recipe moves the real-data benchmark's ranking, in seconds, from the features it kept.

After ``bench/bench_realdata.py`` has run a scenario, its store holds every face shard (training
videos under ``landing/train/``, scored ones under ``landing/score/``) and every crop's CLIP features
(``features/``). This refits only the linear head, as training does (``foundation.fit_linear_head``
on the training faces and self-blended copies of the real ones, ``sbi.PseudoFakeMaker``), for each
recipe below, and prints the video AUC of the scored videos (a video's score: the mean head logit
of its dominant face, the same for every recipe; the pipeline's verdict rule and fusion are not
applied, so these figures compare recipes, not the pipeline) with a 95 % bootstrap interval:

* the inverse regularisation C (0.1 to 10), with labelled fakes and one self-blended copy per real;
* self-blended copies per real face (0, 1, 3) with labelled fakes;
* no labelled fake at all (reals and their self-blended copies only).

Recipes that need labelled fakes print a note when the training part has none (the ``real-only``
scenario).

    python -m bench.realdata.head_sweep out/bench-realdata/cross-dataset
"""

from __future__ import annotations

import argparse
import csv
import posixpath
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from bench.common import ROOT
from realness_tasks import dataset as ds
from realness_tasks.config import RealnessConfig
from realness_tasks.foundation import FeatureCache, fit_linear_head, load_encoder
from realness_tasks.metrics import roc_auc
from realness_tasks.sbi import PseudoFakeMaker
from realness_tasks.storage import open_store

MANIFEST = ROOT / "bench" / "realdata" / "manifest.csv"
DRAWS = 2000


def manifest_labels() -> dict[str, dict]:
    with open(MANIFEST, newline="") as f:
        return {posixpath.basename(row["local_path"]): row for row in csv.DictReader(f)}


def video_auc(labels: np.ndarray, scores: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """AUC and its 95 % bootstrap interval (videos resampled with replacement)."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(DRAWS):
        pick = rng.integers(0, len(labels), len(labels))
        if 0 < labels[pick].sum() < len(pick):
            draws.append(roc_auc(labels[pick], scores[pick]))
    return roc_auc(labels, scores), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path, help="a scenario folder of bench_realdata.py (holding home/)")
    args = parser.parse_args()
    home = args.work / "home"
    cfg = RealnessConfig.from_env({}, home=str(home))
    store = open_store(cfg.resolved_store_uri)
    known = manifest_labels()
    shards = ds.list_shards(cfg, store)
    part_of, label_of, dataset_of = {}, {}, {}
    for shard in shards:
        table = pq.read_table(store.pyarrow_filesystem()[1] + "/" + shard["key"], columns=["video_id", "source_uri"],
                              filesystem=store.pyarrow_filesystem()[0])
        video, source = table.column("video_id")[0].as_py(), table.column("source_uri")[0].as_py()
        row = known[posixpath.basename(source)]
        part_of[video] = "train" if "/landing/train/" in source else "score"
        label_of[video], dataset_of[video] = row["label"], row["dataset"]
    faces = ds.read_faces(cfg, store, shards, label_of).faces
    encoder = load_encoder(None, cfg.foundation.threads)
    features = FeatureCache(store, cfg.features_prefix, encoder).features(faces.video_ids, faces.jpegs)
    train = np.array([part_of[v] == "train" for v in faces.video_ids])
    reals = faces.take(np.flatnonzero(train & (faces.labels == 0)))
    maker = PseudoFakeMaker(reals, cfg.training.seed, cfg.crop.jpeg_quality)
    print(f"{int(train.sum())} training faces ({len(reals)} real), {int((~train).sum())} scored faces; encoding up to "
          f"3 self-blended copies of each real training face", flush=True)
    blended = [encoder.embed_jpegs([maker.make(i, (1 << 40) + copy * len(maker) + i) for i in range(len(maker))])
               for copy in range(3)]
    scored_videos = sorted({v for v in faces.video_ids if part_of[v] == "score"})
    video_labels = np.array([label_of[v] == "FAKE" for v in scored_videos], int)
    dominant = faces.face_index == 0

    def evaluate(name: str, x: np.ndarray, y: np.ndarray, c: float) -> None:
        if len(set(y.tolist())) < 2:
            print(f"| {name} | {c:g} | {len(y)} | (the training part has one class only) |")
            return
        head = fit_linear_head(x, y, c, encoder.identity)
        logits = head.logits(features)
        scores = np.array([logits[(faces.video_ids == v) & dominant].mean() for v in scored_videos])
        auc, low, high = video_auc(video_labels, scores)
        print(f"| {name} | {c:g} | {len(y)} | {auc:.3f} [{low:.2f}, {high:.2f}] |", flush=True)

    print(f"\n{len(scored_videos)} scored videos ({int(video_labels.sum())} fake)\n")
    print("| recipe | C | training rows | scored video AUC [95 % CI] |\n|---|---:|---:|---|")
    labelled_x, labelled_y = features[train], faces.labels[train]
    for c in (0.1, 0.3, 1.0, 3.0, 10.0):
        evaluate("labelled + 1 self-blended copy per real", np.concatenate([labelled_x, blended[0]]),
                 np.r_[labelled_y, np.ones(len(reals), int)], c)
    for copies in (0, 3):
        if copies == 0:
            evaluate("labelled only", labelled_x, labelled_y, 1.0)
        else:
            evaluate("labelled + 3 self-blended copies per real", np.concatenate([labelled_x, *blended]),
                     np.r_[labelled_y, np.ones(3 * len(reals), int)], 1.0)
    real_x = features[train & (faces.labels == 0)]
    for c in (0.3, 1.0, 3.0):
        evaluate("no labelled fake: reals + 1 self-blended copy", np.concatenate([real_x, blended[0]]),
                 np.r_[np.zeros(len(real_x), int), np.ones(len(reals), int)], c)
    evaluate("no labelled fake: reals + 3 self-blended copies", np.concatenate([real_x, *blended]),
             np.r_[np.zeros(len(real_x), int), np.ones(3 * len(reals), int)], 1.0)


if __name__ == "__main__":
    main()
