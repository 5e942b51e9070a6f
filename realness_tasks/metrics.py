"""Metrics shared by training, evaluation and the detector's calibration (FAKE = 1 is the positive class)."""

from __future__ import annotations

from typing import Any

import numpy as np

LOG_ODDS_CLIP = 1e-6  # scores are clipped to [1e-6, 1 - 1e-6] before taking log-odds


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

    The validation split holds few people. A cut maximising Youden's J lands on whichever face
    separates those few people, far from run to run, and new people's real videos then fall above
    it; the midpoint calls fewer of them FAKE and balances real and fake better
    (docs/detection-benchmark.md). Log-odds because scores crowd near 0 and 1; medians so that one
    saturated face does not move it. Like J, it does not depend on the share of fakes, which differs
    between the labelled set and what arrives for scoring.
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
