"""Training-time augmentation and the tf.data input pipelines.

Geometric augmentation (rotation, flip, zoom, shift, shear), and optionally random erasing (a
patch of noise, so the model cannot lean on one region of the face). No colour or blur changes:
they could wipe out exactly the blending seams and colour mismatches that give a swapped face
away (docs/detection-benchmark.md shows what resampling whole crops costs). The stage runs on the
training split only; validation and test pipelines are deterministic, so the threshold and the metrics are
measured on the faces as scoring will see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from realness_tasks.crops import decode_crops
from realness_tasks.sbi import PseudoFakeMaker

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
    erasing: float = 0.0         # share of images with one noise patch (2-25 % of the image); 0: no erasing


def augmentation_stage(seed: int, settings: AugmentationSettings = AugmentationSettings()) -> keras.Sequential:
    """A Keras stage applying a random flip, rotation, zoom, shift and shear (and erasing, if set) to a batch."""
    import keras

    layers = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(settings.rotation, fill_mode="reflect", seed=seed + 1),
        keras.layers.RandomZoom(settings.zoom, fill_mode="reflect", seed=seed + 2),
        keras.layers.RandomTranslation(settings.shift, settings.shift, fill_mode="reflect", seed=seed + 3),
        keras.layers.RandomShear(settings.shear, settings.shear, fill_mode="reflect", seed=seed + 4),
    ]
    if settings.erasing > 0:
        # factor (p, p): each image is erased with probability p (a single float would draw p itself).
        layers.append(keras.layers.RandomErasing(factor=(settings.erasing, settings.erasing), scale=(0.02, 0.25),
                                                 seed=seed + 5))
    return keras.Sequential(layers, name="augmentation")


def pipeline(jpegs: Sequence[bytes], labels: np.ndarray, image_size: int, batch_size: int, *,
             train: bool, seed: int, pseudo_fakes: PseudoFakeMaker | None = None,
             augmentation: AugmentationSettings = AugmentationSettings()) -> tf.data.Dataset:
    """``(images, labels)`` batches: decode_crops -> augment (train only) -> batch -> prefetch.

    The training pipeline shuffles, augments and repeats forever (epochs are counted in steps);
    the others pass over the faces once, in order, unchanged. With ``pseudo_fakes`` each pass
    also holds one newly made self-blended FAKE per real face it was given. Only face indices are
    shuffled and the JPEG bytes are held once, so memory does not grow with a shuffle buffer.
    """
    import tensorflow as tf

    count, extra = len(jpegs), len(pseudo_fakes) if pseudo_fakes is not None else 0
    table = tf.constant(list(jpegs), dtype=tf.string, shape=[count])
    all_labels = tf.constant(np.r_[np.asarray(labels, np.float32), np.ones(extra, np.float32)])
    ids = tf.data.Dataset.range(count + extra)
    if train:
        ids = ids.shuffle(count + extra, seed=seed, reshuffle_each_iteration=True).repeat()

    def element(index: tf.Tensor, draw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if pseudo_fakes is None:
            return tf.gather(table, index), tf.gather(all_labels, index)

        def blend() -> tf.Tensor:
            made = tf.numpy_function(lambda i, d: pseudo_fakes.make(int(i), int(d)), [index - count, draw],
                                     tf.string, stateful=False)
            return tf.reshape(made, [])

        jpeg = tf.cond(index < count, lambda: tf.gather(table, tf.minimum(index, count - 1)), blend)
        return jpeg, tf.gather(all_labels, index)

    # Each draw gets its own number, so a real face yields a different pseudo-fake every epoch.
    data = tf.data.Dataset.zip(ids, tf.data.Dataset.counter()).map(element, num_parallel_calls=tf.data.AUTOTUNE)
    # Batching the JPEG strings first lets decode_crops, the one decoder, run on whole batches.
    data = data.batch(batch_size).map(lambda j, y: (decode_crops(j, image_size), y),
                                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if train:
        augment = augmentation_stage(seed, augmentation)
        # One call at a time: the random layers draw from a seed state each call advances, and
        # parallel calls could read the same state and give two batches the same transforms.
        data = data.map(lambda x, y: (augment(x, training=True), y))
    return data.prefetch(2)
