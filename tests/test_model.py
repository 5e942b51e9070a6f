"""The shared crop decoder and the classifier network: shapes, layer sizes, weights and freezing.

There is no internet here, so the ImageNet weights are stood in for by ``calibrated_backbone``:
EfficientNetB0's random kernels with BatchNorm statistics measured on sample faces, which gives
well-scaled features as pretrained weights do.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from realness_tasks import model, samples
from realness_tasks.faces import encode_jpeg
from tests.factories import calibrated_backbone, sample_crops


def test_decode_crops_gives_rgb_float_batches_of_the_requested_size():
    import tensorflow as tf

    photo = samples.sample_photos()[0]
    big = encode_jpeg(photo.image, 95)                       # not square, 512 px wide
    small = encode_jpeg(cv2.resize(photo.image, (40, 40)), 95)
    out = model.decode_crops([big, small], 48)
    assert out.shape == (2, 48, 48, 3) and out.dtype == tf.float32
    values = out.numpy()
    assert 0.0 <= values.min() and values.max() <= 255.0 and values.max() > 100
    # RGB order: the BGR image's mean channel values come out reversed.
    decoded = tf.io.decode_jpeg(big, channels=3).numpy().astype(np.float32)
    assert np.allclose(decoded.mean((0, 1)), photo.image[..., ::-1].reshape(-1, 3).mean(0), atol=3)
    expected = tf.image.resize(decoded, [48, 48], method="bilinear", antialias=True).numpy()
    assert np.allclose(values[0], expected, atol=1e-3)
    assert np.array_equal(model.decode_crops(tf.constant([big, small]), 48).numpy(), values)
    assert model.decode_crops([], 32).shape == (0, 32, 32, 3)


def test_classifier_architecture():
    import keras

    net = model.build_classifier(32, dropout=0.25, weights_path=None, seed=1)
    backbone = net.get_layer(model.BACKBONE_NAME)
    assert backbone.output.shape[-1] == 1280                      # EfficientNetB0, average-pooled
    assert net.input.shape[1:] == (32, 32, 3)
    dense = [layer for layer in net.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [512, 128, 1]
    assert [d.activation.__name__ for d in dense] == ["relu", "relu", "sigmoid"]
    dropouts = [layer for layer in net.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.rate for d in dropouts] == [0.25, 0.25]
    order = [layer.name for layer in net.layers]
    assert order.index("dense_512") < order.index("dropout_512") < order.index("dense_128") \
        < order.index("dropout_128") < order.index("fake_probability")
    probabilities = net(model.decode_crops(sample_crops(), 32)).numpy()
    assert probabilities.shape == (4, 1) and ((0 <= probabilities) & (probabilities <= 1)).all()


def test_random_initialisation_is_announced_once(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    with caplog.at_level(logging.WARNING, logger="realness_tasks.model"):
        model.build_classifier(32, 0.3, None, seed=1)
    lines = [r.getMessage() for r in caplog.records if "random initialisation" in r.getMessage()]
    assert len(lines) == 1


def test_weights_come_from_the_configured_file_or_the_keras_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert model.resolve_imagenet_weights(None) is None
    assert model.resolve_imagenet_weights(str(tmp_path / "missing.h5")) is None
    cached = calibrated_backbone(tmp_path / "keras" / "models" / model.KERAS_CACHE_WEIGHTS, 32)
    assert model.resolve_imagenet_weights(None) == cached
    configured = calibrated_backbone(tmp_path / "mine.weights.h5", 32)
    assert model.resolve_imagenet_weights(str(configured)) == configured

    from_cache = model.build_classifier(32, 0.3, None, seed=1).get_layer(model.BACKBONE_NAME)
    import h5py

    with h5py.File(cached) as handle:  # legacy format: one group per layer, weights in order
        stem = np.asarray(handle["stem_conv"][handle["stem_conv"].attrs["weight_names"][0]])
    assert np.array_equal(from_cache.get_layer("stem_conv").kernel.numpy(), stem)


def test_frozen_backbone_trains_only_the_head_and_keeps_batchnorm_fixed_when_pretrained(tmp_path):
    weights = calibrated_backbone(tmp_path / "b.weights.h5", 32)
    net = model.build_classifier(32, 0.3, str(weights), seed=1)
    backbone = net.get_layer(model.BACKBONE_NAME)
    model.set_backbone_trainable(net, False)
    backbone_ids = {id(v) for v in backbone.weights}
    assert net.trainable_weights and not any(id(v) in backbone_ids for v in net.trainable_weights)
    before = {v.path: v.numpy().copy() for v in backbone.weights}
    head_before = net.get_layer("dense_512").kernel.numpy().copy()
    model.compile_classifier(net, 1e-3)
    x = model.decode_crops(sample_crops(), 32)
    net.fit(x, np.array([0, 1, 0, 1], np.float32), epochs=1, verbose=0)
    assert all(np.array_equal(v.numpy(), before[v.path]) for v in backbone.weights)
    assert not np.array_equal(net.get_layer("dense_512").kernel.numpy(), head_before)
    model.set_backbone_trainable(net, True)
    assert any(id(v) in backbone_ids for v in net.trainable_weights)


def test_calibration_gives_a_random_backbone_well_scaled_features():
    import keras

    net = model.build_classifier(32, 0.3, None, seed=1)
    backbone = net.get_layer(model.BACKBONE_NAME)
    x = model.decode_crops(sample_crops() * 4, 32)
    before = np.asarray(backbone(x, training=False))
    bn = backbone.get_layer("top_bn")
    momentum = bn.momentum
    model.calibrate_batchnorm(backbone, x)
    after = np.asarray(backbone(x, training=False))
    assert np.abs(before).max() < 1e-3 < np.std(after, axis=0).mean()
    assert np.std(after, axis=1).min() > 1e-2  # every face gets features, not a constant vector
    assert bn.momentum == momentum and isinstance(bn, keras.layers.BatchNormalization)


@pytest.mark.parametrize("pretrained", [True, False])
def test_saved_model_predicts_the_same(tmp_path, pretrained):
    import keras

    weights = str(calibrated_backbone(tmp_path / "b.weights.h5", 32)) if pretrained else None
    net = model.build_classifier(32, 0.3, weights, seed=2)
    net.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    crops = sample_crops()
    assert np.allclose(model.predict_probabilities(net, crops, 32), model.predict_probabilities(again, crops, 32),
                       atol=1e-6)
