"""Training-time augmentation and the tf.data input pipelines.

Geometric augmentation only (rotation, flip, zoom, shift, shear): colour and blur changes could
wipe out exactly the blending seams and colour mismatches that give a swapped face away. The
stage runs on the training split only; validation and test pipelines are deterministic, so the
threshold and the metrics are measured on the faces as scoring will see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from realness_tasks.model import decode_crops

if TYPE_CHECKING:
    import keras
    import tensorflow as tf


@dataclass(frozen=True)
class AugmentationSettings:
    """Ranges of the random transforms (fractions as Keras' layers define them)."""

    rotation: float = 0.04       # of a full turn: about +-15 degrees
    zoom: float = 0.1
    shift: float = 0.05          # of the image size, each axis
    shear: float = 0.08          # of the image size, each axis


def augmentation_stage(seed: int, settings: AugmentationSettings = AugmentationSettings()) -> keras.Sequential:
    """A Keras stage applying a random flip, rotation, zoom, shift and shear to each image of a batch."""
    import keras

    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(settings.rotation, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom(settings.zoom, fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomTranslation(settings.shift, settings.shift, fill_mode="reflect", seed=seed + 3),
        keras.layers.RandomShear(settings.shear, settings.shear, fill_mode="reflect", seed=seed + 4),
    ], name="augmentation")


def pipeline(jpegs: Sequence[bytes], labels: np.ndarray, image_size: int, batch_size: int, *,
             train: bool, seed: int) -> tf.data.Dataset:
    """``(images, labels)`` batches: decode_crops -> augment (train only) -> batch -> prefetch.

    The training pipeline shuffles, augments and repeats forever (epochs are counted in steps);
    the others pass over the faces once, in order, unchanged.
    """
    import tensorflow as tf

    data = tf.data.Dataset.from_tensor_slices((tf.constant(list(jpegs), dtype=tf.string),
                                               tf.constant(np.asarray(labels, np.float32))))
    if train:
        data = data.shuffle(max(1, len(jpegs)), seed=seed, reshuffle_each_iteration=True).repeat()
    # Batching the JPEG strings first lets decode_crops, the one decoder, run on whole batches.
    data = data.batch(batch_size).map(lambda j, y: (decode_crops(j, image_size), y),
                                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=not train)
    if train:
        augment = augmentation_stage(seed)
        data = data.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)
