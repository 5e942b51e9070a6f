"""The scoring engine: the trained Keras classifier exported to TensorFlow Lite, run with XNNPACK.

Why not Keras ``predict``: on the CPU workers that score videos, the same network runs
several times faster through the TFLite interpreter and its XNNPACK delegate
(``bench/bench_inference.py`` measures both; ``docs/scoring.md`` has the figures). The export is
fp32 with no quantisation, so the engine's probabilities equal Keras' within float rounding;
:func:`check_agreement` proves that for every model when it is registered.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)


class EngineDisagreement(RuntimeError):
    """The TFLite export does not reproduce the Keras model's probabilities."""


def export_tflite(model: keras.Model, path: Path) -> None:
    """Write ``model`` as an fp32 ``.tflite`` file taking ``[batch, s, s, 3]`` float32 with any batch size.

    The model is first exported as a SavedModel whose one endpoint calls it with
    ``training=False`` (dropout off, BatchNorm on its moving statistics), then converted. This
    is the route TF's own ``from_keras_model`` takes for Keras 3, minus its printout of every
    variable; converting a traced ``tf.function`` directly leaves the weights as unresolved
    resources and the interpreter returns NaN.
    """
    import keras
    import tensorflow as tf

    input_spec = tf.TensorSpec([None, *model.inputs[0].shape[1:]], tf.float32, name="faces")
    with tempfile.TemporaryDirectory(prefix="realness-export-") as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", lambda faces: model(faces, training=False), input_signature=[input_spec])
        archive.write_out(saved_model_dir, verbose=False)
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir).convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(flatbuffer)
    os.replace(partial, path)
    log.info("exported %s (%.1f MB)", path, len(flatbuffer) / 1e6)


def _interpreter_class():
    """LiteRT's interpreter when the ``ai_edge_litert`` package is installed, else TensorFlow's (the same engine)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class TFLiteScorer:
    """Fake probabilities from a ``.tflite`` classifier on the CPU, XNNPACK-accelerated.

    The input tensor is resized to each batch's size (only when it changes), so a run of
    full batches reuses one allocation and the last, shorter batch costs one re-allocation.
    """

    def __init__(self, path: Path, threads: int = 2):
        with warnings.catch_warnings():  # TF's copy warns that LiteRT will replace it; it is the same engine
            warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
            self.interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
        input_details = self.interpreter.get_input_details()[0]
        self._input_index = input_details["index"]
        self._output_index = self.interpreter.get_output_details()[0]["index"]
        self.face_shape = tuple(int(d) for d in input_details["shape"][1:])
        self._allocated_shape: tuple[int, ...] | None = None

    @property
    def image_size(self) -> int:
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


def check_agreement(model: keras.Model, tflite_path: Path, sample: np.ndarray, tolerance: float = 1e-4) -> float:
    """Largest absolute difference between Keras' and the engine's probabilities on ``sample``.

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
