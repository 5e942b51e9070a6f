"""What scores a model version's faces: its TFLite engine, its foundation head, and its detector.

The registry's record decides each part. ``load_scorer`` fetches the engine that
``REALNESS_SCORING_ENGINE`` names from the version's folder; ``foundation_scorer`` gives the
foundation head over cached (or newly encoded) CLIP features when the model's detector fuses one;
``face_log_odds`` and ``probabilities`` turn the two into the stored scores the way the detector
was fitted (a model without a detector stores the engine's output). ``realness_tasks.scoring``
runs them over the shards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from realness_tasks.config import RealnessConfig
from realness_tasks.detector import Detector, sigmoid
from realness_tasks.foundation import FeatureCache, load_encoder
from realness_tasks.inference import TFLiteScorer
from realness_tasks.metrics import log_odds
from realness_tasks.registry import ModelVersion
from realness_tasks.settings import ConfigurationError
from realness_tasks.storage import ObjectStore, open_store

log = logging.getLogger(__name__)


def load_scorer(cfg: RealnessConfig, model: ModelVersion, workdir: Path) -> TFLiteScorer:
    """The engine ``REALNESS_SCORING_ENGINE`` names, from its file in ``model``'s version folder."""
    engine = cfg.scoring.engine
    if engine not in model.engines:
        raise FileNotFoundError(f"model {model.version} has no {engine} engine (it has {', '.join(model.engines)}): "
                                f"set REALNESS_SCORING_ENGINE to one of those, or train a new model, which "
                                f"exports every engine")
    name = model.engines[engine]
    path = workdir / name
    try:
        open_store(model.uri, cfg.s3).download(name, path)
    except KeyError:
        raise FileNotFoundError(f"model {model.version} has no {name} ({engine} engine) in {model.uri}: export it "
                                "with realness_tasks.inference.export_tflite") from None
    scorer = TFLiteScorer(path, threads=cfg.scoring.threads)
    if scorer.image_size != model.image_size:
        raise ValueError(f"model {model.version}: {name} takes {scorer.image_size} px faces, "
                         f"the registry says {model.image_size}")
    log.info("model %s: scoring with the %s engine (%s)", model.version, engine, name)
    return scorer


class FoundationScorer:
    """The model's foundation head over cached (or newly encoded) features of a video's crops."""

    def __init__(self, cfg: RealnessConfig, store: ObjectStore, model: ModelVersion):
        detector = Detector.from_json(model.detector or {})
        if not cfg.foundation.enabled:
            raise ConfigurationError(f"model {model.version} fuses a foundation head ({detector.head.encoder}): it "
                                     "cannot score with REALNESS_FOUNDATION_ENCODER=none; unset it, or promote a "
                                     "model trained with it")
        encoder = load_encoder(cfg.foundation.encoder_path, cfg.foundation.threads)
        if encoder.identity != detector.head.encoder:
            raise ConfigurationError(f"model {model.version} was fitted on {detector.head.encoder} features, this "
                                     f"worker's encoder is {encoder.identity} ({encoder.path}): install the pinned "
                                     f"one, or retrain")
        self.head = detector.head
        self.cache = FeatureCache(store, cfg.features_prefix, encoder)

    def logits(self, video_id: str, jpegs: Sequence[bytes]) -> np.ndarray:
        if not jpegs:
            return np.zeros(0, np.float64)
        return self.head.logits(self.cache.features([video_id] * len(jpegs), jpegs))


def foundation_scorer(cfg: RealnessConfig, store: ObjectStore, model: ModelVersion) -> FoundationScorer | None:
    """The foundation head of a model whose detector fuses one; None for a model scored by its engine alone."""
    if model.detector and Detector.from_json(model.detector).needs_features:
        return FoundationScorer(cfg, store, model)
    return None


def face_log_odds(p_fake: np.ndarray, head_logits: np.ndarray | None, model: ModelVersion) -> np.ndarray:
    """The model's raw log-odds per face: the detector's fusion of the engine's ``p_fake`` and the
    foundation head's logits, else the engine's output as log-odds."""
    if not model.detector:
        return log_odds(p_fake)
    return Detector.from_json(model.detector).fused(p_fake, head_logits)


def probabilities(z: np.ndarray, model: ModelVersion) -> np.ndarray:
    """Stored ``p_fake`` for raw log-odds ``z``: calibrated by the model's detector, else sigmoid."""
    return Detector.from_json(model.detector).calibrated(z) if model.detector else sigmoid(z)


def face_probabilities(p_fake: np.ndarray, head_logits: np.ndarray | None, model: ModelVersion
                       ) -> tuple[np.ndarray, np.ndarray | None]:
    """(p_fake, p_raw) of a video's faces: fused and calibrated by the model's detector, else the engine's output."""
    if not model.detector:
        return p_fake, None
    z = face_log_odds(p_fake, head_logits, model)
    return probabilities(z, model), sigmoid(z)
