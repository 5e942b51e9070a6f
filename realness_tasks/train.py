"""Training the real/fake classifier end to end: data, two training phases, evaluation, registration.

``run_training`` is what the training DAG calls. It reads the validated labelled faces, builds the
classifier on a pretrained backbone, trains with the backbone frozen and then fine-tunes the head
and the backbone's late stages (with self-blended pseudo-fakes made anew each epoch when fakes are scarce), picks the
decision threshold on the validation split, measures the test split per face and per video (the
verdict rule applied to each held-out video), compares with the champion on the same test videos,
and registers the model. It is promoted only when its held-out video AUC reaches the configured
floor and it beats the champion. ``labelled_faces_since`` tells the
asset-triggered DAG whether enough new labelled faces arrived to be worth a retrain.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from realness_tasks import dataset as ds
from realness_tasks import labels
from realness_tasks import registry, verdicts
from realness_tasks.config import RealnessConfig
from realness_tasks.crops import decode_crops
from realness_tasks.db import Database
from realness_tasks.detector import (CALIBRATED_THRESHOLD, FUSION_GRID, Detector, choose_fusion_weight, fit_temperature,
                                     reliability, sigmoid, spread)
from realness_tasks.foundation import FEATURES, FeatureCache, LinearHead, fit_linear_head, load_encoder
from realness_tasks.metrics import (binary_cross_entropy, choose_threshold, classification_metrics, log_odds, roc_auc,
                                    roc_curve)
from realness_tasks.model import (BACKBONE_NAME, Backbone, build_classifier, calibrate_batchnorm, compile_classifier,
                                  predict_probabilities, set_backbone_trainable)
from realness_tasks.resources import run_resources
from realness_tasks.sbi import PseudoFakeMaker
from realness_tasks.settings import ScoringSettings, TrainingSettings
from realness_tasks.storage import ObjectStore, StorageUnavailable
from realness_tasks.workspace import scratch_dir

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
THRESHOLD_RULE = "midpoint_of_class_median_log_odds_of_validation_videos"
THRESHOLD_ROUNDS = 5  # at most this many passes of choose_video_threshold (one or two suffice on the benchmark)
AGREEMENT_SAMPLE = 16  # test faces on which the fp32 TFLite export must match Keras
CALIBRATION_FACES = 256  # training faces whose activation ranges the int8 export is quantised to


class ChampionUnavailable(RuntimeError):
    """The champion could not be loaded to compare a new model with: nothing is promoted blindly."""


@dataclass(frozen=True)
class TrainingOutcome:
    version: str
    promoted: bool
    reason: str
    metrics: dict                 # test-split metrics of the new model (per face; per video under "video")
    backbone: str                 # e.g. "efficientnet_lite0 (imagenet:...)" or "... (random)"
    artefacts: dict[str, str]     # file name -> URI in the version folder


# ---------------------------------------------------------------- training

def epoch_tracker(report: Progress, total_epochs: int, val_data: tf.data.Dataset,
                  val_labels: np.ndarray, keep: str) -> keras.callbacks.Callback:
    """A Keras callback that scores the validation split after each epoch, reports, and keeps one epoch's weights.

    ``keep`` is ``last`` (the last epoch) or ``best_validation`` (the best validation AUC).
    Candidates for the kept weights are the epochs of the current phase only (``begin_phase``
    resets them): a model from the frozen phase, whose backbone has not yet adapted to faces, is
    never kept over a fine-tuned one. On the detection benchmark the frozen phase's first epoch
    had the best validation AUC over two validation people (0.71 against 0.63-0.67) but ranked new
    people's videos at 0.67, and the fine-tuned epochs at 0.77-0.82 (docs/detection-benchmark.md).

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


RANDOM_BACKBONE_BATCHNORM_FACES = 256  # a random backbone's BatchNorm statistics need at least these


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
    report(f"backbone: {describe(backbone)}, {settings.image_size} px")
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

    The stream is shuffled and repeats, so a capped epoch draws a fresh share of it. On the
    detection benchmark 122 people at the default 1,500 faces per epoch ranked new people's videos
    at 0.873-0.907 over three seeds in 10 minutes of training, against 0.905 in whole passes over
    their 5,997 training faces in 47 minutes (docs/detection-benchmark.md).
    """
    faces = stream_faces if settings.faces_per_epoch <= 0 else min(stream_faces, settings.faces_per_epoch)
    return -(-faces // settings.batch_size)


def monitoring_sample(val: ds.FaceSet, count: int, seed: int) -> ds.FaceSet:
    """``count`` validation faces, each class in its share (the whole split when ``count`` is 0 or not smaller).

    Scoring all 915 validation faces of the detection benchmark's 122 people after every epoch
    made training 18.9 min where the sample made it 13.8; the learning curve needs far fewer.
    """
    if count <= 0 or count >= len(val):
        return val
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(val.labels):
        members = np.flatnonzero(val.labels == label)
        picked.append(rng.permutation(members)[:max(1, round(count * len(members) / len(val)))])
    return val.take(np.sort(np.concatenate(picked)))


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


# ---------------------------------------------------------------- per-video metrics

def video_scores(faces: ds.FaceSet, scores: np.ndarray, threshold: float,
                 settings: ScoringSettings) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each video's label and score under the verdict rule scoring uses (confident strategy, per person)."""
    labels, video_p, verdict_names = [], [], []
    for video in sorted(set(faces.video_ids.tolist())):
        rows = np.flatnonzero(faces.video_ids == video)
        scored = [verdicts.face_score(video, 0, int(faces.face_index[i]), float(scores[i]), threshold) for i in rows]
        verdict = verdicts.aggregate(video, None, scored, threshold, settings)
        labels.append(int(faces.labels[rows[0]]))
        video_p.append(verdict.p_fake)
        verdict_names.append(verdict.verdict)
    return np.array(labels, np.int32), np.array(video_p, np.float64), verdict_names


def video_metrics(faces: ds.FaceSet, scores: np.ndarray, threshold: float, settings: ScoringSettings) -> dict[str, Any]:
    """Video-level metrics of held-out faces: AUC of the video scores, and counts at the model's threshold."""
    labels, video_p, verdict_names = video_scores(faces, scores, threshold, settings)
    metrics = classification_metrics(labels, video_p, threshold)
    metrics["videos"] = metrics.pop("faces")
    metrics["uncertain"] = verdict_names.count(verdicts.UNCERTAIN)
    return metrics


# ---------------------------------------------------------------- comparing with the champion

def compare_with_champion(cfg: RealnessConfig, store: ObjectStore, test: ds.FaceSet, evaluation: Evaluation,
                          branch: FoundationBranch | None, workdir: Path, report: Progress
                          ) -> registry.PromotionDecision:
    """Apply the promotion floor, then score the champion on the candidate's test videos and compare per video.

    Test videos that the champion trained or validated on are left out of the comparison when
    enough remain (both classes), so the champion is not judged on faces it has seen. A champion
    that cannot be loaded stops the run (:class:`ChampionUnavailable`): a model is never promoted
    without the comparison. A champion trained at another crop margin is still compared (it
    usually loses, rightly: scoring refuses new shards cut at the new margin), and the reason says so.
    """
    import keras

    floor = cfg.training.min_video_auc
    current = registry.read_pointer(cfg, store)
    if current is None or not registry.meets_floor(evaluation.test["video"], floor):
        return registry.decide(evaluation.test["video"], floor, current.version if current else None, None)
    try:
        seen_manifest = json.loads(store.get_bytes(registry.artefact_key(cfg, current.version, "manifest.json")))
        seen = set(seen_manifest["splits"]["train"]["videos"]) | set(seen_manifest["splits"]["val"]["videos"])
        champion_model = keras.models.load_model(
            registry.fetch_artefact(cfg, store, current.version, "model.keras", workdir / "champion"), compile=False)
    except StorageUnavailable:
        raise
    except Exception as exc:  # a missing file, a Keras version that cannot read it, a corrupt manifest...
        raise ChampionUnavailable(
            f"champion {current.version} could not be loaded to compare the new model with "
            f"({type(exc).__name__}: {exc}). Nothing was registered. Repair or replace "
            f"{store.uri_for(registry.version_prefix(cfg, current.version))}, or point "
            f"{store.uri_for(registry.pointer_key(cfg))} at a loadable version, then retrain.") from exc
    keep = np.array([i for i, v in enumerate(test.video_ids) if v not in seen], dtype=np.int64)
    note = ""
    if len(keep) < len(test):
        if len(set(test.labels[keep].tolist())) == 2:
            note = f" (the {len(set(test.video_ids[keep].tolist()))} test videos the champion never trained on)"
        else:
            keep, note = np.arange(len(test)), " (the champion trained on some of these videos)"
    if current.crop_margin is not None and current.crop_margin != cfg.crop.margin:
        note += (f"; the champion was trained on crops cut with margin {current.crop_margin:g} and these faces are "
                 f"cut with {cfg.crop.margin:g} (REALNESS_CROP_MARGIN), so it is compared on crops it would refuse "
                 f"to score")
    subset = test.take(keep)
    report(f"scoring champion {current.version} on {len(subset)} test faces")
    champion_scores = champion_p_fake(current, np.array(predict_probabilities(champion_model, subset.jpegs,
                                                                             current.image_size)),
                                      branch, keep)
    champion_result = video_metrics(subset, champion_scores, current.threshold, cfg.scoring)
    candidate_result = video_metrics(subset, evaluation.test_scores[keep], evaluation.threshold, cfg.scoring)
    return registry.decide(candidate_result, floor, current.version, champion_result, note)


def champion_p_fake(current: registry.ModelRecord, efficientnet: np.ndarray, branch: FoundationBranch | None,
                    keep: np.ndarray) -> np.ndarray:
    """The champion's own p_fake of the test faces ``keep``: its EfficientNet, fused and calibrated its way."""
    if not current.detector:
        return efficientnet   # registered before fusion and calibration: its probabilities as they were
    detector = Detector.from_json(current.detector)
    if not detector.needs_features:
        return detector.calibrated(detector.fused(efficientnet, None))
    if branch is None or branch.record["encoder"] != detector.head.encoder:
        raise ChampionUnavailable(
            f"champion {current.version} fuses a foundation head on {detector.head.encoder} features, and this run "
            f"has {branch.record['encoder'] if branch else 'no foundation encoder (REALNESS_FOUNDATION_ENCODER=none)'}"
            f": the two cannot be compared on the same faces. Nothing was registered.")
    return detector.calibrated(detector.fused(efficientnet, detector.head.logits(branch.test_features[keep])))


def save_reliability_plot(path: Path, calibration: dict[str, dict]) -> None:
    """calibration.png: predicted p_fake against the observed share of fakes per bin, faces and videos of the test split."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, marker in (("faces", "o"), ("videos", "s")):
        table = calibration[name]
        bins = table["bins"]
        ax.plot([b["mean_p_fake"] for b in bins], [b["fake_share"] for b in bins], marker=marker,
                label=f"{name} (ECE {table['ece']:.3f}, n={table['count']})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted p_fake (bin mean)", ylabel="share that is fake",
           title="Reliability, test split")
    ax.legend(loc="upper left")
    FigureCanvasAgg(fig).print_png(str(path))


# ---------------------------------------------------------------- artefacts

def code_version() -> str:
    """``git describe`` of the checkout this code runs from, else the installed package's version."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("realness")
        except PackageNotFoundError:
            return "unknown"


def save_plots(directory: Path, faces: tuple[np.ndarray, np.ndarray], videos: tuple[np.ndarray, np.ndarray],
               metrics: dict, history: dict[str, list]) -> None:
    """roc.png (per face and per video), confusion_matrix.png and training_curves.png (Agg canvas, no display).

    ``faces`` and ``videos`` are (labels, scores) of the test split.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for (labels, scores), name, auc in ((faces, "faces", metrics["auc"]), (videos, "videos", metrics["video"]["auc"])):
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    ax.set(xlabel="false-positive rate (REAL called FAKE)", ylabel="true-positive rate (FAKE caught)",
           title="ROC curve, test split")
    ax.legend(loc="lower right")
    FigureCanvasAgg(fig).print_png(str(directory / "roc.png"))

    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    matrix = np.array(metrics["confusion"])
    ax.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["REAL", "FAKE"], yticklabels=["REAL", "FAKE"],
           xlabel="predicted", ylabel="actual", title=f"Test split, threshold {metrics['threshold']:.3f}")
    FigureCanvasAgg(fig).print_png(str(directory / "confusion_matrix.png"))

    fig = Figure(figsize=(9, 4))
    loss_ax, auc_ax = fig.subplots(1, 2)
    epochs = history["epoch"]
    for ax, key, title in ((loss_ax, "loss", "loss"), (auc_ax, "auc", "AUC")):
        ax.plot(epochs, history[key], marker="o", label=f"train {title}")
        ax.plot(epochs, history[f"val_{key}"], marker="o", label=f"validation {title}")
        if "fine-tune" in history["phase"] and "frozen" in history["phase"]:
            ax.axvline(history["phase"].index("fine-tune") + 0.5, color="grey", linestyle=":",
                       label="fine-tuning starts")
        if any(history.get("kept", [])):
            ax.axvline(epochs[history["kept"].index(True)], color="green", linestyle="--", label="weights kept")
        ax.set(xlabel="epoch", title=title)
        if not epochs:
            ax.text(0.5, 0.5, "no training epochs", ha="center", va="center", transform=ax.transAxes)
        ax.legend()
    FigureCanvasAgg(fig).print_png(str(directory / "training_curves.png"))


@dataclass(frozen=True)
class FoundationBranch:
    """The foundation head fitted on the training faces, with the held-out splits' features and head logits."""

    head: LinearHead
    val_logits: np.ndarray
    test_features: np.ndarray     # kept to score a champion's own head on the same test faces
    test_logits: np.ndarray
    record: dict                  # what it took: faces encoded and reused, pseudo-fakes, seconds


@dataclass(frozen=True)
class Evaluation:
    threshold: float              # the calibrated decision threshold (0.5) the scores below are judged at
    validation: dict              # metrics at that threshold
    test: dict
    test_scores: np.ndarray       # calibrated p_fake of the test faces
    efficientnet_test_scores: np.ndarray   # EfficientNet's own probabilities (what its engines must reproduce)
    detector: Detector
    fusion: dict                  # how the fusion weight was chosen


def choose_video_threshold(faces: ds.FaceSet, scores: np.ndarray, settings: ScoringSettings) -> float:
    """:func:`choose_threshold` over the validation *videos'* scores under the verdict rule.

    The threshold judges videos, and a video's score is not its faces' median: the verdict rule
    takes the mean of the confidently fake faces when enough of them are, so the videos of real
    people with many fake-looking frames score well above their faces. On the 122-person detection
    benchmark, three seeds, thresholds chosen on videos called 12-13 of the 52 real videos of new
    people FAKE where thresholds chosen on faces called 14-17 (docs/training.md, "Decision threshold").
    The video score depends on the threshold only through the rule's confident
    cuts (``max(confident_fake, t)``, ``min(confident_real, t)``), so the faces' midpoint starts
    it and each pass re-chooses on the videos scored with the last threshold until it stops moving.
    """
    threshold = choose_threshold(faces.labels, scores)
    for _ in range(THRESHOLD_ROUNDS):
        labels, video_p, _ = video_scores(faces, scores, threshold, settings)
        chosen = choose_threshold(labels, video_p)
        if chosen == threshold:
            break
        threshold = chosen
    return threshold


PSEUDO_FAKE_DRAW = 1 << 40   # the head's self-blended draws: apart from the training stream's (epoch x face)


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


SELF_BLENDED_VIDEO = "~self-blended"   # suffix of the video id of a held-out real video's self-blended twin


def with_self_blended_twins(part: ds.FaceSet, seed: int, jpeg_quality: int, draw: int) -> ds.FaceSet:
    """``part`` (real videos only) plus a FAKE twin of each video: a self-blended copy of each of its faces.

    What the threshold, the calibration and the fusion weight are chosen on, and the held-out
    metrics measured on, when the archive has no labelled fake: a proxy, which is why such a model
    is never promoted without an operator (:func:`no_labelled_fakes_decision`).
    """
    maker = PseudoFakeMaker(part, seed, jpeg_quality)
    twins = [maker.make(i, draw + i) for i in range(len(part))]
    return ds.FaceSet(part.jpegs + twins, np.r_[part.labels, np.ones(len(part), np.int32)],
                      np.r_[part.video_ids, np.char.add(part.video_ids.astype(str), SELF_BLENDED_VIDEO)],
                      np.concatenate([part.boxes, part.boxes]), part.landmarks + part.landmarks,
                      np.r_[part.face_index, part.face_index])


def no_labelled_fakes_decision(cfg: RealnessConfig, store: ObjectStore, evaluation: Evaluation
                               ) -> registry.PromotionDecision:
    """Register without promoting: the gate needs labelled held-out videos, and there are no labelled fakes."""
    current = registry.read_pointer(cfg, store)
    return registry.PromotionDecision(
        False, f"no labelled fake video: trained on real faces and self-blended copies of them, measured on "
               f"self-blended copies of the held-out real videos only (video AUC "
               f"{evaluation.test['video']['auc']:.4f}), which cannot gate a promotion; an operator may promote "
               f"it: realness approve VERSION --reason TEXT (or the realness_train DAG's approve_version)",
        current.version if current else None)


def branch_video_auc(val: ds.FaceSet, val_scores: np.ndarray, test: ds.FaceSet, test_scores: np.ndarray,
                     scoring: ScoringSettings) -> dict[str, float]:
    """One branch's held-out AUCs on its own (threshold chosen on validation videos, as for the fused score)."""
    threshold = choose_video_threshold(val, val_scores, scoring)
    return {"face_auc": roc_auc(test.labels, test_scores),
            "video_auc": video_metrics(test, test_scores, threshold, scoring)["auc"]}


def choose_detector(val: ds.FaceSet, efficientnet_val: np.ndarray, branch: FoundationBranch | None,
                    cfg: RealnessConfig) -> tuple[Detector, dict[str, Any]]:
    """Fusion weight, raw threshold and temperature, all chosen on the validation split (see ``detector``)."""
    scoring = cfg.scoring
    efficientnet_scale = spread(log_odds(efficientnet_val))
    head, head_scale, head_logits = None, 1.0, None
    weights: tuple[float, ...] = (1.0,)
    if branch is not None:
        head, head_scale, head_logits = branch.head, spread(branch.val_logits), branch.val_logits
        setting = cfg.foundation.fusion_weight
        weights = FUSION_GRID if setting == "auto" else (float(setting),)

    def uncalibrated(weight: float) -> Detector:
        return Detector(weight, efficientnet_scale, head, head_scale, CALIBRATED_THRESHOLD, 1.0)

    def validation_video_auc(weight: float) -> float:
        raw = sigmoid(uncalibrated(weight).fused(efficientnet_val, head_logits))
        return video_metrics(val, raw, choose_video_threshold(val, raw, scoring), scoring)["auc"]

    weight, searched = choose_fusion_weight(validation_video_auc, weights)
    fused = uncalibrated(weight).fused(efficientnet_val, head_logits)
    raw_threshold = choose_video_threshold(val, sigmoid(fused), scoring)
    temperature = fit_temperature(fused, val.labels, raw_threshold)
    detector = Detector(weight, efficientnet_scale, head, head_scale, raw_threshold, temperature)
    return detector, {"rule": "validation video AUC over EfficientNet weights, ties to the foundation head",
                      "setting": cfg.foundation.fusion_weight, "validation_video_auc_by_weight": searched,
                      "chosen": detector.describe()}


def held_out_metrics(faces: ds.FaceSet, p_fake: np.ndarray, scoring: ScoringSettings) -> dict[str, Any]:
    """Face and video metrics at the calibrated threshold, with the calibration of both (reliability, ECE)."""
    result = classification_metrics(faces.labels, p_fake, CALIBRATED_THRESHOLD)
    result["video"] = video_metrics(faces, p_fake, CALIBRATED_THRESHOLD, scoring)
    video_labels, video_p, _ = video_scores(faces, p_fake, CALIBRATED_THRESHOLD, scoring)
    result["calibration"] = {"faces": reliability(faces.labels, p_fake), "videos": reliability(video_labels, video_p)}
    return result


def evaluate(model: keras.Model, data: ds.LabelledDataset, cfg: RealnessConfig,
             branch: FoundationBranch | None) -> Evaluation:
    """Detector chosen on the validation split; calibrated metrics per face and per video on both held-out splits."""
    image_size, scoring = cfg.training.image_size, cfg.scoring
    efficientnet_val = np.array(predict_probabilities(model, data.val.jpegs, image_size))
    efficientnet_test = np.array(predict_probabilities(model, data.test.jpegs, image_size))
    detector, fusion = choose_detector(data.val, efficientnet_val, branch, cfg)
    val_p = detector.calibrated(detector.fused(efficientnet_val, branch.val_logits if branch else None))
    test_p = detector.calibrated(detector.fused(efficientnet_test, branch.test_logits if branch else None))
    test = held_out_metrics(data.test, test_p, scoring)
    test["branches"] = {"efficientnet": branch_video_auc(data.val, efficientnet_val, data.test, efficientnet_test,
                                                         scoring)}
    if branch is not None:
        test["branches"]["foundation"] = branch_video_auc(data.val, sigmoid(branch.val_logits), data.test,
                                                          sigmoid(branch.test_logits), scoring)
    return Evaluation(CALIBRATED_THRESHOLD, held_out_metrics(data.val, val_p, scoring), test, test_p,
                      efficientnet_test, detector, fusion)


def calibration_faces(train: ds.FaceSet, image_size: int, seed: int, count: int = CALIBRATION_FACES) -> np.ndarray:
    """Up to ``count`` training faces, drawn with ``seed``, decoded as the model sees them: the int8 ranges' source."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), min(count, len(train)), replace=False))
    return decode_crops([train.jpegs[i] for i in chosen], image_size).numpy()


def engine_measurement(test: ds.FaceSet, keras_scores: np.ndarray, engine_scores: np.ndarray, threshold: float,
                       scoring: ScoringSettings) -> dict[str, Any]:
    """How far an engine's probabilities on the held-out faces are from Keras', and what that does to both AUCs."""
    return {"faces_compared": len(engine_scores),
            "max_abs_difference": float(np.max(np.abs(keras_scores - engine_scores))) if len(engine_scores) else 0.0,
            "face_auc": roc_auc(test.labels, engine_scores),
            "video_auc": video_metrics(test, engine_scores, threshold, scoring)["auc"],
            "keras_face_auc": roc_auc(test.labels, keras_scores),
            "keras_video_auc": video_metrics(test, keras_scores, threshold, scoring)["auc"]}


def export_engines(directory: Path, model: keras.Model, data: ds.LabelledDataset, evaluation: Evaluation,
                   scoring: ScoringSettings, with_int8: bool) -> dict[str, dict[str, Any]]:
    """The scoring engines' files (fp32, and int8 when ``with_int8``), with what was checked of each.

    fp32 must reproduce Keras (``check_agreement``, or the version is not registered); int8 cannot,
    so its difference from Keras and its AUCs are measured on the whole test split and recorded.
    """
    from realness_tasks.inference import ENGINE_FILES, TFLiteScorer, check_agreement, export_tflite, score_crops

    size = model.inputs[0].shape[1]
    fp32, int8 = directory / ENGINE_FILES["fp32"], directory / ENGINE_FILES["int8"]
    export_tflite(model, fp32)
    sample = decode_crops(data.test.jpegs[:AGREEMENT_SAMPLE], size).numpy()
    engines = {"fp32": {"file": fp32.name, "bytes": fp32.stat().st_size, "faces_compared": len(sample),
                        "max_abs_difference": check_agreement(model, fp32, sample)}}
    if not with_int8:
        return engines
    calibration = calibration_faces(data.train, size, data.manifest["seed"])
    export_tflite(model, int8, "int8", calibration)
    measured = engine_measurement(data.test, evaluation.efficientnet_test_scores,
                                  score_crops(TFLiteScorer(int8), data.test.jpegs), evaluation.detector.raw_threshold,
                                  scoring)
    engines["int8"] = {"file": int8.name, "bytes": int8.stat().st_size, "calibration_faces": len(calibration),
                       **measured}
    log.info("int8 engine: %.1f MB (fp32 %.1f MB), max |difference| from Keras %.3g, video AUC %.4f (Keras %.4f)",
             engines["int8"]["bytes"] / 1e6, engines["fp32"]["bytes"] / 1e6, measured["max_abs_difference"],
             measured["video_auc"], measured["keras_video_auc"])
    return engines


def write_version_folder(directory: Path, model: keras.Model, data: ds.LabelledDataset, evaluation: Evaluation,
                         files: dict[str, dict], history: dict[str, list], cfg: RealnessConfig) -> None:
    """Every artefact of a version, written locally; the fp32 engine must reproduce Keras' outputs."""
    model.save(directory / "model.keras")
    files["metrics.json"]["engines"] = export_engines(directory, model, data, evaluation, cfg.scoring,
                                                      cfg.training.int8_engine)
    for name, content in files.items():
        (directory / name).write_text(json.dumps(content, indent=1, default=str))
    video_labels, video_p, _ = video_scores(data.test, evaluation.test_scores, evaluation.threshold, cfg.scoring)
    save_plots(directory, (data.test.labels, evaluation.test_scores), (video_labels, video_p), evaluation.test, history)
    save_reliability_plot(directory / "calibration.png", evaluation.test["calibration"])


def publish(cfg: RealnessConfig, store: ObjectStore, db: Database, run_id: str, model: keras.Model,
            data: ds.LabelledDataset, manifest: dict, history: dict[str, list], evaluation: Evaluation,
            backbone: Backbone, branch: FoundationBranch | None, report: Progress) -> TrainingOutcome:
    """Compare with the champion, write the version folder and register it (promoting it if it won)."""
    foundation_record = branch.record if branch is not None else None
    with scratch_dir(cfg.home, "realness-train") as tmp:
        workdir = Path(tmp)
        decision = (compare_with_champion(cfg, store, data.test, evaluation, branch, workdir, report)
                    if data.manifest["labelled_fakes"] else no_labelled_fakes_decision(cfg, store, evaluation))
        created_at = registry.utc_now()
        config_record = {"training": asdict(cfg.training), "crop": asdict(cfg.crop), "code_version": code_version(),
                         "run_id": run_id, "backbone": asdict(backbone)}
        version = registry.new_version(created_at, json.dumps([run_id, config_record, manifest["shards"]],
                                                              sort_keys=True, default=str))
        metrics_file = {"version": version, "test": evaluation.test, "threshold": evaluation.threshold,
                        "threshold_rule": THRESHOLD_RULE, "detector": evaluation.detector.to_json(),
                        "fusion": evaluation.fusion, "foundation": foundation_record, "validation": evaluation.validation, "history": history,
                        "backbone": asdict(backbone), "comparison": {"reason": decision.reason, **decision.comparison}}
        folder = workdir / version
        folder.mkdir()
        write_version_folder(folder, model, data, evaluation, {"metrics.json": metrics_file, "manifest.json": manifest,
                                                               "training_config.json": config_record}, history,
                             cfg)
        record = registry.ModelRecord(
            version=version, created_at=created_at, run_id=run_id,
            uri=store.uri_for(registry.version_prefix(cfg, version)), image_size=cfg.training.image_size,
            threshold=evaluation.threshold, metrics=evaluation.test, dataset_faces=data.total_faces,
            data_cutoff=data.listed_at, reason=decision.reason, backbone=backbone.name,
            backbone_weights=backbone.weights, crop_margin=cfg.crop.margin,
            engines={name: engine["file"] for name, engine in metrics_file["engines"].items()},
            detector=evaluation.detector.to_json())
        registered, reason = registry.register(cfg, store, db, record, folder, decision)
    report(f"model {version} {'promoted' if registered.promoted else 'registered, not promoted'}: {reason}")
    return TrainingOutcome(version, registered.promoted, reason, evaluation.test, describe(backbone),
                           {name: store.uri_for(registry.artefact_key(cfg, version, name))
                            for name in record.files()})


def describe(backbone: Backbone) -> str:
    """The backbone as the run summary shows it; a random start is spelled out."""
    if not backbone.pretrained:
        return f"{backbone.name} from RANDOM weights (REALNESS_TRAINING_RANDOM_INIT)"
    return f"{backbone.name} ({backbone.weights})"


# ---------------------------------------------------------------- entry points

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


def approve_version(cfg: RealnessConfig, version: str, reason: str) -> dict[str, Any]:
    """An operator's promotion of ``version`` (the training DAG's ``approve_version``), as the DAG's outcome."""
    with run_resources(cfg) as run:
        store, db = run.store, run.db
        model = registry.approve(cfg, store, db, version, reason)
        reason = registry.read_pointer(cfg, store).reason
    return {"version": model.version, "promoted": True, "reason": reason, "metrics": model.metrics,
            "backbone": "approved by an operator"}


def labelled_faces_since(cfg: RealnessConfig, store: ObjectStore, db: Database, since: datetime | None = None) -> int:
    """Labelled faces in validated shards that arrived after ``since``.

    ``since`` defaults to the data cut-off of the newest registered model (promoted or not, so a
    losing model does not trigger an immediate retrain); before any model, every labelled face counts.
    """
    since = registry.as_utc(since) if since is not None else registry.last_data_cutoff(db)
    keys = [o.key for o in store.list(cfg.faces_prefix)
            if o.key.endswith(".parquet") and (since is None or registry.as_utc(o.modified) > since)]
    return ds.count_labelled(store, keys, labels.for_training(db))
