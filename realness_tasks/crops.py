"""The shared crop decoder: stored JPEG face crops -> model input.

``decode_crops`` is the one place where stored JPEG crops become model input; training's tf.data
pipeline (``augment.pipeline``), the scoring engine and the Grad-CAM reports all call it, so a face
is seen identically in each. ``model`` re-exports both functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf


def decode_crops(jpegs: Sequence[bytes] | tf.Tensor, image_size: int) -> tf.Tensor:
    """JPEG crops -> float32 RGB 0..255 tensor ``[n, image_size, image_size, 3]``.

    Decodes with ``tf.io.decode_jpeg(channels=3)`` and resizes bilinearly with antialiasing,
    so downscaling a 224 px crop does not alias. Works eagerly and inside ``tf.data.map``.
    """
    import tensorflow as tf

    if not isinstance(jpegs, tf.Tensor):
        jpegs = tf.constant(list(jpegs), dtype=tf.string, shape=[len(jpegs)])

    def decode_one(jpeg: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(jpeg, channels=3)
        return tf.image.resize(image, [image_size, image_size], method="bilinear", antialias=True)

    return tf.map_fn(decode_one, jpegs,
                     fn_output_signature=tf.TensorSpec([image_size, image_size, 3], tf.float32))


def crop_decoder(image_size: int) -> Callable[[Sequence[bytes]], np.ndarray]:
    """:func:`decode_crops` traced once as a TF graph: the same ops, faster than calling them eagerly."""
    import tensorflow as tf

    graph = tf.function(lambda jpegs: decode_crops(jpegs, image_size),
                        input_signature=[tf.TensorSpec([None], tf.string)])
    return lambda jpegs: graph(tf.constant(list(jpegs), dtype=tf.string, shape=[len(jpegs)])).numpy()
