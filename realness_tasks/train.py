"""Training the real/fake classifier end to end: data, fitting, evaluation on held-out splits, publishing.

``run_training`` is what the training DAG and ``realness train`` call. It reads the validated
labelled faces, prepares and fits the classifier and the foundation branch (:mod:`fitting`),
chooses the detector on the validation split and measures the test split per face and per video
(:mod:`held_out`), then compares with the champion and registers the model (:mod:`promotion`).
``labelled_faces_since`` tells the asset-triggered DAG whether enough new labelled faces arrived
to be worth a retrain.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

import numpy as np

from realness_tasks import dataset as ds
from realness_tasks import labels, registry
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database, as_utc
from realness_tasks.fitting import (PSEUDO_FAKE_DRAW, Progress, fit, fit_foundation, prepared_classifier,
                                    pseudo_fake_maker)
from realness_tasks.held_out import evaluate, with_self_blended_twins
from realness_tasks.promotion import TrainingOutcome, publish
from realness_tasks.resources import run_resources
from realness_tasks.storage import ObjectStore

log = logging.getLogger(__name__)


def run_training(cfg: RealnessConfig, run_id: str, *, progress: Progress | None = None) -> TrainingOutcome:
    """Train, evaluate and register a model from every validated labelled face in the store."""

    def report(message: str) -> None:
        log.info("%s", message)
        if progress is not None:
            progress(message)

    settings = cfg.training
    with run_resources(cfg) as run:
        store, db = run.store, run.db
        data = ds.load_dataset(cfg, store, listed_at=registry.utc_now(), db=db)
        if not data.manifest["labelled_fakes"]:
            quality = cfg.crop.jpeg_quality
            data = replace(data, val=with_self_blended_twins(data.val, settings.seed, quality, PSEUDO_FAKE_DRAW // 2),
                           test=with_self_blended_twins(data.test, settings.seed, quality, PSEUDO_FAKE_DRAW // 4))
            report("no labelled fake video: the held-out real videos get self-blended twins to choose the "
                   "threshold on and to measure; the model will be registered, not promoted, until an operator "
                   "approves it")
        splits = data.manifest["splits"]
        report(f"dataset: {data.total_faces} faces; " + ", ".join(
            f"{name} {split['faces']} in {len(split['videos'])} videos" for name, split in splits.items()))
        maker = pseudo_fake_maker(cfg, data.train, report)
        extra = len(maker) if maker is not None else 0
        manifest = {**data.manifest, "self_blended_fakes_per_epoch": extra,
                    "class_weights": ds.class_weights(np.r_[data.train.labels, np.ones(extra, np.int32)])}
        model, backbone, manifest["batchnorm_faces"] = prepared_classifier(cfg, data.train, report)
        history = fit(model, data.train, data.val, settings, pseudo_fakes=maker, report=report)
        branch = fit_foundation(cfg, store, data, report)
        evaluation = evaluate(model, data, cfg, branch)
        video = evaluation.test["video"]
        report(f"detector: {evaluation.detector.describe()}, calibrated (temperature "
               f"{evaluation.detector.temperature:.3g} around the validation videos' threshold "
               f"{evaluation.detector.raw_threshold:.4f})")
        report(f"test: face AUC {evaluation.test['auc']:.4f}, video AUC {video['auc']:.4f} over {video['videos']} "
               f"videos, F1(FAKE) {evaluation.test['f1_fake']:.4f} at p_fake 0.5; calibration error (ECE) "
               f"{evaluation.test['calibration']['faces']['ece']:.3f} per face")
        return publish(cfg, store, db, run_id, model, data, manifest, history, evaluation, backbone, branch, report)


def labelled_faces_since(cfg: RealnessConfig, store: ObjectStore, db: Database, since: datetime | None = None) -> int:
    """Labelled faces in validated shards that arrived after ``since``.

    ``since`` defaults to the data cut-off of the newest registered model (promoted or not, so a
    losing model does not trigger an immediate retrain); before any model, every labelled face counts.
    """
    since = as_utc(since) if since is not None else registry.last_data_cutoff(db)
    keys = [o.key for o in store.list(cfg.faces_prefix)
            if o.key.endswith(".parquet") and (since is None or as_utc(o.modified) > since)]
    return ds.count_labelled(store, keys, labels.for_training(db))
