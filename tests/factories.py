"""Test data made in code: crops, stand-in backbone weights and classifiers built from the sample photos.

Labelled face shards, which the benchmarks make too, are in ``bench.face_shards``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from realness_tasks import model, samples
from realness_tasks.faces import crop_face, encode_jpeg
from realness_tasks.settings import CropSettings


def sample_crops(size: int = 64) -> list[bytes]:
    return [encode_jpeg(crop_face(p.image, p.face_box, CropSettings(size=size)), 92) for p in samples.sample_photos()]


def calibrated_backbone(path: Path, image_size: int) -> Path:
    """Write stand-in EfficientNetB0 no-top weights to ``path`` (``*.weights.h5``, or ``*.h5`` in Keras' legacy
    format, which is how Keras caches the real file)."""
    import h5py
    import keras
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    backbone = keras.applications.EfficientNetB0(include_top=False, pooling="avg", weights=None,
                                                 input_shape=(image_size, image_size, 3))
    model.calibrate_batchnorm(backbone, [model.decode_crops(sample_crops() * 4, image_size)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".weights.h5"):
        backbone.save_weights(path)
    else:
        with h5py.File(path, "w") as handle:
            save_weights_to_hdf5_group(handle, backbone)
    return path


def brightness_classifier(image_size: int, gain: float, cut: float):
    """A genuine Keras classifier shaped like the project's (a nested backbone named ``model.BACKBONE_NAME``
    ending in global average pooling, then a dense head) whose fake probability is known:
    sigmoid(gain * (mean RGB / 255 - cut)), so brighter crops are "faker".

    The backbone's one convolution passes each channel through, so its feature map is the image
    itself and Grad-CAM on it highlights the bright regions.
    """
    import keras

    pixels = keras.Input((image_size, image_size, 3))
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="pass_through")
    features = keras.layers.GlobalAveragePooling2D()(conv(keras.layers.Rescaling(1 / 255)(pixels)))
    backbone = keras.Model(pixels, features, name=model.BACKBONE_NAME)
    kernel = np.zeros((3, 3, 3, 3), np.float32)
    kernel[1, 1] = np.eye(3)
    conv.set_weights([kernel])
    inputs = keras.Input((image_size, image_size, 3), name="face_rgb_0_255")
    head = keras.layers.Dense(1, activation="sigmoid", name="fake_probability")
    classifier = keras.Model(inputs, head(backbone(inputs)), name="brightness_classifier")
    head.set_weights([np.full((3, 1), gain / 3, np.float32), np.array([-gain * cut], np.float32)])
    return classifier
