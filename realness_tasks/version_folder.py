"""A model version's folder: the Keras model, its scoring engines, the JSON records and the plots.

``write_version_folder`` writes every artefact locally before the registry uploads the folder.
The fp32 TFLite engine must reproduce Keras' probabilities or the version is not registered; the int8
engine cannot, so its difference from Keras and its AUCs are measured and recorded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from realness_tasks import dataset as ds
from realness_tasks.config import RealnessConfig
from realness_tasks.settings import ScoringSettings
from realness_tasks.crops import decode_crops
from realness_tasks.held_out import Evaluation
from realness_tasks.metrics import roc_auc, roc_curve, video_metrics, video_scores

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

AGREEMENT_SAMPLE = 16  # test faces on which the fp32 TFLite export must match Keras
CALIBRATION_FACES = 256  # training faces whose activation ranges the int8 export is quantised to


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


def save_reliability_plot(path: Path, calibration: dict[str, dict]) -> None:
    """calibration.png: predicted p_fake against the share of fakes per bin, the test split's faces and videos."""
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
