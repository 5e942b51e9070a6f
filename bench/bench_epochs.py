"""How does each training epoch do on people the model never saw? Trains as ``realness train`` does
(the same dataset, classifier and ``fitting.fit``) on the detection benchmark's ingested videos, and
after every epoch scores the benchmark's 13 scored people (dominant face, mean per video): video
AUC overall, per manipulation kind, and within each person (real against fake videos of the same
person, averaged), each person's mean fake probability over their real videos, next to the
validation AUC that training itself sees.

    python -m bench.bench_detection ...        # first: makes and ingests the videos
    REALNESS_TRAINING_PATIENCE=100 python -m bench.bench_epochs --out epochs.jsonl
    python -m bench.bench_epochs --out ensemble.jsonl --ensemble DIR DIR   # runs saved with --save-probabilities

Settings come from ``REALNESS_TRAINING_*`` as for ``realness train``. This is for understanding
training (which epoch generalises, what early stopping and the kept weights do), never for
choosing a model: the scored people are the benchmark's test set. Nothing is registered.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

from bench.common import ROOT
from realness_tasks import dataset as ds
from realness_tasks import fitting, registry
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.metrics import roc_auc
from realness_tasks.model import predict_probabilities
from realness_tasks.storage import open_store

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KINDS = ("swap", "partial", "smoothed")


class ScoredPeople:
    """The benchmark's scored videos (dominant face of each sampled frame) and their labels."""

    def __init__(self, work: Path) -> None:
        labels = {row["name"]: row for row in csv.DictReader(open(work / "videos" / "score" / "labels.csv"))}
        table = pads.dataset(str(work / "ingested" / "store" / "faces"), format="parquet", partitioning="hive")
        rows = table.to_table(columns=["source_uri", "crop_jpeg"], filter=pads.field("face_index") == 0).to_pydict()
        picked = [i for i, uri in enumerate(rows["source_uri"]) if "/landing/score/" in uri]
        self.jpegs = [rows["crop_jpeg"][i] for i in picked]
        self.names = np.array([rows["source_uri"][i].rsplit("/", 1)[1] for i in picked])
        self.videos = sorted(set(self.names))
        self.fake = np.array([labels[v]["label"] == "FAKE" for v in self.videos])
        self.kind = np.array([labels[v]["manipulation"] for v in self.videos])
        self.person = np.array([labels[v]["identity"] for v in self.videos])

    def flipped(self, model) -> np.ndarray:
        """Fake probabilities of the mirrored crops."""
        import tensorflow as tf

        from realness_tasks.augment import pipeline

        data = pipeline(self.jpegs, np.zeros(len(self.jpegs), np.float32), int(model.inputs[0].shape[1]), 32,
                        train=False, seed=0)
        return model.predict(data.map(lambda images, _: tf.image.flip_left_right(images)), verbose=0).reshape(-1)

    def probabilities(self, model) -> np.ndarray:
        """Fake probabilities of the crops."""
        return np.array(predict_probabilities(model, self.jpegs, int(model.inputs[0].shape[1])))

    def measure(self, faces: np.ndarray) -> dict[str, float]:
        """Video AUCs from the crops' fake probabilities (each video's mean)."""
        p = np.array([faces[self.names == v].mean() for v in self.videos])
        out = {"video_auc": roc_auc(self.fake, p)}
        for kind in KINDS:
            chosen = (self.kind == kind) | ~self.fake
            out[kind] = roc_auc(self.fake[chosen], p[chosen])
        out["within_person"] = float(np.mean([roc_auc(self.fake[self.person == who], p[self.person == who])
                                              for who in sorted(set(self.person))]))
        # Which people's *real* videos look fake: a whole photograph scored high drags the overall AUC.
        out["real_p_fake_by_person"] = {who: round(float(p[(self.person == who) & ~self.fake].mean()), 3)
                                        for who in sorted(set(self.person))}
        return out


def measure_ensemble(scored: ScoredPeople, runs: list[Path], out: Path) -> None:
    """Each epoch's video AUCs from the mean of several runs' saved probabilities (an ensemble of models)."""
    for run in runs:
        if json.loads((run / "videos.json").read_text()) != scored.names.tolist():
            raise SystemExit(f"{run} scored other crops than {scored.names.size} of the benchmark's")
    epoch = 1
    while all((run / f"epoch-{epoch}.npy").is_file() for run in runs):
        faces = np.mean([np.load(run / f"epoch-{epoch}.npy") for run in runs], axis=0)
        line = {"epoch": epoch, "ensemble": [str(run) for run in runs], **scored.measure(faces)}
        print(json.dumps(line), flush=True)
        with open(out, "a") as f:
            f.write(json.dumps(line) + "\n")
        epoch += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-detection-122people-2reals-1fakes")
    parser.add_argument("--out", type=Path, required=True, help="one JSON line per epoch is appended here")
    parser.add_argument("--flip-and-average", action="store_true",
                        help="also score each fine-tuning epoch with test-time flip (`flip`) and with the mean of "
                             "the weights of the fine-tuning epochs so far (`averaged`, weight averaging)")
    parser.add_argument("--save-probabilities", type=Path, metavar="DIR",
                        help="also write each epoch's fake probabilities of the scored crops to DIR/epoch-N.npy "
                             "(with DIR/videos.json: each crop's video), e.g. to measure an ensemble of runs")
    parser.add_argument("--ensemble", type=Path, nargs="+", metavar="DIR",
                        help="train nothing: score the mean of the runs' probabilities saved in these DIRs, "
                             "epoch by epoch, and append the lines to --out")
    args = parser.parse_args()
    scored = ScoredPeople(args.work)
    if args.ensemble:
        measure_ensemble(scored, args.ensemble, args.out)
        return
    if args.save_probabilities:
        args.save_probabilities.mkdir(parents=True, exist_ok=True)
        (args.save_probabilities / "videos.json").write_text(json.dumps(scored.names.tolist()))
    cfg = RealnessConfig.from_env(home=str(args.work / "ingested"))
    store, db = open_store(cfg.resolved_store_uri, cfg.s3), Database(cfg.resolved_database_url)
    data = ds.load_dataset(cfg, store, listed_at=registry.utc_now(), db=db)
    maker = fitting.pseudo_fake_maker(cfg, data.train, print)
    model, _, _ = fitting.prepared_classifier(cfg, data.train, print)

    tracker_of_training = fitting.epoch_tracker
    fine_tuned: list[list[np.ndarray]] = []   # each fine-tuning epoch's weights, for --flip-and-average

    def tracker(report, total_epochs, val_data, val_labels, keep):
        callback = tracker_of_training(report, total_epochs, val_data, val_labels, keep)
        end_of_epoch = callback.on_epoch_end

        def on_epoch_end(epoch: int, logs: dict | None = None) -> None:
            logs = logs if logs is not None else {}
            end_of_epoch(epoch, logs)
            faces = scored.probabilities(callback.model)
            if args.save_probabilities:
                np.save(args.save_probabilities / f"epoch-{epoch + 1}.npy", faces)
            line = {"epoch": epoch + 1, "phase": callback.phase, "loss": callback.history["loss"][-1],
                    "val_auc": logs["val_auc"], **scored.measure(faces), "at": time.strftime("%H:%M:%S")}
            if args.flip_and_average and callback.phase == "fine-tune":
                weights = callback.model.get_weights()
                fine_tuned.append(weights)
                # Test-time flip: each crop's score averaged with its mirror image's.
                line["flip"] = scored.measure((faces + scored.flipped(callback.model)) / 2)["video_auc"]
                callback.model.set_weights([np.mean([w[j] for w in fine_tuned], axis=0) for j in range(len(weights))])
                averaged = scored.measure(scored.probabilities(callback.model))
                line["averaged"] = {k: v for k, v in averaged.items() if k != "real_p_fake_by_person"}
                callback.model.set_weights(weights)
            print(json.dumps(line), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(line) + "\n")

        callback.on_epoch_end = on_epoch_end
        return callback

    fitting.epoch_tracker = tracker   # the one hook: fit() builds its tracker through this name
    fitting.fit(model, data.train, data.val, cfg.training, pseudo_fakes=maker, report=print)
    db.dispose()


if __name__ == "__main__":
    main()
