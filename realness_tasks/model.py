"""The real/fake classifier: the shared crop decoder and the EfficientNetB0-based network.

``decode_crops`` is the one place where stored JPEG crops become model input; training's
tf.data pipeline and the scoring engine both call it, so a face is seen identically in both.
The network takes float32 RGB in 0..255: EfficientNetB0 carries its own input normalisation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

log = logging.getLogger(__name__)

BACKBONE_NAME = "efficientnetb0"
KERAS_CACHE_WEIGHTS = "efficientnetb0_notop.h5"


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


def keras_cache_weights() -> Path:
    """Where Keras caches the EfficientNetB0 no-top ImageNet weights (honours ``KERAS_HOME``)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "models" / KERAS_CACHE_WEIGHTS


def resolve_imagenet_weights(configured: str | None) -> Path | None:
    """The local ImageNet weights file to start from, or None (never downloads: no internet in tasks)."""
    candidates = [Path(configured)] if configured else []
    candidates.append(keras_cache_weights())
    for path in candidates:
        if path.is_file():
            return path
    if configured:
        log.warning("configured ImageNet weights %s not found", configured)
    return None


def build_classifier(image_size: int, dropout: float, weights_path: str | None, seed: int) -> keras.Model:
    """EfficientNetB0 (no top, average pooled) + Dense 512 + Dropout + Dense 128 + Dropout + Dense 1 sigmoid.

    Starts from local ImageNet weights when there are any, else from a random initialisation (then
    call :func:`calibrate_batchnorm` before training). The backbone is always called with
    ``training=False``, so its BatchNorm statistics stay fixed in both phases, as Keras'
    transfer-learning guide advises for small fine-tuning sets, and training and inference see the
    same features.
    """
    import keras

    keras.utils.set_random_seed(seed)
    weights = resolve_imagenet_weights(weights_path)
    if weights is None:
        log.warning("no local EfficientNetB0 ImageNet weights (TrainingSettings.imagenet_weights or %s): "
                    "starting from a random initialisation", keras_cache_weights())
    backbone = keras.applications.EfficientNetB0(include_top=False, pooling="avg",
                                                 weights=str(weights) if weights else None,
                                                 input_shape=(image_size, image_size, 3))
    backbone.name = BACKBONE_NAME
    inputs = keras.Input((image_size, image_size, 3), name="face_rgb_0_255")
    x = backbone(inputs, training=False)
    x = keras.layers.Dense(512, activation="relu", name="dense_512")(x)
    x = keras.layers.Dropout(dropout, seed=seed, name="dropout_512")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense_128")(x)
    x = keras.layers.Dropout(dropout, seed=seed + 1, name="dropout_128")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="fake_probability")(x)
    return keras.Model(inputs, outputs, name="realness_classifier")


def calibrate_batchnorm(backbone: keras.Model, images) -> None:
    """Data-dependent initialisation of a randomly initialised backbone: BatchNorm statistics from ``images``.

    With its initial statistics (mean 0, variance 1) a random EfficientNetB0 in inference mode
    shrinks features to about 1e-7 and the head has nothing to learn from. One forward pass in
    training mode with momentum 0 sets every layer's statistics to those of this batch (each layer
    sees the already-normalised output of the layers before it), after which inference mode gives
    well-scaled random features, as pretrained statistics would.
    """
    import keras

    layers = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    backbone(images, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def set_backbone_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze or unfreeze the backbone (recompile afterwards for it to take effect)."""
    model.get_layer(BACKBONE_NAME).trainable = trainable


def compile_classifier(model: keras.Model, learning_rate: float) -> None:
    """Adam + binary cross-entropy, with AUC (the early-stopping metric) among the metrics."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
                           keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")])


def predict_probabilities(model: keras.Model, jpegs: Sequence[bytes], image_size: int,
                          batch_size: int = 64) -> list[float]:
    """Fake probabilities for JPEG crops, decoded batch by batch so memory stays bounded."""
    import numpy as np

    out: list[float] = []
    for start in range(0, len(jpegs), batch_size):
        batch = decode_crops(jpegs[start:start + batch_size], image_size)
        out.extend(np.asarray(model(batch, training=False)).reshape(-1).tolist())
    return out
