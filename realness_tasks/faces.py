"""Finding faces in frames (MTCNN on LiteRT, optionally merged with Azure Face) and cutting the crops.

``crop_face`` is THE crop convention: training reads crops made by it and scoring makes its crops
with it, so a change here changes what the model sees. ``docs/detection.md`` explains the merge
rule, the MTCNN pyramid fix, why MTCNN runs on LiteRT and its cost per frame.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from realness_tasks.config import RealnessConfig
from realness_tasks.detection import Box, Detection, FaceDetector, FrameFaces, encode_jpeg, iou  # noqa: F401 - re-exported
from realness_tasks.mtcnn_lite import LiteMtcnn, converted_networks
from realness_tasks.settings import CropSettings, DetectionSettings

log = logging.getLogger(__name__)


class MtcnnDetector(FaceDetector):
    """MTCNN (weights from the ``mtcnn`` package, run on LiteRT) on frames downscaled to ``detect_max_side``.

    The three stages are driven by ``mtcnn_lite`` instead of ``MTCNN.detect_faces``, which maps
    every error to "no faces" and needs TensorFlow; here a batch with no candidates stops early and
    any other error is raised. ``networks_dir`` caches the networks converted to ``.tflite``; by
    default, the configured one (``REALNESS_DETECTION_NETWORKS_DIR``, else ``<home>/weights``).
    """

    name = "mtcnn"

    def __init__(self, settings: DetectionSettings, networks_dir: Path | None = None):
        self.settings = settings
        self.networks_dir = networks_dir if networks_dir is not None else RealnessConfig.from_env().resolved_networks_dir
        self._mtcnn: LiteMtcnn | None = None
        self._counts: Counter[str] = Counter()

    def load(self) -> None:
        self._networks()

    def _networks(self) -> LiteMtcnn:
        if self._mtcnn is None:
            threads = self.settings.threads or os.cpu_count() or 1
            self._mtcnn = LiteMtcnn(converted_networks(self.networks_dir), self.settings, threads=threads)
        return self._mtcnn

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        results: list[FrameFaces] = [FrameFaces([]) for _ in frames]
        small = [self._prepare(frame) for frame in frames]
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(small):
            by_shape.setdefault(image.shape, []).append(i)  # a batch must share one size (no padding)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.settings.batch_size):
                chunk = indices[start:start + self.settings.batch_size]
                found = self._detect_batch(np.stack([small[i] for i in chunk]))
                for i, detections in zip(chunk, found):
                    full_h, full_w = frames[i].shape[:2]
                    small_h, small_w = small[i].shape[:2]
                    results[i].detections = [_rescale(d, full_w / small_w, full_h / small_h) for d in detections]
        self._counts["frames"] += len(frames)
        self._counts["faces"] += sum(len(r.detections) for r in results)
        return results

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        """BGR full-resolution frame -> RGB frame whose long side is at most ``detect_max_side``."""
        height, width = frame.shape[:2]
        scale = self.settings.detect_max_side / max(height, width)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _detect_batch(self, images: np.ndarray) -> list[list[Detection]]:
        """Faces in a stack of same-sized RGB images, in those images' pixels."""
        rows = self._networks().detect(images)
        self._counts["batches"] += 1
        height, width = images.shape[1:3]
        found: list[list[Detection]] = [[] for _ in range(len(images))]
        # A row: image index, x1, y1, x2, y2, confidence, five landmark x's, five landmark y's.
        for row in rows:
            confidence = float(row[5])
            if confidence < self.settings.min_confidence:
                self._counts["low_confidence"] += 1
                continue
            x1, y1 = max(0.0, float(row[1])), max(0.0, float(row[2]))
            x2, y2 = min(float(width), float(row[3])), min(float(height), float(row[4]))
            if x2 <= x1 or y2 <= y1:  # a box regressed off the image
                continue
            landmarks = tuple(float(v) for pair in zip(row[6:11], row[11:16]) for v in pair)
            found[int(row[0])].append(Detection((x1, y1, x2 - x1, y2 - y1), confidence, landmarks, self.name))
        return found


def _rescale(detection: Detection, sx: float, sy: float) -> Detection:
    x, y, w, h = detection.box
    landmarks = None
    if detection.landmarks is not None:
        landmarks = tuple(v * (sx if i % 2 == 0 else sy) for i, v in enumerate(detection.landmarks))
    return Detection((x * sx, y * sy, w * sx, h * sy), detection.confidence, landmarks, detection.detector)


def merge_detections(a: list[Detection], b: list[Detection], iou_threshold: float) -> list[Detection]:
    """One list of faces from two detectors' lists for the same frame (rule in docs/detection.md).

    Pairs are matched greedily, highest IoU first, when their IoU is above ``iou_threshold``; a pair
    becomes one "both" face with the confidence-weighted mean box, the higher confidence and ``a``'s
    landmarks (else ``b``'s). Unmatched faces are kept as they are.
    """
    pairs = sorted(((iou(da.box, db.box), i, j) for i, da in enumerate(a) for j, db in enumerate(b)), reverse=True)
    partner: dict[int, int] = {}
    taken: set[int] = set()
    for overlap, i, j in pairs:
        if overlap <= iou_threshold:
            break
        if i not in partner and j not in taken:
            partner[i] = j
            taken.add(j)
    merged = [_merge_pair(da, b[partner[i]]) if i in partner else da for i, da in enumerate(a)]
    return merged + [db for j, db in enumerate(b) if j not in taken]


def _merge_pair(a: Detection, b: Detection) -> Detection:
    total = a.confidence + b.confidence
    wa, wb = (a.confidence / total, b.confidence / total) if total > 0 else (0.5, 0.5)
    box = tuple(wa * va + wb * vb for va, vb in zip(a.box, b.box))
    landmarks = a.landmarks if a.landmarks is not None else b.landmarks
    return Detection(box, max(a.confidence, b.confidence), landmarks, "both")


class MergingDetector(FaceDetector):
    """Runs two detectors on the same frames at once and merges their faces frame by frame."""

    def __init__(self, primary: FaceDetector, secondary: FaceDetector, iou_threshold: float):
        self.primary = primary
        self.secondary = secondary
        self.iou_threshold = iou_threshold
        self.name = f"{primary.name}+{secondary.name}"
        self._counts: Counter[str] = Counter()

    def load(self) -> None:
        self.primary.load()
        self.secondary.load()

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        # The secondary is a remote API: its waiting overlaps MTCNN's computing.
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="detect") as pool:
            jobs = [pool.submit(detector.detect, frames) for detector in (self.primary, self.secondary)]
            primary_found, secondary_found = (job.result() for job in jobs)
        results = []
        for first, second in zip(primary_found, secondary_found, strict=True):
            merged = merge_detections(first.detections, second.detections, self.iou_threshold)
            results.append(FrameFaces(merged, azure_status=second.azure_status))
            self._count(first, second, merged)
        return results

    def _count(self, first: FrameFaces, second: FrameFaces, merged: list[Detection]) -> None:
        p, s = self.primary.name, self.secondary.name
        self._counts["frames"] += 1
        for detection in merged:
            key = "both" if detection.detector == "both" else f"{detection.detector}_only"
            self._counts[key] += 1
        if second.azure_status is not None and not second.azure_status.startswith(("ok", "cached")):
            self._counts[f"frames_{p}_only"] += 1  # the secondary skipped or failed this frame
        if first.detections and not second.detections:
            self._counts[f"frames_found_by_{p}_only"] += 1
        elif second.detections and not first.detections:
            self._counts[f"frames_found_by_{s}_only"] += 1

    def stats(self) -> dict[str, int]:
        p, s = self.primary.name, self.secondary.name
        keys = ["frames", f"{p}_only", f"{s}_only", "both", f"frames_{p}_only", f"frames_found_by_{p}_only",
                f"frames_found_by_{s}_only"]
        counts = {key: self._counts[key] for key in keys}
        counts.update({f"{p}_{k}": v for k, v in self.primary.stats().items()})
        counts.update({f"{s}_{k}": v for k, v in self.secondary.stats().items()})
        return counts


def dominant_faces(detections: list[Detection], max_faces: int) -> list[Detection]:
    """The ``max_faces`` largest, most confident faces; ``[0]`` is the frame's dominant face."""
    return sorted(detections, key=lambda d: d.box[2] * d.box[3] * d.confidence, reverse=True)[:max_faces]


def crop_box(image_shape: tuple[int, ...], box: Box, margin: float) -> tuple[int, int, int, int]:
    """The pixel region ``x0, y0, x1, y1`` that ``crop_face`` cuts: the box plus margin, clamped to the image."""
    height, width = image_shape[:2]
    x, y, w, h = box
    x0 = max(0, math.floor(x - margin * w))
    y0 = max(0, math.floor(y - margin * h))
    x1 = min(width, math.ceil(x + w + margin * w))
    y1 = min(height, math.ceil(y + h + margin * h))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")
    return x0, y0, x1, y1


def crop_face(image: np.ndarray, box: Box, settings: CropSettings) -> np.ndarray:
    """THE crop convention: box + ``margin`` on each side, clamped to the image, long side scaled
    to ``size`` with the aspect kept, centred on a black ``size`` x ``size`` canvas. BGR uint8.

    Keeping the aspect (rather than stretching) keeps face shape, which face-swap artefacts
    distort; zero padding keeps crops at the frame border the same scale as the others.
    """
    x0, y0, x1, y1 = crop_box(image.shape, box, settings.margin)
    region = image[y0:y1, x0:x1]
    size = settings.size
    scale = size / max(region.shape[:2])
    new_w = min(size, max(1, round(region.shape[1] * scale)))
    new_h = min(size, max(1, round(region.shape[0] * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(region, (new_w, new_h), interpolation=interpolation)
    canvas = np.zeros((size, size, 3), np.uint8)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return canvas


def build_detector(cfg: RealnessConfig) -> FaceDetector:
    """MTCNN alone, or MTCNN merged with Azure Face when an endpoint and key are configured."""
    mtcnn = MtcnnDetector(cfg.detection, cfg.resolved_networks_dir)
    if not cfg.azure.enabled:
        log.info("Azure Face not configured; detecting with MTCNN only")
        return mtcnn
    from realness_tasks.azure_face import AzureFaceDetector

    azure = AzureFaceDetector(cfg.azure, cache_dir=Path(cfg.home) / "azure-cache")
    return MergingDetector(mtcnn, azure, cfg.detection.merge_iou)
