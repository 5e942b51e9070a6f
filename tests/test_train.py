"""Training end to end: metrics, a promoted first model, a worse second one that is not, the promotion
floor, a champion that cannot be loaded, and S3 + PostgreSQL with self-blended pseudo-fakes.

Small on purpose (64 px, a few steps) on the pretrained EfficientNet-Lite0 default: the models
only need to learn the colour mismatch of the test fakes (tests/test_dataset.py), which the
pretrained features show after a few steps. TensorFlow's op determinism is on, so a run gives the
same model every time and the quality assertions cannot flip between runs.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from itertools import product
from typing import Any

import numpy as np
import pytest

from bench.face_shards import write_labelled_shards
from realness_tasks import dataset as ds
from realness_tasks import fitting, metrics, promotion, registry, train, version_folder
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.inference import TFLiteScorer
from realness_tasks.metrics import THRESHOLD_RULE
from realness_tasks.model import Backbone, decode_crops
from realness_tasks.settings import ScoringSettings, TrainingSettings
from realness_tasks.storage import open_store

SIZE = 64
VIDEOS_PER_CLASS = 12  # fewer made the test split so small that a run's AUC swung between 0.58 and 1.0
FACES = VIDEOS_PER_CLASS * 2 * 6


def quick_settings(**changes) -> dict:
    """Small and fast; the int8 engine (about 10 s a model) is exported only where a test asks for it."""
    return {"image_size": SIZE, "batch_size": 16, "frozen_epochs": 8, "finetune_epochs": 1, "faces_per_epoch": 128,
            "patience": 9, "int8_engine": False, **changes}


@pytest.fixture(scope="module", autouse=True)
def deterministic_ops():
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()


def test_roc_auc_matches_counting_pairs():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)           # many ties
    pairs = [(p, n) for p, n in product(scores[labels == 1], scores[labels == 0])]
    expected = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)
    assert metrics.roc_auc(labels, scores) == pytest.approx(expected)
    assert np.isnan(metrics.roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_threshold_separates_validation_scores_with_a_margin():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    threshold = metrics.choose_threshold(labels, scores)
    assert threshold == pytest.approx(0.5)
    m = metrics.classification_metrics(labels, scores, threshold)
    assert (m["accuracy"], m["f1_fake"], m["auc"], m["confusion"]) == (1.0, 1.0, 1.0, [[3, 0], [0, 3]])
    noisy = metrics.classification_metrics(np.array([0, 0, 1, 1]), np.array([0.2, 0.6, 0.4, 0.9]), 0.5)
    assert noisy["confusion"] == [[1, 1], [1, 1]] and noisy["precision_fake"] == 0.5 and noisy["recall_fake"] == 0.5


def test_threshold_is_the_log_odds_midpoint_of_the_class_medians():
    def log_odds(p: float) -> float:
        return math.log(p / (1 - p))

    # one real face scored like the fakes: the cut that best separates these faces would sit at
    # 0.975, above nearly every fake a new person's video would score; the midpoint does not follow it
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    scores = np.array([0.01, 0.02, 0.03, 0.97, 0.98, 0.99, 0.995])
    real_median = (log_odds(0.02) + log_odds(0.03)) / 2   # of four: halfway between the middle two
    middle = (real_median + log_odds(0.99)) / 2
    assert metrics.choose_threshold(labels, scores) == pytest.approx(1 / (1 + math.exp(-middle)))
    assert metrics.choose_threshold(labels, scores) == pytest.approx(0.6120, abs=1e-4)
    # saturated scores are clipped to 1e-6 and 1 - 1e-6, so the midpoint stays finite
    assert metrics.choose_threshold(np.array([0, 1]), np.array([0.0, 1.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="real and fake"):
        metrics.choose_threshold(np.array([0, 0]), np.array([0.1, 0.2]))


def test_the_threshold_is_chosen_on_the_validation_videos_scores_under_the_verdict_rule():
    def log_odds(p: float) -> float:
        return math.log(p / (1 - p))

    # four real videos, two of them with half their faces fake-looking (the verdict rule scores those
    # videos by their confidently fake faces, 0.9), and two fake videos; ten faces each
    per_video = {"real_a": [0.1] * 10, "real_b": [0.1] * 10, "real_c": [0.1] * 5 + [0.9] * 5,
                 "real_d": [0.1] * 5 + [0.9] * 5, "fake_a": [0.95] * 10, "fake_b": [0.95] * 10}
    scores = np.array([p for faces in per_video.values() for p in faces])
    video_ids = [video for video, faces in per_video.items() for _ in faces]
    faces = face_set([int(video.startswith("fake")) for video in video_ids], video_ids)
    # on faces, the real median is 0.1; on videos, halfway between 0.1 and 0.9 in log-odds, i.e. 0.5
    on_faces = 1 / (1 + math.exp(-(log_odds(0.1) + log_odds(0.95)) / 2))
    assert metrics.choose_threshold(faces.labels, scores) == pytest.approx(on_faces)   # 0.592
    threshold = metrics.choose_video_threshold(faces, scores, ScoringSettings())
    assert threshold == pytest.approx(1 / (1 + math.exp(-log_odds(0.95) / 2)))        # 0.813
    labels, video_p, _ = metrics.video_scores(faces, scores, threshold, ScoringSettings())
    assert video_p.tolist() == pytest.approx([0.95, 0.95, 0.1, 0.1, 0.9, 0.9])      # sorted by video id
    assert metrics.choose_threshold(labels, video_p) == pytest.approx(threshold)      # it stopped where it is stable


def tracked_epochs(keep: str, kernels_by_phase: dict[str, list[float]]) -> tuple[Any, list[str], Any]:
    """An epoch tracker fed epochs of a one-weight model whose kernel sets the validation ranking."""
    import keras
    import tensorflow as tf

    labels = np.array([0, 1, 0, 1], np.float32)
    features = np.array([[0.0], [1.0], [0.2], [0.9]], np.float32)
    val_data = tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    messages: list[str] = []
    tracker = fitting.epoch_tracker(messages.append, 3, val_data, labels, keep)
    tracker.set_model(model)
    number = 0
    for phase, kernels in kernels_by_phase.items():
        tracker.begin_phase(phase)
        for kernel in kernels:
            model.layers[0].kernel.assign([[kernel]])
            tracker.on_epoch_end(number, {"loss": 0.5})
            number += 1
    tracker.restore_kept()
    return tracker, messages, model


def test_best_validation_keeps_the_best_epoch_of_the_last_phase():
    """A frozen-phase epoch with a better validation AUC is not kept over the fine-tuning epochs."""
    # 4.0 ranks the faces right (AUC 1.0); -1.0 and -2.0 rank them wrong (AUC 0.0): the first stays kept.
    tracker, messages, model = tracked_epochs("best_validation", {"frozen": [4.0], "fine-tune": [-1.0, -2.0]})
    assert tracker.history["val_auc"] == [1.0, 0.0, 0.0]
    assert float(model.layers[0].kernel.numpy()[0, 0]) == -1.0
    assert tracker.history["kept"] == [False, True, False]
    assert messages[-1].startswith("kept the weights of epoch 2 (fine-tune), the best validation AUC")


def test_last_keeps_the_last_epoch_whatever_its_validation_auc():
    tracker, messages, model = tracked_epochs("last", {"frozen": [-1.0], "fine-tune": [4.0, -2.0]})
    assert tracker.history["val_auc"] == [0.0, 1.0, 0.0]
    assert float(model.layers[0].kernel.numpy()[0, 0]) == -2.0
    assert tracker.history["kept"] == [False, False, True]
    assert messages[-1].startswith("kept the weights of epoch 3 (fine-tune), the last of its phase")


def test_batchnorm_statistics_are_re_estimated_on_faces_unless_turned_off_but_always_for_a_random_backbone():
    pretrained, random = Backbone("efficientnet_lite0", "imagenet:x sha256:0"), Backbone("efficientnet_lite0", "random")
    assert fitting.batchnorm_faces(TrainingSettings(), pretrained) == 1024
    assert fitting.batchnorm_faces(TrainingSettings(batchnorm_faces=0), pretrained) == 0
    assert (fitting.batchnorm_faces(TrainingSettings(batchnorm_faces=0), random)
            == fitting.RANDOM_BACKBONE_BATCHNORM_FACES)


def test_an_epoch_draws_the_faces_per_epoch_budget_or_the_whole_stream_when_smaller_or_unbudgeted():
    assert fitting.epoch_steps(10_000, TrainingSettings(faces_per_epoch=2048, batch_size=32)) == 64
    assert fitting.epoch_steps(1_000, TrainingSettings(faces_per_epoch=2048, batch_size=32)) == 32   # 1,000 / 32 up
    assert fitting.epoch_steps(10_000, TrainingSettings(faces_per_epoch=0, batch_size=32)) == 313
    assert fitting.epoch_steps(100, TrainingSettings(faces_per_epoch=40, batch_size=16)) == 3


def face_set(labels: list[int], video_ids: list[str] | None = None) -> ds.FaceSet:
    """Faces of the given labels, one video each unless ``video_ids`` names them."""
    count = len(labels)
    return ds.FaceSet([bytes([i]) for i in range(count)], np.array(labels, np.int32),
                      np.array(video_ids or [f"v{i}" for i in range(count)]), np.zeros((count, 4), np.float32),
                      [None] * count, np.zeros(count, np.int16))


def test_the_monitored_validation_sample_keeps_each_class_in_its_share_and_is_the_same_every_time():
    val = face_set([0] * 75 + [1] * 25)
    sample = fitting.monitoring_sample(val, 20, seed=7)
    assert sorted(sample.labels.tolist()) == [0] * 15 + [1] * 5
    assert sample.jpegs == sorted(sample.jpegs) and len(set(sample.jpegs)) == 20   # distinct faces, split order
    assert sample.jpegs == fitting.monitoring_sample(val, 20, seed=7).jpegs
    assert fitting.monitoring_sample(val, 0, seed=7) is val and fitting.monitoring_sample(val, 100, seed=7) is val
    assert fitting.monitoring_sample(face_set([0] * 99 + [1]), 10, seed=7).labels.tolist().count(1) == 1


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A trained first model, then an untrained one (compared whatever its AUC), on the local store and SQLite."""
    home = tmp_path_factory.mktemp("train")
    # patience 0 would stop at the first epoch without a better validation AUC; keeping the last epoch runs them all.
    good = RealnessConfig.from_env({}, home=str(home), training=quick_settings(int8_engine=True, patience=0))
    store = open_store(good.resolved_store_uri)
    write_labelled_shards(store, videos_per_class=VIDEOS_PER_CLASS, faces_per_video=6, crop_size=SIZE)
    progress: list[str] = []
    first = train.run_training(good, "run-1", progress=progress.append)
    untrained = RealnessConfig.from_env({}, home=str(home), training=quick_settings(
        frozen_epochs=0, finetune_epochs=0, min_video_auc=0.0))
    second = train.run_training(untrained, "run-2")
    return good, store, first, second, progress


def test_first_model_is_registered_and_promoted_with_every_artefact(two_runs, tmp_path):
    cfg, store, first, _, progress = two_runs
    assert first.promoted and first.reason.startswith("no champion yet; held-out video AUC")
    assert first.metrics["auc"] > 0.9                       # it learned the fakes' cue (chance is 0.5)
    assert first.metrics["video"]["auc"] >= cfg.training.min_video_auc and first.metrics["video"]["videos"] >= 2
    assert first.backbone.startswith("efficientnet_lite0 (imagenet:efficientnet-lite0-57934424.pth sha256:")
    assert set(first.artefacts) == {*registry.ARTEFACTS, "model.tflite", "model-int8.tflite"}
    for name, uri in first.artefacts.items():
        assert store.exists(store.key_for(uri)), name
        if name.endswith(".png"):
            assert store.get_bytes(store.key_for(uri))[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(store.get_bytes(registry.artefact_key(cfg, first.version, "metrics.json")))
    assert metrics["test"] == first.metrics and metrics["threshold_rule"] == THRESHOLD_RULE
    assert metrics["threshold"] == 0.5 and metrics["history"]["phase"][-1] == "fine-tune"
    detector = metrics["detector"]      # fused and calibrated on the validation split; 0.5 is its threshold
    assert 0 <= detector["efficientnet_weight"] <= 1 and detector["temperature"] > 0
    assert 0 < detector["raw_threshold"] < 1 and detector["head"]["encoder"].startswith("clip_vit_b16_int8:")
    assert metrics["foundation"]["self_blended"] > 0 and len(detector["head"]["weights"]) == 512
    assert metrics["test"]["calibration"]["faces"]["count"] == metrics["test"]["faces"]
    assert 0 <= metrics["test"]["calibration"]["videos"]["ece"] <= 1
    assert set(metrics["test"]["branches"]) == {"efficientnet", "foundation"}
    assert metrics["history"]["epoch"] == list(range(1, 10))      # 8 frozen + 1 fine-tuning epoch, none skipped
    assert metrics["history"]["kept"] == [False] * 8 + [True]
    fp32, int8 = metrics["engines"]["fp32"], metrics["engines"]["int8"]
    assert fp32["file"] == "model.tflite" and fp32["max_abs_difference"] <= 1e-4 and fp32["faces_compared"] > 0
    assert int8["file"] == "model-int8.tflite" and int8["bytes"] < fp32["bytes"] / 3
    assert int8["calibration_faces"] == min(version_folder.CALIBRATION_FACES,
                                            len(manifest_faces(store, cfg, first.version, "train")))
    test_faces = len(manifest_faces(store, cfg, first.version, "test"))
    assert int8["faces_compared"] == test_faces and 0 < int8["max_abs_difference"] < 0.5  # measured, not bounded
    assert int8["keras_video_auc"] == first.metrics["video"]["auc"] and int8["keras_face_auc"] == first.metrics["auc"]
    assert int8["video_auc"] >= first.metrics["video"]["auc"] - 0.2 and int8["face_auc"] > 0.8
    manifest = json.loads(store.get_bytes(registry.artefact_key(cfg, first.version, "manifest.json")))
    assert sum(sum(s["faces"].values()) for s in manifest["splits"].values()) == FACES
    train_faces = len(manifest_faces(store, cfg, first.version, "train"))
    assert manifest["batchnorm_faces"] == min(cfg.training.batchnorm_faces, train_faces) > 0
    assert any(f"re-estimated on {manifest['batchnorm_faces']} training faces" in line for line in progress)
    config = json.loads(store.get_bytes(registry.artefact_key(cfg, first.version, "training_config.json")))
    assert config["training"]["image_size"] == SIZE and config["code_version"] and config["run_id"] == "run-1"
    assert config["backbone"]["name"] == "efficientnet_lite0" and config["backbone"]["weights"].startswith("imagenet:")
    assert any("frozen epoch 1/9" in line and "val AUC" in line for line in progress)
    assert any("fine-tune epoch" in line for line in progress)


def manifest_faces(store, cfg, version: str, split: str) -> list[str]:
    """One entry per face of ``split`` in the version's manifest (its per-class counts)."""
    manifest = json.loads(store.get_bytes(registry.artefact_key(cfg, version, "manifest.json")))
    return [name for name, count in manifest["splits"][split]["faces"].items() for _ in range(count)]


def test_champion_points_at_the_first_model_and_its_tflite_export_works(two_runs, tmp_path):
    cfg, store, first, _, _ = two_runs
    db = Database(cfg.resolved_database_url)
    current = registry.champion(cfg, store, db)
    assert current.version == first.version and current.image_size == SIZE and current.promoted
    assert current.engines == {"fp32": "model.tflite", "int8": "model-int8.tflite"}
    assert current.threshold == first.metrics["threshold"] and current.crop_margin == cfg.crop.margin
    rows = {r["version"]: r for r in db.query("SELECT * FROM model_versions")}
    assert rows[first.version]["promoted"] == 1 and rows[first.version]["auc"] == pytest.approx(first.metrics["auc"])
    assert rows[first.version]["video_auc"] == pytest.approx(first.metrics["video"]["auc"])
    assert rows[first.version]["backbone"] == "efficientnet_lite0"
    assert rows[first.version]["crop_margin"] == cfg.crop.margin
    assert rows[first.version]["backbone_weights"].startswith("imagenet:efficientnet-lite0-57934424.pth sha256:")
    db.dispose()
    import keras

    keras_model = keras.models.load_model(registry.fetch_artefact(cfg, store, first.version, "model.keras", tmp_path),
                                          compile=False)
    scorer = TFLiteScorer(registry.fetch_artefact(cfg, store, first.version, "model.tflite", tmp_path))
    manifest = json.loads(store.get_bytes(registry.artefact_key(cfg, first.version, "manifest.json")))
    crops = [store.get_bytes(s["key"]) for s in manifest["shards"][:1]]
    from realness_tasks.shards import read_shard

    faces = decode_crops(read_shard(crops[0]).column("crop_jpeg").to_pylist(), SIZE).numpy()
    assert np.allclose(scorer.predict(faces), keras_model(faces, training=False).numpy().reshape(-1), atol=1e-4)


def test_a_worse_second_model_is_registered_but_not_promoted(two_runs):
    cfg, store, first, second, _ = two_runs
    assert not second.promoted
    assert second.reason.startswith("does not beat champion") and first.version in second.reason
    assert store.exists(registry.artefact_key(cfg, second.version, "model.tflite"))
    assert not store.exists(registry.artefact_key(cfg, second.version, "model-int8.tflite"))   # int8_engine off
    assert set(second.artefacts) == {*registry.ARTEFACTS, "model.tflite"}
    db = Database(cfg.resolved_database_url)
    assert registry.champion(cfg, store, db).version == first.version
    row = db.query("SELECT promoted, reason FROM model_versions WHERE version = :v", {"v": second.version})[0]
    assert row == {"promoted": 0, "reason": second.reason}
    metrics = json.loads(store.get_bytes(registry.artefact_key(cfg, second.version, "metrics.json")))
    assert metrics["comparison"]["champion"] == first.version and set(metrics["engines"]) == {"fp32"}
    assert metrics["history"]["epoch"] == []
    db.dispose()


def test_labelled_faces_since_counts_only_faces_after_the_last_model(two_runs):
    cfg, store, _, _, _ = two_runs
    db = Database(cfg.resolved_database_url)
    assert train.labelled_faces_since(cfg, store, db) == 0
    write_labelled_shards(store, videos_per_class=1, faces_per_video=3, crop_size=SIZE, seed=5, first_video=50,
                          unlabelled_faces=4)
    assert train.labelled_faces_since(cfg, store, db) == 6
    assert train.labelled_faces_since(cfg, store, db, since=datetime(2000, 1, 1)) == FACES + 6
    db.dispose()


def test_a_model_below_the_floor_is_not_promoted_even_without_a_champion(tmp_path):
    cfg = RealnessConfig.from_env({}, home=str(tmp_path), training=quick_settings(
        frozen_epochs=1, finetune_epochs=0, faces_per_epoch=16, min_video_auc=1.01))
    write_labelled_shards(open_store(cfg.resolved_store_uri), videos_per_class=3, faces_per_video=2, crop_size=SIZE)
    outcome = train.run_training(cfg, "run-floor")
    assert not outcome.promoted and "below the promotion floor 1.01" in outcome.reason
    db = Database(cfg.resolved_database_url)
    assert registry.champion(cfg, open_store(cfg.resolved_store_uri), db) is None
    assert db.query("SELECT promoted FROM model_versions") == [{"promoted": 0}]
    db.dispose()


def test_a_champion_that_cannot_be_loaded_stops_the_run_instead_of_being_replaced(two_runs, tmp_path):
    cfg, store, first, _, _ = two_runs
    key = registry.artefact_key(cfg, first.version, "model.keras")
    original = store.get_bytes(key)
    db = Database(cfg.resolved_database_url)
    versions_before = db.query("SELECT COUNT(*) AS n FROM model_versions")[0]["n"]
    store.put_bytes(key, b"not a keras archive")
    try:
        with pytest.raises(promotion.ChampionUnavailable, match=f"champion {first.version} could not be loaded"):
            train.run_training(RealnessConfig.from_env({}, home=cfg.home, training=quick_settings(
                frozen_epochs=1, finetune_epochs=0, faces_per_epoch=16, min_video_auc=0.0)), "run-broken-champion")
    finally:
        store.put_bytes(key, original)
    assert registry.champion(cfg, store, db).version == first.version
    assert db.query("SELECT COUNT(*) AS n FROM model_versions")[0]["n"] == versions_before
    db.dispose()


def test_a_champion_from_another_crop_margin_is_compared_and_the_reason_says_so(two_runs):
    cfg, store, first, _, _ = two_runs
    key = registry.pointer_key(cfg)
    original = store.get_bytes(key)
    pointer = json.loads(original)
    pointer["crop_margin"] = cfg.crop.margin + 0.2     # as if the champion was trained before a margin change
    store.put_bytes(key, json.dumps(pointer).encode())
    try:
        outcome = train.run_training(RealnessConfig.from_env({}, home=cfg.home, training=quick_settings(
            frozen_epochs=1, finetune_epochs=0, faces_per_epoch=16, min_video_auc=0.0)), "run-margin-changed")
    finally:
        store.put_bytes(key, original)
    assert f"champion {first.version}" in outcome.reason
    assert (f"trained on crops cut with margin {cfg.crop.margin + 0.2:g} and these faces are cut with "
            f"{cfg.crop.margin:g}") in outcome.reason


def test_training_on_s3_and_postgresql_with_self_blended_fakes(s3_bucket_uri, s3_settings, postgres_url):
    cfg = RealnessConfig.from_env({}, store_uri=s3_bucket_uri, s3=s3_settings.__dict__, database_url=postgres_url,
                                  training=quick_settings(frozen_epochs=1, finetune_epochs=0, faces_per_epoch=32,
                                                          self_blended_fakes="always", min_video_auc=0.0))
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    write_labelled_shards(store, videos_per_class=3, faces_per_video=3, crop_size=SIZE)
    outcome = train.run_training(cfg, "run-s3")
    assert outcome.promoted
    assert all(uri.startswith(s3_bucket_uri) and store.exists(store.key_for(uri)) for uri in outcome.artefacts.values())
    manifest = json.loads(store.get_bytes(registry.artefact_key(cfg, outcome.version, "manifest.json")))
    real_train_faces = manifest["splits"]["train"]["faces"]["REAL"]
    assert manifest["self_blended_fakes_per_epoch"] == real_train_faces > 0
    db = Database(postgres_url)
    assert registry.champion(cfg, store, db).version == outcome.version
    assert db.query("SELECT promoted FROM model_versions")[0]["promoted"] == 1
    db.dispose()


def test_without_labelled_fakes_a_model_is_registered_not_promoted_until_an_operator_approves_it(tmp_path, capsys,
                                                                                                   monkeypatch):
    from realness_tasks.cli import main

    cfg = RealnessConfig.from_env({}, home=str(tmp_path), training=quick_settings(
        frozen_epochs=1, finetune_epochs=0, faces_per_epoch=32, min_video_auc=0.0))
    store = open_store(cfg.resolved_store_uri)
    for video_id, label in write_labelled_shards(store, videos_per_class=6, faces_per_video=2, crop_size=SIZE).items():
        if label == "FAKE":
            store.delete(next(s["key"] for s in ds.list_shards(cfg, store) if video_id in s["key"]))

    outcome = train.run_training(cfg, "run-real-only")

    assert not outcome.promoted and "no labelled fake video" in outcome.reason and "realness approve" in outcome.reason
    # measured on self-blended twins of the held-out real videos: both classes, one twin per real video
    video = outcome.metrics["video"]
    assert video["confusion"][0][0] + video["confusion"][0][1] == video["confusion"][1][0] + video["confusion"][1][1]
    db = Database(cfg.resolved_database_url)
    assert registry.champion(cfg, store, db) is None

    monkeypatch.setenv("REALNESS_HOME", str(tmp_path))
    assert main(["approve", outcome.version, "--reason", " "]) == 2             # a reason is required
    assert main(["approve", "20990101T000000Z-nothing", "--reason", "x"]) == 2  # an unknown version
    assert "no registered version" in capsys.readouterr().err
    assert main(["approve", outcome.version, "--reason", "checked 40 archive videos by hand (j.doe)"]) == 0
    champion = registry.champion(cfg, store, db)
    assert champion is not None and champion.version == outcome.version
    row = db.query("SELECT promoted, reason FROM model_versions WHERE version = :v", {"v": outcome.version})[0]
    assert row["promoted"] == 1 and row["reason"].startswith("approved by an operator: checked 40 archive videos")
    assert "no labelled fake video" in row["reason"]          # the gate's own reason stays beside the approval
    db.dispose()
