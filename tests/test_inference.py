"""The TFLite scoring engines against Keras, on the real classifier architecture at a small input size.

fp32 must equal Keras; int8 is checked on real face crops (sample photos and face swaps of them)
by a classifier whose head was fitted to tell the swaps apart, so its outputs mean something.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

import numpy as np
import pytest

from bench.face_shards import fake_image, labelled_rows
from realness_tasks import registry, samples, scorers
from realness_tasks.config import RealnessConfig
from realness_tasks.inference import ENGINE_FILES, EngineDisagreement, TFLiteScorer, check_agreement, export_tflite
from realness_tasks.settings import ENGINES, ConfigurationError
from realness_tasks.storage import open_store

IMAGE_SIZE = 64


@pytest.fixture(scope="module")
def face_crops() -> tuple[np.ndarray, np.ndarray]:
    """64 real face crops (8 per sample photo, moved and re-lit a little) and their swapped twins: images, labels.

    The even ones fit the classifier's head and calibrate the int8 export; the odd ones are held out.
    """
    from realness_tasks.model import decode_crops

    photos, rng = samples.sample_photos(), np.random.default_rng(0)
    rows = []
    for i, photo in enumerate(photos):
        rows += labelled_rows(f"real{i}", "REAL", photo.image, photo.face_box, 8, IMAGE_SIZE, rng)
        rows += labelled_rows(f"fake{i}", "FAKE", fake_image(photo, photos[(i + 1) % len(photos)], seed=i),
                              photo.face_box, 8, IMAGE_SIZE, rng)
    labels = np.array([row.label == "FAKE" for row in rows], np.int32)
    return decode_crops([row.crop_jpeg for row in rows], IMAGE_SIZE).numpy(), labels


@pytest.fixture(scope="module")
def held_out(face_crops) -> np.ndarray:
    return face_crops[0][1::2]


@pytest.fixture(scope="module")
def classifier(face_crops, tmp_path_factory):
    """The pretrained Lite0 classifier whose last layer is a least-squares fit telling the even crops' swaps apart."""
    import keras

    from realness_tasks.model import build_classifier
    from realness_tasks.settings import TrainingSettings

    images, labels = face_crops
    model, _ = build_classifier(TrainingSettings(image_size=IMAGE_SIZE, seed=7), tmp_path_factory.mktemp("weights"))
    features = np.asarray(keras.Model(model.input, model.get_layer("dense_128").output)(images[0::2]))
    design = np.c_[features, np.ones(len(features))]
    fitted = np.linalg.lstsq(design, (labels[0::2] - 0.5) * 4, rcond=1e-3)[0]  # logits of about -2 and +2
    model.get_layer("fake_probability").set_weights([fitted[:-1, None].astype(np.float32),
                                                     fitted[-1:].astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def engines(classifier, face_crops, tmp_path_factory) -> dict[str, object]:
    """Both engine files of the classifier (engine -> path); int8 calibrated on the even crops."""
    folder = tmp_path_factory.mktemp("engines")
    export_tflite(classifier, folder / ENGINE_FILES["fp32"])
    export_tflite(classifier, folder / ENGINE_FILES["int8"], "int8", face_crops[0][0::2])
    return {engine: folder / name for engine, name in ENGINE_FILES.items()}


@pytest.fixture(scope="module")
def exported(engines):
    return engines["fp32"]


def test_engine_agrees_with_keras(classifier, exported, held_out):
    sample = held_out[:24]
    expected = np.asarray(classifier(sample, training=False)).reshape(-1)

    difference = check_agreement(classifier, exported, sample)
    actual = TFLiteScorer(exported).predict(sample)

    assert expected.std() > 0.1, "the outputs must spread for the comparison to mean anything"
    assert difference <= 1e-4
    # check_agreement compares with Keras predict, this with Keras call: they round differently by up to a few 1e-6
    assert np.max(np.abs(actual - expected)) == pytest.approx(difference, abs=1e-5)
    assert actual.shape == (24,) and actual.dtype == np.float32


def test_a_face_scores_the_same_whatever_batch_it_is_in(exported, held_out):
    scorer = TFLiteScorer(exported, threads=1)
    sample = held_out[:7]

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


def test_an_export_of_another_model_fails_the_agreement_check(classifier, exported, held_out):
    import keras

    other = keras.models.clone_model(classifier)
    other.set_weights(classifier.get_weights())
    head = other.get_layer("fake_probability")
    weights, bias = head.get_weights()
    head.set_weights([weights, bias + 1.0])

    with pytest.raises(EngineDisagreement, match="differ by"):
        check_agreement(other, exported, held_out[:8])


def test_the_int8_engine_is_quantised_smaller_and_ranks_held_out_faces_like_fp32(engines, face_crops):
    from scipy.stats import spearmanr

    from realness_tasks.metrics import roc_auc

    images, labels = face_crops[0][1::2], face_crops[1][1::2]
    fp32 = TFLiteScorer(engines["fp32"]).predict(images)
    int8_scorer = TFLiteScorer(engines["int8"])
    int8 = int8_scorer.predict(images)
    weights = [t for t in int8_scorer.interpreter.get_tensor_details() if t["dtype"] == np.int8]

    assert int8.dtype == np.float32 and int8.shape == (32,) and np.all((int8 >= 0) & (int8 <= 1))
    assert fp32.std() > 0.2, "the fitted head must spread the outputs for the comparison to mean anything"
    assert spearmanr(fp32, int8).statistic > 0.9
    assert abs(roc_auc(labels, int8) - roc_auc(labels, fp32)) <= 0.05 and roc_auc(labels, fp32) > 0.9
    assert len(weights) > 100                                   # every conv, not just a few tensors
    assert engines["int8"].stat().st_size < engines["fp32"].stat().st_size / 3


def test_an_int8_export_needs_calibration_faces(classifier, tmp_path):
    with pytest.raises(ValueError, match="calibration faces"):
        export_tflite(classifier, tmp_path / "model-int8.tflite", "int8")
    with pytest.raises(ValueError, match="unknown engine 'int4'"):
        export_tflite(classifier, tmp_path / "model.tflite", "int4")
    assert not list(tmp_path.iterdir())


def test_the_engine_runs_on_litert_and_its_absence_is_a_clear_error(engines, monkeypatch):
    from ai_edge_litert.interpreter import Interpreter

    assert isinstance(TFLiteScorer(engines["fp32"]).interpreter, Interpreter)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # what an environment without it sees
    with pytest.raises(ImportError, match=r"pip install ai-edge-litert==\d"):
        TFLiteScorer(engines["fp32"])


def register(cfg, files: dict[str, object], engines_recorded: dict[str, str] | None) -> registry.ModelVersion:
    """A champion whose folder holds ``files`` (engine -> local file) and whose record names ``engines_recorded``."""
    store = open_store(cfg.resolved_store_uri)
    for engine, path in files.items():
        store.upload(path, registry.artefact_key(cfg, "v1", ENGINE_FILES[engine]))
    at = datetime(2025, 3, 1)
    record = registry.ModelRecord("v1", at, "train-run", store.uri_for(registry.version_prefix(cfg, "v1")), IMAGE_SIZE,
                                  0.5, {}, 64, at, "test", promoted_at=at, engines=engines_recorded)
    store.put_bytes(registry.pointer_key(cfg), json.dumps(record.to_json()).encode())
    return registry.champion(cfg, store, None)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_engine_setting_selects_the_engine(engines, face_crops, tmp_path, engine):
    cfg = RealnessConfig.from_env({"REALNESS_SCORING_ENGINE": engine}, home=str(tmp_path / "home"))
    model = register(cfg, {e: engines[e] for e in ENGINES}, dict(ENGINE_FILES))
    faces = face_crops[0][:8]

    scorer = scorers.load_scorer(cfg, model, tmp_path)

    assert set(model.engines) == set(ENGINES) == set(ENGINE_FILES)
    assert scorer.path.name == ENGINE_FILES[engine]
    np.testing.assert_array_equal(scorer.predict(faces), TFLiteScorer(engines[engine]).predict(faces))


def test_a_missing_engine_is_a_clear_error(engines, tmp_path):
    cfg = RealnessConfig.from_env({"REALNESS_SCORING_ENGINE": "int8"}, home=str(tmp_path / "home"))
    legacy = register(cfg, {"fp32": engines["fp32"]}, None)     # registered before int8 exports: no engines recorded
    with pytest.raises(FileNotFoundError, match="has no int8 engine \\(it has fp32\\)"):
        scorers.load_scorer(cfg, legacy, tmp_path)

    recorded_not_stored = register(cfg, {"fp32": engines["fp32"]}, dict(ENGINE_FILES))
    with pytest.raises(FileNotFoundError, match="has no model-int8.tflite \\(int8 engine\\)"):
        scorers.load_scorer(cfg, recorded_not_stored, tmp_path)

    with pytest.raises(FileNotFoundError, match="no engine file"):
        TFLiteScorer(tmp_path / "missing.tflite")
    with pytest.raises(ConfigurationError, match="REALNESS_SCORING_ENGINE='int16': choose one of fp32, int8"):
        RealnessConfig.from_env({"REALNESS_SCORING_ENGINE": "int16"})
