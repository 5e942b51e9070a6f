"""MTCNN on LiteRT: the ``mtcnn`` package's networks and steps, without importing TensorFlow.

Why: every mapped ``extract_faces`` task is a fresh process, and importing TensorFlow for MTCNN
would be most of a task's fixed cost (``docs/scan.md``). LiteRT runs the same networks and imports in a
fraction of the time.

The networks: ``mtcnn`` 1.0.0 ships P-Net, R-Net and O-Net as weight files and builds them in
Keras. :func:`converted_networks` does that once, with TensorFlow, converts each to an fp32
``.tflite`` file and caches the three under ``cache_dir`` (``<home>/weights``), named by the
weight files' sha256; a warm cache is read with LiteRT alone. P-Net is converted with a dynamic
height and width, since each pyramid level has its own size.

The steps between the networks are ported from ``mtcnn`` 1.0.0 (MIT licence, (c) 2019-2024 Iván de
Paz Centeno; ``mtcnn.stages`` and ``mtcnn.utils``), because importing any ``mtcnn`` module imports
TensorFlow. They keep the package's arithmetic, orderings and quirks (its NMS drops a box that
overlaps any higher-scored box, suppressed or not), so the faces are the TensorFlow path's:
pyramid levels are resized with OpenCV's ``INTER_AREA``, which agrees with
``tf.image.resize(method="area")`` within 1e-4 on the normalised image, and :func:`crop_and_resize`
is ``tf.image.crop_and_resize``'s bilinear sampling in numpy. ``tests/test_mtcnn_lite.py`` checks
the whole detector against the TensorFlow path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realness_tasks.settings import DetectionSettings

log = logging.getLogger(__name__)

PNET_WINDOW = 12  # P-Net looks at 12x12 windows: a pyramid level smaller than this has no output
PNET_STRIDE = 2  # one P-Net output cell per 2 input pixels
PYRAMID_FACTOR = 0.709  # MTCNN's scale step between pyramid levels (area halves every two levels)
PNET_NMS_PER_SCALE = 0.5  # mtcnn's defaults for the rounds of non-maximum suppression
PNET_NMS_ACROSS_SCALES = 0.7
RNET_NMS = 0.7
ONET_NMS = 0.7
RNET_SIDE, ONET_SIDE = 24, 48  # R-Net and O-Net look at square crops of the candidates, this many px a side
# The outputs, told apart by their last dimension: box offsets, face/not-face scores, landmarks.
OFFSETS, SCORES, LANDMARKS = 4, 2, 10


@dataclass(frozen=True)
class NetworkSpec:
    """What converting and running one of the three networks needs to know of it."""

    side: int | None  # the input's height and width; None: any (P-Net, one size per pyramid level)
    weights: str  # the weight file the mtcnn package ships
    outputs: frozenset[int]


NETWORKS = {"pnet": NetworkSpec(None, "pnet.lz4", frozenset({OFFSETS, SCORES})),
            "rnet": NetworkSpec(RNET_SIDE, "rnet.lz4", frozenset({OFFSETS, SCORES})),
            "onet": NetworkSpec(ONET_SIDE, "onet.lz4", frozenset({OFFSETS, SCORES, LANDMARKS}))}


def pyramid_scales(min_side: int, min_face_size: int, factor: float = PYRAMID_FACTOR) -> list[float]:
    """MTCNN's image-pyramid scales for an image whose short side is ``min_side``.

    mtcnn 1.0.0 counts pyramid levels from the image size alone, ignoring that ``min_face_size``
    shrinks the first level: above ~20 px the last levels fall under P-Net's 12 px window, the
    convolution fails, and ``MTCNN.detect_faces`` swallows the error and reports no face for the
    whole batch. This pyramid stops at the last level that is still at least 12 px.
    """
    scales: list[float] = []
    scale = PNET_WINDOW / min_face_size
    while min_side * scale >= PNET_WINDOW:
        scales.append(scale)
        scale *= factor
    return scales


# ---------------------------------------------------------------- the networks: conversion and cache

def source_weights_dir() -> Path:
    """Where the installed ``mtcnn`` package keeps its weight files, found without importing it."""
    spec = importlib.util.find_spec("mtcnn")  # locates the package; its __init__ (which imports TF) does not run
    if spec is None or spec.origin is None:
        raise FileNotFoundError("MTCNN weights: the package mtcnn is not installed (pip install mtcnn==1.0.0, "
                                "as requirements.txt pins)")
    directory = Path(spec.origin).parent / "assets" / "weights"
    missing = [spec.weights for spec in NETWORKS.values() if not (directory / spec.weights).is_file()]
    if missing:
        raise FileNotFoundError(f"MTCNN weights: {', '.join(missing)} missing from {directory}")
    return directory


def weights_sha256(directory: Path) -> str:
    """One sha256 over the three weight files (name and content), which names the converted files."""
    digest = hashlib.sha256()
    for spec in NETWORKS.values():
        digest.update(spec.weights.encode())
        digest.update((directory / spec.weights).read_bytes())
    return digest.hexdigest()


def converted_networks(cache_dir: Path) -> dict[str, Path]:
    """The three ``.tflite`` files for the installed weights, converting them (with TensorFlow) if absent.

    A cold cache is the only case that imports TensorFlow; files are written atomically, so tasks
    converting at the same time never read half a file.
    """
    source = source_weights_dir()
    sha = weights_sha256(source)
    paths = {name: cache_dir / f"mtcnn-{name}-{sha[:16]}.tflite" for name in NETWORKS}
    missing = [name for name, path in paths.items() if not path.is_file()]
    if missing:
        log.warning("MTCNN: converting %s from %s to LiteRT files in %s, with TensorFlow (once per weights; "
                    "later tasks load them without TensorFlow)", ", ".join(missing), source, cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        for name in missing:
            partial = paths[name].with_name(f".{paths[name].name}.{os.getpid()}.partial")
            partial.write_bytes(_convert(name, source))
            os.replace(partial, paths[name])
    return paths


def _convert(name: str, source: Path) -> bytes:
    """One network as an fp32 ``.tflite`` flatbuffer, any batch size (and any height/width for P-Net).

    Through a SavedModel, as ``inference.export_tflite`` does and for the same reason: converting a
    traced function of a Keras 3 model directly leaves its weights unresolved.
    """
    import keras
    import tensorflow as tf
    from mtcnn.stages import StageONet, StagePNet, StageRNet

    network = NETWORKS[name]
    stage = {"pnet": StagePNet, "rnet": StageRNet, "onet": StageONet}[name]
    model = stage(weights=str(source / network.weights)).model  # the hashed file, not one named alike in the cwd
    spec = tf.TensorSpec([None, network.side, network.side, 3], tf.float32, name="images")
    with tempfile.TemporaryDirectory(prefix="realness-mtcnn-") as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda images: model(images), input_signature=[spec])
        archive.write_out(saved_model_dir, verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(saved_model_dir).convert()


class LiteNetwork:
    """One converted network on LiteRT (XNNPACK), with one interpreter per input height and width.

    P-Net sees one size per pyramid level and the frames of a video share a size, so keeping an
    interpreter per size avoids re-planning the graph on every level; an interpreter is only
    resized when the batch size changes.
    """

    def __init__(self, path: Path, outputs: frozenset[int], threads: int):
        self.path = path
        self.outputs = outputs
        self.threads = threads
        self._interpreters: dict[tuple[int, ...], tuple[Any, tuple[int, ...]]] = {}

    def __call__(self, batch: np.ndarray) -> dict[int, np.ndarray]:
        """Outputs for a float32 ``[n, h, w, 3]`` batch, keyed by their last dimension (OFFSETS, SCORES, LANDMARKS)."""
        from ai_edge_litert.interpreter import Interpreter

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        interpreter, allocated = self._interpreters.get(batch.shape[1:], (None, ()))
        if interpreter is None:
            interpreter = Interpreter(model_path=str(self.path), num_threads=self.threads)
        index = interpreter.get_input_details()[0]["index"]
        if allocated != batch.shape:
            interpreter.resize_tensor_input(index, list(batch.shape), strict=True)
            interpreter.allocate_tensors()
            self._interpreters[batch.shape[1:]] = (interpreter, batch.shape)
        interpreter.set_tensor(index, batch)
        interpreter.invoke()
        found = {int(d["shape"][-1]): interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
        if set(found) != self.outputs:
            raise ValueError(f"{self.path}: outputs of sizes {sorted(found)}, expected {sorted(self.outputs)}; "
                             f"delete the file to have it converted again")
        return found


# ---------------------------------------------------------------- the three stages

class LiteMtcnn:
    """MTCNN's three stages on a batch of same-sized RGB images: P-Net proposes, R-Net and O-Net refine."""

    def __init__(self, networks: dict[str, Path], settings: DetectionSettings, threads: int):
        self.settings = settings
        self.pnet, self.rnet, self.onet = (LiteNetwork(networks[name], spec.outputs, threads)
                                           for name, spec in NETWORKS.items())

    def detect(self, images: np.ndarray) -> np.ndarray:
        """Faces in ``[n, h, w, 3]`` RGB images, one row each: image index, x1, y1, x2, y2, confidence,
        five landmark x's, five landmark y's (eyes, nose, mouth corners), in the images' pixels."""
        normalized = (images.astype(np.float32) - 127.5) / 128
        rows = self.propose(normalized)
        if len(rows):
            rows = self.refine(normalized, rows)
        return self.output(normalized, rows) if len(rows) else np.empty((0, 16))

    def propose(self, normalized: np.ndarray) -> np.ndarray:
        """P-Net candidate boxes over the floored pyramid (mtcnn's StagePNet, with :func:`pyramid_scales`)."""
        height, width = normalized.shape[1:3]
        per_scale = []
        for scale in pyramid_scales(min(height, width), self.settings.min_face_size):
            outputs = self.pnet(resize_area(normalized, scale))
            boxes = generate_bounding_box(outputs[OFFSETS], outputs[SCORES], self.settings.threshold_pnet)
            boxes[:, 1:5] = boxes[:, 1:5] / scale
            per_scale.append(nms(boxes, PNET_NMS_PER_SCALE, initial_sort=False))
        if not per_scale:  # the image is smaller than min_face_size
            return np.empty((0, 6))
        return resize_to_square(nms(np.concatenate(per_scale), PNET_NMS_ACROSS_SCALES, initial_sort=True))

    def refine(self, normalized: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """R-Net's scores and box offsets on 24 px crops of the candidates (mtcnn's StageRNet)."""
        outputs = self.rnet(crop_and_resize(normalized, rows, RNET_SIDE))
        rows[:, 5] = outputs[SCORES][:, 1]
        rows = adjust_boxes(rows, outputs[OFFSETS])
        rows = rows[rows[:, 5] > self.settings.threshold_rnet]
        return resize_to_square(nms(rows, RNET_NMS, initial_sort=True))

    def output(self, normalized: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """O-Net's scores, box offsets and landmarks on 48 px crops (mtcnn's StageONet)."""
        outputs = self.onet(crop_and_resize(normalized, rows, ONET_SIDE))
        landmarks = outputs[LANDMARKS].copy()
        w = rows[:, 3:4] - rows[:, 1:2] + 1
        h = rows[:, 4:5] - rows[:, 2:3] + 1
        landmarks = np.concatenate([w * landmarks[:, 0:5] + rows[:, 1:2] - 1,
                                    h * landmarks[:, 5:10] + rows[:, 2:3] - 1], axis=1)
        rows[:, 5] = outputs[SCORES][:, 1]
        rows = np.concatenate([adjust_boxes(rows, outputs[OFFSETS]), landmarks], axis=-1)
        rows = rows[rows[:, 5] > self.settings.threshold_onet]
        return nms(rows, ONET_NMS, method="min", initial_sort=True)


# ---------------------------------------------------------------- image steps

def resize_area(images: np.ndarray, scale: float) -> np.ndarray:
    """A pyramid level: each image scaled by ``scale`` with area averaging.

    The size is truncated from ``shape * scale`` as ``tf.image.resize`` truncates it in mtcnn's
    ``scale_images``.
    """
    height, width = (int(v) for v in np.asarray(images.shape[1:3]) * scale)
    return np.stack([cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) for image in images])


def crop_and_resize(images: np.ndarray, rows: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` bilinear crops of each row's box (``tf.image.crop_and_resize``, as mtcnn calls it).

    Boxes are given to TF as fractions of the image size and sampled over ``size - 1`` steps of
    ``(fraction) * (side - 1)``; samples outside the image are 0. Arithmetic in float32, as TF's kernel.
    """
    _, height, width, _ = images.shape
    boxes = (rows[:, [2, 1, 4, 3]] / np.asarray([[height, width, height, width]])).astype(np.float32)
    steps = np.arange(size, dtype=np.float32)

    def sample_points(start: np.ndarray, end: np.ndarray, side: int) -> tuple[np.ndarray, ...]:
        last = np.float32(side - 1)
        where = start[:, None] * last + steps[None, :] * ((end - start) * last / np.float32(size - 1))[:, None]
        inside = (where >= 0) & (where <= last)
        low = np.clip(np.floor(where), 0, side - 1).astype(np.intp)
        high = np.clip(np.ceil(where), 0, side - 1).astype(np.intp)
        return low, high, (where - np.floor(where))[..., None], inside

    top, bottom, y_lerp, y_inside = sample_points(boxes[:, 0], boxes[:, 2], height)
    left, right, x_lerp, x_inside = sample_points(boxes[:, 1], boxes[:, 3], width)
    index = rows[:, 0].astype(np.intp)[:, None, None]

    def row_of(y: np.ndarray) -> np.ndarray:
        at_left = images[index, y[:, :, None], left[:, None, :]]
        at_right = images[index, y[:, :, None], right[:, None, :]]
        return at_left + (at_right - at_left) * x_lerp[:, None, :, :]

    upper, lower = row_of(top), row_of(bottom)
    crops = upper + (lower - upper) * y_lerp[:, :, None, :]
    crops[~(y_inside[:, :, None] & x_inside[:, None, :])] = 0
    return crops


# ---------------------------------------------------------------- box steps

def generate_bounding_box(offsets: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """P-Net's cells scoring above ``threshold`` as boxes (image, x1, y1, x2, y2, score), best first.

    As mtcnn places them: cell (y, x) spans pixels ``2x + 1`` to ``2x + 12``, and the offsets are
    fractions of that span's 11 px.
    """
    score = scores[:, :, :, 1]
    image, y, x = np.where(score > threshold)
    dx1, dy1, dx2, dy2 = offsets[image, y, x].astype(np.float64).T  # mtcnn's float64 arithmetic
    left, top = x * PNET_STRIDE + 1, y * PNET_STRIDE + 1
    span = PNET_WINDOW - 1
    boxes = np.stack([image, left + dx1 * span, top + dy1 * span, left + span + dx2 * span, top + span + dy2 * span,
                      score[image, y, x]], axis=0).T
    return _by_score_descending(boxes, boxes[:, -1])


def _by_score_descending(rows: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return rows[np.argsort(scores)[::-1]]  # mtcnn's (unstable) sort: ties keep its order


def overlap(boxes: np.ndarray, method: str = "union") -> np.ndarray:
    """Pairwise overlap of ``[n, 4]`` x1, y1, x2, y2 boxes: IoU ("union") or intersection over the smaller ("min")."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inter_w = np.maximum(0, np.minimum(boxes[None, :, 2], boxes[:, None, 2]) - np.maximum(boxes[None, :, 0],
                                                                                         boxes[:, None, 0]))
    inter_h = np.maximum(0, np.minimum(boxes[None, :, 3], boxes[:, None, 3]) - np.maximum(boxes[None, :, 1],
                                                                                         boxes[:, None, 1]))
    inter = inter_w * inter_h
    if method == "union":
        return inter / (area[:, None] + area[None, :] - inter)
    if method == "min":
        return inter / np.minimum(area[:, None], area[None, :])
    raise ValueError(f"overlap method {method!r}: expected 'union' or 'min'")


def nms(rows: np.ndarray, threshold: float, method: str = "union", initial_sort: bool = True) -> np.ndarray:
    """mtcnn's non-maximum suppression, image by image (rows grouped by ascending image index).

    A row is dropped when any row before it (in score order) overlaps it above ``threshold``,
    whether or not that row was itself dropped.
    """
    if initial_sort:
        rows = _by_score_descending(rows, rows[:, 5])
    kept = []
    for image in np.unique(rows[:, 0]):
        same = rows[rows[:, 0] == image]
        earlier = np.triu(np.ones((len(same), len(same))), k=1)
        kept.append(same[((overlap(same[:, 1:5], method) > threshold) * earlier).sum(axis=0) == 0])
    return np.concatenate(kept) if kept else np.empty((0, 6))


def resize_to_square(rows: np.ndarray) -> np.ndarray:
    """Each box grown to a square on its longer side, about the same centre."""
    rows = rows.copy()
    h = rows[:, 4] - rows[:, 2]
    w = rows[:, 3] - rows[:, 1]
    side = np.maximum(w, h)
    rows[:, 1] = rows[:, 1] + w * 0.5 - side * 0.5
    rows[:, 2] = rows[:, 2] + h * 0.5 - side * 0.5
    rows[:, 3:5] = rows[:, 1:3] + side[:, None]
    return rows


def adjust_boxes(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by a network's offsets, given as fractions of the box's size (which counts both ends)."""
    rows = rows.copy()
    w = rows[:, 3] - rows[:, 1] + 1
    h = rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += offsets * np.stack([w, h, w, h], axis=-1)
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Convert MTCNN's networks to LiteRT files in DIRECTORY "
                                                 "(the Docker image does this at build time).")
    parser.add_argument("directory", type=Path)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for converted in converted_networks(parser.parse_args().directory).values():
        print(converted)
