"""The scoring engines: the trained Keras classifier exported to TensorFlow Lite, run by LiteRT with XNNPACK.

Why not Keras ``predict``: on the CPU workers that score videos, the same network runs
several times faster through the LiteRT interpreter and its XNNPACK delegate
(``bench/bench_inference.py`` measures both; ``docs/scoring.md`` has the figures). Two exports:

- ``fp32`` (``model.tflite``): no quantisation, so its probabilities equal Keras' within float
  rounding; :func:`check_agreement` proves that for every model when it is registered.
- ``int8`` (``model-int8.tflite``): full-integer quantised (int8 weights and activations, float
  input and output), calibrated on the model's own training faces. Its probabilities differ from
  Keras' by more than rounding, so training measures it instead of bounding it: the largest
  difference and the AUC of both on the held-out faces go into ``metrics.json``.

``REALNESS_SCORING_ENGINE`` picks the one scoring uses. The interpreter is LiteRT's
(``ai-edge-litert``, pinned in requirements.txt), the successor of the deprecated
``tf.lite.Interpreter``; TensorFlow is still what converts the model.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

# The file of each engine (settings.ENGINES) in a model's version folder.
ENGINE_FILES = {"fp32": "model.tflite", "int8": "model-int8.tflite"}
LITERT_REQUIREMENT = "ai-edge-litert==2.3.0"


class EngineDisagreement(RuntimeError):
    """The TFLite export does not reproduce the Keras model's probabilities."""


def export_tflite(model: keras.Model, path: Path, engine: str = "fp32",
                  calibration_faces: np.ndarray | None = None) -> None:
    """Write ``model`` as a ``.tflite`` file taking ``[batch, s, s, 3]`` float32 with any batch size.

    ``engine`` "fp32" converts without quantisation. "int8" quantises weights and activations to
    int8 with every op an int8 builtin (conversion fails rather than leave an op in float), input and
    output staying float32 so the engine is a drop-in; the activation ranges come from running
    ``calibration_faces`` (``[n, s, s, 3]`` RGB 0..255, real faces: ranges from anything else would
    not fit what scoring sees) through the model.

    The model is first exported as a SavedModel whose one endpoint calls it with
    ``training=False`` (dropout off, BatchNorm on its moving statistics), then converted. This
    is the route TF's own ``from_keras_model`` takes for Keras 3, minus its printout of every
    variable; converting a traced ``tf.function`` directly leaves the weights as unresolved
    resources and the interpreter returns NaN.
    """
    import keras
    import tensorflow as tf

    if engine not in ENGINE_FILES:
        raise ValueError(f"unknown engine {engine!r}: choose one of {', '.join(ENGINE_FILES)}")
    if engine == "int8" and (calibration_faces is None or len(calibration_faces) == 0):
        raise ValueError("an int8 export needs calibration faces (real face crops the model was trained on)")
    input_spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name="faces")
    with tempfile.TemporaryDirectory(prefix="realness-export-") as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda faces: model(faces, training=False), input_signature=[input_spec])
        archive.write_out(saved_model_dir, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir)
        if engine == "int8":
            faces = np.asarray(calibration_faces, dtype=np.float32)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.representative_dataset = lambda: ([face[None]] for face in faces)
        flatbuffer = converter.convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(flatbuffer)
    os.replace(partial, path)
    log.info("exported %s engine %s (%.1f MB)", engine, path, len(flatbuffer) / 1e6)


def _interpreter_class():
    """LiteRT's interpreter; its absence is an installation error, not a reason to run another engine."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ImportError(f"the scoring engine needs LiteRT: pip install {LITERT_REQUIREMENT} "
                          "(pinned in requirements.txt)") from exc
    return Interpreter


class TFLiteScorer:
    """Fake probabilities from a ``.tflite`` classifier (either engine) on the CPU, XNNPACK-accelerated.

    The input tensor is resized to each batch's size (only when it changes), so a run of
    full batches reuses one allocation and the last, shorter batch costs one re-allocation.
    """

    def __init__(self, path: Path, threads: int = 2):
        if not path.is_file():
            raise FileNotFoundError(f"no engine file {path}")
        self.path = path
        self.interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
        input_details = self.interpreter.get_input_details()[0]
        self._input_index = input_details["index"]
        self._output_index = self.interpreter.get_output_details()[0]["index"]
        self.face_shape = tuple(int(d) for d in input_details["shape"][1:])
        self._allocated_shape: tuple[int, ...] | None = None

    @property
    def image_size(self) -> int:
        """The side, in pixels, of the face crops the engine takes."""
        return self.face_shape[0]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """``[n, s, s, 3]`` float32 RGB 0..255 -> ``[n]`` probabilities that each face is fake."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self.face_shape:
            raise ValueError(f"batch of shape {batch.shape} does not fit the model's input [n, {self.face_shape}]")
        if len(batch) == 0:
            return np.empty(0, dtype=np.float32)
        if batch.shape != self._allocated_shape:
            self.interpreter.resize_tensor_input(self._input_index, list(batch.shape), strict=True)
            self.interpreter.allocate_tensors()
            self._allocated_shape = batch.shape
        self.interpreter.set_tensor(self._input_index, batch)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._output_index).reshape(len(batch)).copy()


def score_crops(scorer: TFLiteScorer, jpegs: Sequence[bytes], batch_size: int = 8) -> np.ndarray:
    """Fake probabilities of JPEG crops, decoded and scored a few batches at a time (memory stays flat)."""
    from realness_tasks.crops import crop_decoder

    decode = crop_decoder(scorer.image_size)
    scores = []
    for start in range(0, len(jpegs), batch_size * 8):
        images = decode(jpegs[start:start + batch_size * 8])
        scores += [scorer.predict(images[i:i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate(scores) if scores else np.empty(0, dtype=np.float32)


def check_agreement(model: keras.Model, tflite_path: Path, sample: np.ndarray, tolerance: float = 1e-4) -> float:
    """Largest absolute difference between Keras' and the fp32 engine's probabilities on ``sample``.

    Raises :class:`EngineDisagreement` above ``tolerance`` (NaN included), so a bad export is
    never registered.
    """
    sample = np.asarray(sample, dtype=np.float32)
    # Keras' compiled predict, in small batches: an eager call holds far more memory (see model.predict_probabilities)
    expected = model.predict(sample, batch_size=8, verbose=0).reshape(len(sample)) if len(sample) else np.zeros(0)
    actual = TFLiteScorer(tflite_path).predict(sample)
    difference = float(np.max(np.abs(expected - actual))) if len(sample) else 0.0
    if not difference <= tolerance:
        raise EngineDisagreement(f"{tflite_path}: TFLite and Keras probabilities differ by {difference:.3g} "
                                 f"(tolerance {tolerance:g}) on {len(sample)} faces")
    log.info("%s agrees with Keras within %.3g on %d faces", tflite_path, difference, len(sample))
    return difference
