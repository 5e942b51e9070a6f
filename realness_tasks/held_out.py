"""What training measures on its held-out splits, and the detector it chooses on the validation split.

``evaluate`` scores the validation and test faces with the trained classifier (and the foundation
head, when there is one), chooses the detector on the validation split (``choose_detector``: the
fusion weight, the raw threshold and the temperature that calibrates it), and measures both splits
per face and per video at the calibrated threshold. ``with_self_blended_twins`` makes the held-out
splits measurable when the archive has no labelled fake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from realness_tasks import dataset as ds
from realness_tasks.config import RealnessConfig
from realness_tasks.settings import ScoringSettings
from realness_tasks.detector import (CALIBRATED_THRESHOLD, FUSION_GRID, Detector, choose_fusion_weight, fit_temperature,
                                     reliability, sigmoid, spread)
from realness_tasks.fitting import FoundationBranch
from realness_tasks.metrics import (choose_video_threshold, classification_metrics, log_odds, roc_auc, video_metrics,
                                    video_scores)
from realness_tasks.model import predict_probabilities
from realness_tasks.sbi import PseudoFakeMaker

if TYPE_CHECKING:
    import keras

SELF_BLENDED_VIDEO = "~self-blended"   # suffix of the video id of a held-out real video's self-blended twin


@dataclass(frozen=True)
class Evaluation:
    """The trained model judged on the held-out splits: the detector chosen, its scores and metrics."""

    threshold: float              # the calibrated decision threshold (0.5) the scores below are judged at
    validation: dict              # metrics at that threshold
    test: dict
    test_scores: np.ndarray       # calibrated p_fake of the test faces
    efficientnet_test_scores: np.ndarray   # EfficientNet's own probabilities (what its engines must reproduce)
    detector: Detector
    fusion: dict                  # how the fusion weight was chosen


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


def with_self_blended_twins(part: ds.FaceSet, seed: int, jpeg_quality: int, draw: int) -> ds.FaceSet:
    """``part`` (real videos only) plus a FAKE twin of each video: a self-blended copy of each of its faces.

    What the threshold, the calibration and the fusion weight are chosen on, and the held-out
    metrics measured on, when the archive has no labelled fake: a proxy, which is why such a model
    is never promoted without an operator (:func:`realness_tasks.promotion.no_labelled_fakes_decision`).
    """
    maker = PseudoFakeMaker(part, seed, jpeg_quality)
    twins = [maker.make(i, draw + i) for i in range(len(part))]
    return ds.FaceSet(part.jpegs + twins, np.r_[part.labels, np.ones(len(part), np.int32)],
                      np.r_[part.video_ids, np.char.add(part.video_ids.astype(str), SELF_BLENDED_VIDEO)],
                      np.concatenate([part.boxes, part.boxes]), part.landmarks + part.landmarks,
                      np.r_[part.face_index, part.face_index])
