"""Metrics shared by training, evaluation and the detector's calibration (FAKE = 1 is the positive class).

Per face (AUC, ROC curve, counts at a threshold, cross-entropy), per video under the verdict rule
that scoring applies (``video_scores``, ``video_metrics``), and the decision threshold's choice
(``choose_threshold`` on scores, ``choose_video_threshold`` on the videos they make).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from realness_tasks import verdicts

if TYPE_CHECKING:
    from realness_tasks.settings import ScoringSettings
    from realness_tasks.dataset import FaceSet

LOG_ODDS_CLIP = 1e-6  # scores are clipped to [1e-6, 1 - 1e-6] before taking log-odds
THRESHOLD_RULE = "midpoint_of_class_median_log_odds_of_validation_videos"
THRESHOLD_ROUNDS = 5  # choose_video_threshold's passes at most: it stops as soon as the threshold stops moving


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); NaN without both classes."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    # average rank of each group of tied scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], len(scores)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds), predicting FAKE when score >= threshold."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    thresholds = np.unique(scores)[::-1]
    positives, negatives = max(1, int((labels == 1).sum())), max(1, int((labels == 0).sum()))
    tpr = np.array([((scores >= t) & (labels == 1)).sum() / positives for t in thresholds])
    fpr = np.array([((scores >= t) & (labels == 0)).sum() / negatives for t in thresholds])
    return np.r_[0.0, fpr], np.r_[0.0, tpr], np.r_[np.inf, thresholds]


def log_odds(scores: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with scores clipped to [LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP] so that 0 and 1 stay finite."""
    clipped = np.clip(np.asarray(scores, np.float64), LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP)
    return np.log(clipped / (1 - clipped))


def choose_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The point halfway, in log-odds, between the median validation score of real faces and of fake faces.

    The validation split holds few people. The cut maximising Youden's J lands on whichever face
    separates those few people, so it swings widely between runs and new people's real videos fall
    above it; this midpoint calls fewer of them FAKE and balances real and fake better
    (docs/training.md, "Decision threshold"). Log-odds because scores crowd near 0 and 1; medians
    so that one saturated face does not move it. Like J, it does not depend on the share of fakes,
    which differs between the labelled set and what arrives for scoring.
    """
    labels = np.asarray(labels)
    if not (labels == 0).any() or not (labels == 1).any():
        raise ValueError("choosing a threshold needs real and fake validation faces")
    odds = log_odds(scores)
    middle = (np.median(odds[labels == 0]) + np.median(odds[labels == 1])) / 2
    return float(1 / (1 + np.exp(-middle)))


def classification_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (FAKE is positive), AUC and the confusion matrix at ``threshold``."""
    labels, scores = np.asarray(labels), np.asarray(scores, np.float64)
    predicted = (scores >= threshold).astype(int)
    tp = int(((predicted == 1) & (labels == 1)).sum())
    fp = int(((predicted == 1) & (labels == 0)).sum())
    fn = int(((predicted == 0) & (labels == 1)).sum())
    tn = int(((predicted == 0) & (labels == 0)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"faces": int(len(labels)), "threshold": float(threshold), "accuracy": (tp + tn) / max(1, len(labels)),
            "precision_fake": precision, "recall_fake": recall, "f1_fake": f1, "auc": roc_auc(labels, scores),
            "confusion": [[tn, fp], [fn, tp]]}


def binary_cross_entropy(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean log loss of ``scores`` against 0/1 ``labels``; NaN for no labels."""
    p = np.clip(np.asarray(scores, np.float64), 1e-7, 1 - 1e-7)
    y = np.asarray(labels, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))) if len(y) else float("nan")


def video_scores(faces: FaceSet, scores: np.ndarray, threshold: float,
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


def video_metrics(faces: FaceSet, scores: np.ndarray, threshold: float, settings: ScoringSettings) -> dict[str, Any]:
    """Video-level metrics of held-out faces: AUC of the video scores, and counts at the model's threshold."""
    labels, video_p, verdict_names = video_scores(faces, scores, threshold, settings)
    metrics = classification_metrics(labels, video_p, threshold)
    metrics["videos"] = metrics.pop("faces")
    metrics["uncertain"] = verdict_names.count(verdicts.UNCERTAIN)
    return metrics


def choose_video_threshold(faces: FaceSet, scores: np.ndarray, settings: ScoringSettings) -> float:
    """:func:`choose_threshold` over the validation *videos'* scores under the verdict rule.

    The threshold judges videos, and a video's score is not its faces' median: the verdict rule
    takes the mean of the confidently fake faces when enough of them are, so the videos of real
    people with many fake-looking frames score well above their faces; a threshold chosen on the
    videos calls fewer of them FAKE (docs/training.md, "Decision threshold"). The video score
    depends on the threshold only through the rule's confident cuts (``max(confident_fake, t)``,
    ``min(confident_real, t)``), so the faces' midpoint starts it and each pass re-chooses on the
    videos scored with the last threshold until it stops moving.
    """
    threshold = choose_threshold(faces.labels, scores)
    for _ in range(THRESHOLD_ROUNDS):
        labels, video_p, _ = video_scores(faces, scores, threshold, settings)
        chosen = choose_threshold(labels, video_p)
        if chosen == threshold:
            break
        threshold = chosen
    return threshold
