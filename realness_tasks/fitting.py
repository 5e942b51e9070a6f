"""Fitting the classifier: preparing it, the two training phases, and the foundation branch's linear head.

``prepared_classifier`` builds the classifier on its backbone and re-estimates the backbone's
BatchNorm statistics on the training faces; ``fit`` trains it with the backbone frozen, then
fine-tunes the head and the backbone's late stages, scoring the validation split after each epoch
(``epoch_tracker``) to keep one epoch's weights. ``pseudo_fake_maker`` adds self-blended
pseudo-fakes, made anew each epoch, when fakes are scarce. ``fit_foundation`` fits the linear head
on frozen foundation features that the detector fuses with the classifier.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from realness_tasks import dataset as ds
from realness_tasks.config import RealnessConfig
from realness_tasks.settings import TrainingSettings
from realness_tasks.crops import decode_crops
from realness_tasks.foundation import FEATURES, FeatureCache, LinearHead, fit_linear_head, load_encoder
from realness_tasks.metrics import binary_cross_entropy, roc_auc
from realness_tasks.model import (BACKBONE_NAME, Backbone, build_classifier, calibrate_batchnorm, compile_classifier,
                                  set_backbone_trainable)
from realness_tasks.sbi import PseudoFakeMaker
from realness_tasks.storage import ObjectStore

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

Progress = Callable[[str], None]
RANDOM_BACKBONE_BATCHNORM_FACES = 256  # a random backbone's BatchNorm statistics need at least these
PSEUDO_FAKE_DRAW = 1 << 40   # the head's self-blended draws: apart from the training stream's (epoch x face)


# ---------------------------------------------------------------- the classifier

def batchnorm_faces(settings: TrainingSettings, backbone: Backbone) -> int:
    """How many training faces the backbone's BatchNorm statistics are re-estimated on (0: ImageNet's are kept)."""
    if backbone.pretrained:
        return settings.batchnorm_faces
    return max(settings.batchnorm_faces, RANDOM_BACKBONE_BATCHNORM_FACES)


def calibration_batches(train: ds.FaceSet, settings: TrainingSettings, count: int) -> Iterator[tf.Tensor]:
    """Up to ``count`` training crops, both classes, decoded one training batch at a time."""
    picked = np.random.default_rng(settings.seed).permutation(len(train))[:count]
    for start in range(0, len(picked), settings.batch_size):
        yield decode_crops([train.jpegs[i] for i in picked[start:start + settings.batch_size]], settings.image_size)


def prepared_classifier(cfg: RealnessConfig, train: ds.FaceSet, report: Progress) -> tuple[keras.Model, Backbone, int]:
    """The classifier ready to train: built, and its backbone's BatchNorm statistics re-estimated on ``train``.

    Returns the model, what its backbone was built from, and on how many faces the statistics
    were re-estimated (0: ImageNet's were kept).
    """
    settings = cfg.training
    model, backbone = build_classifier(settings, Path(cfg.home) / "weights")
    report(f"backbone: {describe_backbone(backbone)}, {settings.image_size} px")
    faces = min(batchnorm_faces(settings, backbone), len(train))
    if not faces:
        report("BatchNorm statistics: ImageNet's (REALNESS_TRAINING_BATCHNORM_FACES=0)")
        return model, backbone, 0
    started = time.monotonic()
    batches = calibrate_batchnorm(model.get_layer(BACKBONE_NAME), calibration_batches(train, settings, faces),
                                  never_narrower=backbone.pretrained)
    report(f"BatchNorm statistics of the backbone re-estimated on {faces} training faces ({batches} batches, "
           f"{time.monotonic() - started:.0f} s)")
    return model, backbone, faces


def describe_backbone(backbone: Backbone) -> str:
    """The backbone as the run summary shows it; a random start is spelled out."""
    if not backbone.pretrained:
        return f"{backbone.name} from RANDOM weights (REALNESS_TRAINING_RANDOM_INIT)"
    return f"{backbone.name} ({backbone.weights})"


def pseudo_fake_maker(cfg: RealnessConfig, train: ds.FaceSet, report: Progress) -> PseudoFakeMaker | None:
    """Self-blended pseudo-fakes from the real training faces, when configured (or, on auto, when fakes are scarce)."""
    mode = cfg.training.self_blended_fakes
    counts = train.class_counts()
    if mode == "never" or (mode == "auto" and counts["FAKE"] >= counts["REAL"]) or counts["REAL"] == 0:
        return None
    maker = PseudoFakeMaker(train.take(np.flatnonzero(train.labels == 0)), cfg.training.seed, cfg.crop.jpeg_quality)
    report(f"self-blended pseudo-fakes: {len(maker)} new ones every epoch, one per real training face "
           f"({mode}; labelled: {counts['REAL']} real, {counts['FAKE']} fake faces)")
    return maker


def epoch_steps(stream_faces: int, settings: TrainingSettings) -> int:
    """Steps per epoch: the training stream's faces (labelled and pseudo-fakes), or ``faces_per_epoch`` if fewer.

    The stream is shuffled and repeats, so a capped epoch draws a fresh share of it. On a large
    training split, capped epochs rank new people's videos about as well as whole passes in a
    fraction of the time (docs/detection-benchmark.md).
    """
    faces = stream_faces if settings.faces_per_epoch <= 0 else min(stream_faces, settings.faces_per_epoch)
    return -(-faces // settings.batch_size)


def monitoring_sample(val: ds.FaceSet, count: int, seed: int) -> ds.FaceSet:
    """``count`` validation faces, each class in its share (the whole split when ``count`` is 0 or not smaller).

    Scoring every validation face after every epoch is a large share of training time on a large
    archive; the learning curve and early stopping need far fewer.
    """
    if count <= 0 or count >= len(val):
        return val
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(val.labels):
        members = np.flatnonzero(val.labels == label)
        picked.append(rng.permutation(members)[:max(1, round(count * len(members) / len(val)))])
    return val.take(np.sort(np.concatenate(picked)))


def epoch_tracker(report: Progress, total_epochs: int, val_data: tf.data.Dataset,
                  val_labels: np.ndarray, keep: str) -> keras.callbacks.Callback:
    """A Keras callback that scores the validation split after each epoch, reports, and keeps one epoch's weights.

    ``keep`` is ``last`` (the last epoch) or ``best_validation`` (the best validation AUC).
    Candidates for the kept weights are the epochs of the current phase only (``begin_phase``
    resets them): a model from the frozen phase, whose backbone has not yet adapted to faces, is
    never kept over a fine-tuned one. With few validation people a frozen-phase epoch can score
    best on them and still rank new people's videos worse than the fine-tuned epochs
    (docs/detection-benchmark.md).

    Validation AUC is computed exactly here rather than by Keras' AUC metric, which buckets
    probabilities into 200 bins and reads 0.5 while an early model's outputs still sit in one
    bin. It is written into the epoch's logs as ``val_auc``/``val_loss`` for early stopping.
    """
    import keras

    class EpochTracker(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.phase = ""
            self.history: dict[str, list] = {key: [] for key in ("epoch", "phase", "loss", "val_loss", "auc",
                                                                 "val_auc")}
            self.kept_auc = -np.inf
            self.kept_epoch = 0
            self.kept_weights: list[tuple[Any, np.ndarray]] = []  # (variable, value): order-proof when freezing

        def begin_phase(self, phase: str) -> None:
            self.phase, self.kept_auc = phase, -np.inf

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            logs = logs if logs is not None else {}
            scores = self.model.predict(val_data, verbose=0).reshape(-1)
            logs["val_loss"] = binary_cross_entropy(val_labels, scores)
            logs["val_auc"] = roc_auc(val_labels, scores)
            for key in ("loss", "val_loss", "auc", "val_auc"):
                self.history[key].append(float(logs.get(key, np.nan)))
            self.history["epoch"].append(epoch + 1)
            self.history["phase"].append(self.phase)
            report(f"{self.phase} epoch {epoch + 1}/{total_epochs}: loss {self.history['loss'][-1]:.4f}, "
                   f"val loss {logs['val_loss']:.4f}, val AUC {logs['val_auc']:.4f}")
            if keep == "last":   # the model ends with these weights: nothing to copy or put back
                self.kept_auc, self.kept_epoch = logs["val_auc"], epoch + 1
            elif logs["val_auc"] > self.kept_auc:
                self.kept_auc, self.kept_epoch = logs["val_auc"], epoch + 1
                self.kept_weights = [(v, np.array(v.numpy())) for v in self.model.weights]

        def restore_kept(self) -> None:
            """Put back the kept epoch's weights (best_validation) and mark it in the history (``kept``)."""
            for variable, value in self.kept_weights:
                variable.assign(value)
            self.history["kept"] = [epoch == self.kept_epoch for epoch in self.history["epoch"]]
            if self.kept_epoch:
                why = "the last" if keep == "last" else "the best validation AUC"
                report(f"kept the weights of epoch {self.kept_epoch} ({self.phase}), {why} of its phase "
                       f"(validation AUC {self.kept_auc:.4f})")

    return EpochTracker()


def fit(model: keras.Model, train: ds.FaceSet, val: ds.FaceSet, settings: TrainingSettings, *,
        pseudo_fakes: PseudoFakeMaker | None, report: Progress) -> dict[str, list]:
    """Frozen-backbone phase at ``learning_rate``, then fine-tuning (late stages, ``finetune_stride``) at a tenth of it.

    With ``keep_epoch`` ``best_validation`` each phase stops early when validation AUC has not
    improved for ``patience`` epochs and the last phase's best epoch is kept; with ``last`` every
    epoch runs and the last one is kept.
    """
    import keras

    from realness_tasks.augment import AugmentationSettings, pipeline

    size, batch = settings.image_size, settings.batch_size
    train_data = pipeline(train.jpegs, train.labels, size, batch, train=True, seed=settings.seed,
                          pseudo_fakes=pseudo_fakes, augmentation=AugmentationSettings(erasing=settings.random_erasing))
    monitored = monitoring_sample(val, settings.validation_faces, settings.seed)
    val_data = pipeline(monitored.jpegs, monitored.labels, size, batch, train=False, seed=settings.seed)
    extra = len(pseudo_fakes) if pseudo_fakes is not None else 0
    steps = epoch_steps(len(train) + extra, settings)
    report(f"each epoch: {steps} steps of {batch} faces from a stream of {len(train) + extra} "
           f"(REALNESS_TRAINING_FACES_PER_EPOCH={settings.faces_per_epoch}), then {len(monitored)} of the "
           f"{len(val)} validation faces scored")
    weights = ds.class_weights(np.r_[train.labels, np.ones(extra, train.labels.dtype)])
    tracker = epoch_tracker(report, settings.frozen_epochs + settings.finetune_epochs, val_data, monitored.labels,
                            keep=settings.keep_epoch)
    done = 0
    for phase, epochs, learning_rate, trainable in (("frozen", settings.frozen_epochs, settings.learning_rate, False),
                                                    ("fine-tune", settings.finetune_epochs, settings.learning_rate / 10,
                                                     True)):
        if epochs <= 0:
            continue
        set_backbone_trainable(model, trainable, settings.finetune_stride)
        compile_classifier(model, learning_rate)
        tracker.begin_phase(phase)
        callbacks = [tracker]
        if settings.keep_epoch == "best_validation":
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_auc", mode="max", patience=settings.patience))
        report(f"{phase} phase: up to {epochs} epochs of {steps} steps, learning rate {learning_rate:g}")
        result = model.fit(train_data, epochs=done + epochs, initial_epoch=done,
                           steps_per_epoch=steps, class_weight=weights, callbacks=callbacks, shuffle=False,
                           verbose=0)
        done += len(result.epoch)
    tracker.restore_kept()
    return tracker.history


# ---------------------------------------------------------------- the foundation branch

@dataclass(frozen=True)
class FoundationBranch:
    """The foundation head fitted on the training faces, with the held-out splits' features and head logits."""

    head: LinearHead
    val_logits: np.ndarray
    test_features: np.ndarray     # kept to score a champion's own head on the same test faces
    test_logits: np.ndarray
    record: dict                  # what it took: faces encoded and reused, pseudo-fakes, seconds


def fit_foundation(cfg: RealnessConfig, store: ObjectStore, data: ds.LabelledDataset,
                   report: Progress) -> FoundationBranch | None:
    """Fit the linear head on frozen foundation features of the training faces and their self-blended copies.

    Features of stored crops come from the feature cache (computed once per crop); the
    self-blended copies are made from every real training face (``pseudo_fakes_per_real`` each)
    and encoded anew. None when ``REALNESS_FOUNDATION_ENCODER=none``.
    """
    settings = cfg.foundation
    if not settings.enabled:
        report("foundation branch: off (REALNESS_FOUNDATION_ENCODER=none): EfficientNet alone")
        return None
    started = time.monotonic()
    encoder = load_encoder(settings.encoder_path, settings.threads)
    cache = FeatureCache(store, cfg.features_prefix, encoder)
    features = {name: cache.features(part.video_ids, part.jpegs, report)
                for name, part in (("train", data.train), ("val", data.val), ("test", data.test))}
    reals = data.train.take(np.flatnonzero(data.train.labels == 0))
    maker = PseudoFakeMaker(reals, cfg.training.seed, cfg.crop.jpeg_quality)
    blended = [maker.make(i, PSEUDO_FAKE_DRAW + copy * len(maker) + i)
               for copy in range(settings.pseudo_fakes_per_real) for i in range(len(maker))]
    report(f"foundation branch: {encoder.identity}; {cache.computed} faces encoded, {cache.reused} from the "
           f"feature cache; encoding {len(blended)} self-blended copies of the {len(reals)} real training faces")
    blended_features = encoder.embed_jpegs(blended, report) if blended else np.zeros((0, FEATURES), np.float32)
    head = fit_linear_head(np.concatenate([features["train"], blended_features]),
                           np.r_[data.train.labels, np.ones(len(blended), np.int32)], settings.head_c,
                           encoder.identity)
    seconds = time.monotonic() - started
    report(f"foundation head fitted on {len(data.train)} training faces and {len(blended)} self-blended copies "
           f"in {seconds:.0f} s")
    return FoundationBranch(head, head.logits(features["val"]), features["test"], head.logits(features["test"]),
                            {"encoder": encoder.identity, "faces_encoded": cache.computed,
                             "faces_from_cache": cache.reused, "self_blended": len(blended),
                             "head_c": settings.head_c, "seconds": round(seconds, 1)})
