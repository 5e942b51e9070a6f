"""The model registry: version folders, the champion pointer, the promotion rule and the table mirror."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime

import pytest

from realness_tasks import registry
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.storage import open_store


def make_record(cfg, store, version: str, auc: float, f1: float) -> registry.ModelRecord:
    return registry.ModelRecord(
        version=version, created_at=datetime(2024, 6, 1, 12), run_id=f"run-{version}",
        uri=store.uri_for(registry.version_prefix(cfg, version)), image_size=64, threshold=0.42,
        metrics={"auc": auc, "f1_fake": f1, "accuracy": 0.9, "precision_fake": 0.8, "recall_fake": 0.7,
                 "confusion": [[5, 1], [2, 6]]},
        dataset_faces=120, data_cutoff=datetime(2024, 6, 1, 11), reason="")


FIRST = registry.PromotionDecision(True, "no champion yet", None)


def artefacts(directory, version: str):
    directory.mkdir(parents=True, exist_ok=True)
    for name in (*registry.ARTEFACTS, *registry.FP32_ONLY.values()):
        (directory / name).write_bytes(f"{version}:{name}".encode())
    return directory


@pytest.fixture
def registry_env(tmp_path, database_url):
    cfg = RealnessConfig.from_env({}, home=str(tmp_path / "home"), database_url=database_url)
    store = open_store(cfg.resolved_store_uri)
    db = Database(cfg.resolved_database_url)
    yield cfg, store, db, tmp_path
    db.dispose()


def test_promotion_rule():
    assert registry.beats({"auc": 0.91, "f1_fake": 0.1}, {"auc": 0.90, "f1_fake": 0.9})
    assert not registry.beats({"auc": 0.89, "f1_fake": 1.0}, {"auc": 0.90, "f1_fake": 0.5})
    assert registry.beats({"auc": 0.9, "f1_fake": 0.8}, {"auc": 0.9, "f1_fake": 0.7})       # tie-break on F1
    assert not registry.beats({"auc": 0.9, "f1_fake": 0.7}, {"auc": 0.9, "f1_fake": 0.7})   # full tie: keep
    assert not registry.beats({"auc": math.nan, "f1_fake": 1.0}, {"auc": 0.6, "f1_fake": 0.1})
    first = registry.decide({"auc": 0.85, "videos": 20}, 0.8, None, None)
    assert first.promote and first.reason == "no champion yet; held-out video AUC 0.8500 reaches the floor 0.80"
    worse = registry.decide({"auc": 0.7, "f1_fake": 0.6}, 0.5, "v1", {"auc": 0.8, "f1_fake": 0.7})
    assert not worse.promote and "does not beat" in worse.reason and "v1" in worse.reason
    assert worse.comparison["champion_metrics"]["auc"] == 0.8
    with pytest.raises(ValueError, match="v1 has no metrics"):
        registry.decide({"auc": 0.9}, 0.5, "v1", None)


@pytest.mark.parametrize("auc", [0.79, math.nan, None])
def test_the_promotion_floor_refuses_first_models_and_challengers_alike(auc):
    below = {"auc": auc, "f1_fake": 1.0, "videos": 12}
    for champion, metrics in ((None, None), ("v1", {"auc": 0.1, "f1_fake": 0.0})):
        decision = registry.decide(below, 0.8, champion, metrics)
        assert not decision.promote and "below the promotion floor 0.80" in decision.reason
        assert "12 videos" in decision.reason and not decision.comparison


def test_versions_sort_by_time_and_differ_within_a_second():
    a = registry.new_version(datetime(2024, 6, 1, 12, 0, 0), "run-a")
    b = registry.new_version(datetime(2024, 6, 1, 12, 0, 0), "run-b")
    c = registry.new_version(datetime(2024, 6, 1, 12, 0, 1), "run-a")
    assert re.fullmatch(r"20240601T120000Z-[0-9a-f]{8}", a)
    assert a != b and sorted([c, a]) == [a, c]


def test_register_promotes_the_first_model_and_moves_the_pointer(registry_env):
    cfg, store, db, tmp = registry_env
    assert registry.champion(cfg, store, db) is None
    record = make_record(cfg, store, "20240601T120000Z-aaaaaaaa", 0.8, 0.7)
    version, reason = registry.register(cfg, store, db, record, artefacts(tmp / "a", record.version),
                                        FIRST)
    assert version.promoted and reason == "no champion yet"
    assert record.files() == (*registry.ARTEFACTS, "model.tflite")   # registered without engines: fp32 only
    for name in record.files():
        assert store.get_bytes(registry.artefact_key(cfg, record.version, name)) == f"{record.version}:{name}".encode()
    current = registry.champion(cfg, store, db)
    assert current == registry.ModelVersion(record.version, record.uri, 64, 0.42, record.metrics, True)
    row = db.query("SELECT * FROM model_versions")[0]
    assert row["promoted"] == 1 and row["promoted_at"] is not None and row["reason"] == "no champion yet"
    assert row["auc"] == 0.8 and json.loads(row["confusion"]) == [[5, 1], [2, 6]] and row["dataset_faces"] == 120
    assert registry.last_data_cutoff(db) == datetime(2024, 6, 1, 11)
    fetched = registry.fetch_artefact(cfg, store, record.version, "model.tflite", tmp / "dl")
    assert fetched.read_bytes() == f"{record.version}:model.tflite".encode()


def test_a_worse_model_is_registered_but_the_pointer_stays(registry_env):
    cfg, store, db, tmp = registry_env
    first = make_record(cfg, store, "20240601T120000Z-aaaaaaaa", 0.8, 0.7)
    registry.register(cfg, store, db, first, artefacts(tmp / "a", first.version), FIRST)
    pointer = store.get_bytes(registry.pointer_key(cfg))
    second = make_record(cfg, store, "20240602T120000Z-bbbbbbbb", 0.7, 0.9)
    decision = registry.decide(second.metrics, 0.5, first.version, {"auc": 0.75, "f1_fake": 0.6})
    version, reason = registry.register(cfg, store, db, second, artefacts(tmp / "b", second.version), decision)
    assert not version.promoted and reason.startswith("does not beat champion")
    assert store.get_bytes(registry.pointer_key(cfg)) == pointer
    assert registry.champion(cfg, store, db).version == first.version
    rows = {r["version"]: r for r in db.query("SELECT version, promoted, reason FROM model_versions")}
    assert rows[second.version]["promoted"] == 0 and rows[second.version]["reason"] == reason
    assert store.exists(registry.artefact_key(cfg, second.version, "model.keras"))

    better = make_record(cfg, store, "20240603T120000Z-cccccccc", 0.95, 0.9)
    decision = registry.decide(better.metrics, 0.5, first.version, {"auc": 0.8, "f1_fake": 0.7})
    version, reason = registry.register(cfg, store, db, better, artefacts(tmp / "c", better.version), decision)
    assert version.promoted and reason.startswith("beats champion")
    assert registry.champion(cfg, store, db).version == better.version


def test_a_model_compared_with_a_replaced_champion_is_not_promoted(registry_env):
    cfg, store, db, tmp = registry_env
    first = make_record(cfg, store, "20240601T120000Z-aaaaaaaa", 0.8, 0.7)
    registry.register(cfg, store, db, first, artefacts(tmp / "a", first.version), FIRST)
    stale = registry.decide({"auc": 0.9, "f1_fake": 0.9}, 0.5, "20240501T000000Z-00000000", {"auc": 0.5, "f1_fake": 0.5})
    late = make_record(cfg, store, "20240602T120000Z-bbbbbbbb", 0.9, 0.9)
    version, reason = registry.register(cfg, store, db, late, artefacts(tmp / "b", late.version), stale)
    assert not version.promoted and "champion changed" in reason
    assert registry.champion(cfg, store, db).version == first.version


def test_champion_repairs_a_mirror_left_behind_by_a_crash(registry_env):
    cfg, store, db, tmp = registry_env
    record = make_record(cfg, store, "20240601T120000Z-aaaaaaaa", 0.8, 0.7)
    registry.register(cfg, store, db, record, artefacts(tmp / "a", record.version), FIRST)
    db.execute("UPDATE model_versions SET promoted = 0, promoted_at = NULL")   # crash after the pointer moved
    assert registry.champion(cfg, store, db).version == record.version
    assert db.query("SELECT promoted FROM model_versions")[0]["promoted"] == 1
    db.execute("DELETE FROM model_versions")                                     # database rebuilt from scratch
    registry.champion(cfg, store, db)
    row = db.query("SELECT version, promoted, auc, threshold FROM model_versions")[0]
    assert (row["version"], row["promoted"], row["auc"], row["threshold"]) == (record.version, 1, 0.8, 0.42)


def test_register_refuses_an_incomplete_folder(registry_env):
    cfg, store, db, tmp = registry_env
    record = make_record(cfg, store, "20240601T120000Z-aaaaaaaa", 0.8, 0.7)
    folder = artefacts(tmp / "a", record.version)
    (folder / "model.tflite").unlink()
    with pytest.raises(FileNotFoundError, match="model.tflite"):
        registry.register(cfg, store, db, record, folder, FIRST)
    assert registry.champion(cfg, store, db) is None
    assert db.query("SELECT COUNT(*) AS n FROM model_versions")[0]["n"] == 0
