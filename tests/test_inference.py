"""The TFLite scoring engine against Keras, on the real classifier architecture at a small input size."""

from __future__ import annotations

import numpy as np
import pytest

from realness_tasks.inference import EngineDisagreement, TFLiteScorer, check_agreement, export_tflite

IMAGE_SIZE = 32


def faces(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, IMAGE_SIZE, IMAGE_SIZE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """The pretrained Lite0 classifier with its last layer scaled so outputs spread over (0, 1)."""
    import keras

    from realness_tasks.config import TrainingSettings
    from realness_tasks.model import build_classifier

    model, _ = build_classifier(TrainingSettings(image_size=IMAGE_SIZE, seed=7), tmp_path_factory.mktemp("weights"))
    features = np.asarray(keras.Model(model.input, model.get_layer("dense_128").output)(faces(64, 0)))
    head = model.get_layer("fake_probability")
    weights = np.random.default_rng(1).normal(size=head.get_weights()[0].shape)
    logits = features @ weights
    weights *= 2.0 / logits.std()
    head.set_weights([weights.astype(np.float32), np.array([-float((features @ weights).mean())], np.float32)])
    return model


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("engine") / "model.tflite"
    export_tflite(classifier, path)
    return path


def test_engine_agrees_with_keras(classifier, exported):
    sample = faces(24, 2)
    expected = np.asarray(classifier(sample, training=False)).reshape(-1)

    difference = check_agreement(classifier, exported, sample)
    actual = TFLiteScorer(exported).predict(sample)

    assert expected.std() > 0.1, "the outputs must spread for the comparison to mean anything"
    assert difference <= 1e-4
    assert np.max(np.abs(actual - expected)) == pytest.approx(difference, abs=1e-6)  # Keras call vs predict rounding
    assert actual.shape == (24,) and actual.dtype == np.float32


def test_a_face_scores_the_same_whatever_batch_it_is_in(exported):
    scorer = TFLiteScorer(exported, threads=1)
    sample = faces(7, 3)

    alone = np.concatenate([scorer.predict(sample[i:i + 1]) for i in range(7)])
    together = scorer.predict(sample)
    split = np.concatenate([scorer.predict(sample[:5]), scorer.predict(sample[5:])])

    assert scorer.image_size == IMAGE_SIZE
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(split, alone, atol=1e-5)
    assert scorer.predict(sample[:0]).shape == (0,)


def test_a_batch_of_the_wrong_size_is_refused(exported):
    with pytest.raises(ValueError, match="does not fit"):
        TFLiteScorer(exported).predict(np.zeros((2, IMAGE_SIZE * 2, IMAGE_SIZE * 2, 3), np.float32))


def test_an_export_of_another_model_fails_the_agreement_check(classifier, exported):
    import keras

    other = keras.models.clone_model(classifier)
    other.set_weights(classifier.get_weights())
    head = other.get_layer("fake_probability")
    weights, bias = head.get_weights()
    head.set_weights([weights, bias + 1.0])

    with pytest.raises(EngineDisagreement, match="differ by"):
        check_agreement(other, exported, faces(8, 4))
