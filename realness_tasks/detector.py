"""How a model version turns a face into ``p_fake``: EfficientNet and the foundation head, fused, then calibrated.

Per face, each branch gives log-odds: EfficientNet's probability through :func:`log_odds`, the
foundation head's logit directly. Each is divided by its spread on the validation faces, and the
two are mixed with a weight chosen on the validation *videos* (:func:`choose_fusion_weight`). The
fused log-odds are the raw score (``p_raw = sigmoid``); the stored ``p_fake`` is calibrated:

    p_fake = sigmoid((fused - log_odds(raw_threshold)) / temperature)

``raw_threshold`` is the decision threshold chosen on the validation videos (training's rule), so
a calibrated 0.5 is exactly that threshold; ``temperature`` is fitted by maximum likelihood on the
validation faces against their videos' labels (temperature scaling, one parameter: it cannot
reorder faces, only make "0.9" mean about nine in ten). A version without a foundation head
(``REALNESS_FOUNDATION_ENCODER=none``) has weight 1; a version registered before calibration has
no detector record and scores as it always did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from realness_tasks.foundation import LinearHead
from realness_tasks.metrics import log_odds

CALIBRATED_THRESHOLD = 0.5
FUSION_GRID = tuple(round(w, 1) for w in np.linspace(0.0, 1.0, 11))   # EfficientNet's weight
RELIABILITY_BINS = 10


@dataclass(frozen=True)
class Detector:
    """A version's per-face scoring rule (see the module doc); ``detector.json`` in its folder."""

    efficientnet_weight: float          # 1: EfficientNet alone; 0: the foundation head alone
    efficientnet_scale: float           # spread of EfficientNet's validation log-odds
    head: LinearHead | None
    head_scale: float                   # spread of the head's validation logits (1 without a head)
    raw_threshold: float                # threshold on sigmoid(fused) chosen on the validation videos
    temperature: float                  # calibration: fitted on the validation faces

    def fused(self, p_efficientnet: np.ndarray, head_logits: np.ndarray | None) -> np.ndarray:
        """The fused log-odds of each face (the raw score's logit); ``head_logits`` from ``head.logits(features)``."""
        z = self.efficientnet_weight * log_odds(p_efficientnet) / self.efficientnet_scale
        if self.needs_features:
            if head_logits is None:
                raise ValueError("this model fuses the foundation head: it needs each face's foundation features")
            z = z + (1 - self.efficientnet_weight) * np.asarray(head_logits, np.float64) / self.head_scale
        return z

    def calibrated(self, fused: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from fused log-odds: the decision threshold maps to ``CALIBRATED_THRESHOLD``."""
        return calibrate(fused, self.raw_threshold, self.temperature)

    @property
    def needs_features(self) -> bool:
        """Whether scoring needs the foundation features (the head has a share of the score)."""
        return self.head is not None and self.efficientnet_weight < 1

    def to_json(self) -> dict[str, Any]:
        """The detector as the model version's files record it."""
        return {"efficientnet_weight": self.efficientnet_weight, "efficientnet_scale": self.efficientnet_scale,
                "head": self.head.to_json() if self.head else None, "head_scale": self.head_scale,
                "raw_threshold": self.raw_threshold, "temperature": self.temperature,
                "calibrated_threshold": CALIBRATED_THRESHOLD}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Detector:
        """A detector read back from a model version's files."""
        return cls(float(data["efficientnet_weight"]), float(data["efficientnet_scale"]),
                   LinearHead.from_json(data["head"]) if data.get("head") else None, float(data["head_scale"]),
                   float(data["raw_threshold"]), float(data["temperature"]))

    def describe(self) -> str:
        """How the score is made, in words, for reports and logs."""
        if self.head is None or self.efficientnet_weight >= 1:
            return "EfficientNet alone"
        if self.efficientnet_weight <= 0:
            return f"foundation head alone ({self.head.encoder})"
        return (f"EfficientNet x {self.efficientnet_weight:.1f} + foundation head x "
                f"{1 - self.efficientnet_weight:.1f} ({self.head.encoder})")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, in float64."""
    return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def calibrate(fused: np.ndarray, raw_threshold: float, temperature: float) -> np.ndarray:
    """Probabilities from fused log-odds: ``raw_threshold`` maps to 0.5, ``temperature`` scales the distance from it."""
    return sigmoid((np.asarray(fused, np.float64) - float(log_odds(np.array([raw_threshold]))[0])) / temperature)


def spread(values: np.ndarray) -> float:
    """Standard deviation, or 1 when there is none to speak of (one face, all equal)."""
    s = float(np.std(values))
    return s if s > 1e-6 else 1.0


def fit_temperature(fused: np.ndarray, labels: np.ndarray, raw_threshold: float) -> float:
    """The temperature that maximises the likelihood of ``labels`` under :func:`calibrate` (bounded 0.05-50).

    The targets are Platt's: (n_fake + 1) / (n_fake + 2) for a fake and 1 / (n_real + 2) for a real
    face, not 1 and 0. A validation split of a few videos often separates perfectly, and with hard
    targets the fit then drives the temperature to its bound: probabilities of 0.999 that new
    people's faces do not earn (seen on the real-data benchmark: a temperature of 0.13 there put
    most fakes of unseen sources at p_fake < 0.01).
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, np.float64)
    fakes, reals = int((labels == 1).sum()), int((labels == 0).sum())
    targets = np.where(labels == 1, (fakes + 1) / (fakes + 2), 1 / (reals + 2))
    centred = np.asarray(fused, np.float64) - float(log_odds(np.array([raw_threshold]))[0])

    def nll(log_t: float) -> float:
        z = centred / np.exp(log_t)
        return float(np.mean(np.logaddexp(0, z) - targets * z))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(50.0)), method="bounded")
    return float(np.exp(result.x))


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS) -> dict[str, Any]:
    """Expected calibration error and the reliability table (equal-width bins of the predicted probability)."""
    labels, p = np.asarray(labels, np.float64), np.asarray(probabilities, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        if count:
            mean_p, observed = float(p[members].mean()), float(labels[members].mean())
            ece += count / max(1, len(p)) * abs(mean_p - observed)
            table.append({"bin": [float(edges[b]), float(edges[b + 1])], "count": count,
                          "mean_p_fake": mean_p, "fake_share": observed})
    return {"ece": float(ece), "count": int(len(p)), "bins": table}


def choose_fusion_weight(video_auc_of: Any, grid: tuple[float, ...] = FUSION_GRID) -> tuple[float, dict[str, float]]:
    """The EfficientNet weight whose fused scores rank the validation videos best.

    ``video_auc_of(weight)`` gives the validation video AUC at that weight. Ties (few validation
    videos often tie) go to the weight nearest the foundation head alone, which generalises better to
    new people and datasets (docs/detection-benchmark.md).
    """
    aucs = {w: float(video_auc_of(w)) for w in grid}
    finite = {w: a for w, a in aucs.items() if not np.isnan(a)}
    if not finite:
        return 0.0, {str(w): a for w, a in aucs.items()}
    best = max(finite.values())
    chosen = min(w for w, a in finite.items() if a >= best - 1e-9)
    return chosen, {str(w): a for w, a in aucs.items()}
