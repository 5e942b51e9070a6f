"""The detection types every detector shares (MTCNN in ``faces``, Azure Face in ``azure_face``).

Kept apart so that the two detector modules depend on this one instead of on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x, y, w, h


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x, y, w, h)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Detection:
    """One face found in a frame."""

    box: Box  # in full-resolution frame pixels
    confidence: float  # [0, 1]
    landmarks: tuple[float, ...] | None  # x1, y1, ..., x5, y5: eyes, nose, mouth corners (full-res px)
    detector: str  # "mtcnn" | "azure" | "both"


@dataclass
class FrameFaces:
    """The faces of one frame; ``azure_status`` says what Azure did with it (None without Azure)."""

    detections: list[Detection]
    azure_status: str | None = None


class FaceDetector(Protocol):
    """What every face detector offers: MTCNN, Azure Face, or both merged."""

    name: str

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        """One ``FrameFaces`` per BGR full-resolution frame, in order."""

    def stats(self) -> dict[str, int]:
        """Counters since the detector was built (for run reports)."""

    def load(self) -> None:
        """Load what the first ``detect`` needs (models, libraries); a no-op once loaded."""


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    """``image`` (BGR) as JPEG bytes at ``quality``."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the crop as JPEG")
    return data.tobytes()
