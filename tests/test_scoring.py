"""Scoring runs end to end: shards in a store, a registered champion, verdicts in both databases.

The champion here is a tiny but genuine Keras model exported with the real engine: it calls a
face fake in proportion to how bright the crop is. "Manipulated" crops are real face crops
washed out towards white, so each test knows which faces the model will call fake.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from realness_tasks import ledger, registry, scoring
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.faces import crop_face, encode_jpeg
from realness_tasks.ledger import LedgerEntry, Status
from realness_tasks.samples import sample_photos
from realness_tasks.settings import CropSettings
from realness_tasks.shards import FaceRow, rows_to_table, shard_key, table_to_bytes
from realness_tasks.storage import ObjectStore, open_store

IMAGE_SIZE = 32
BRIGHTNESS_GAIN, BRIGHTNESS_CUT = 25.0, 0.75   # p_fake = sigmoid(gain * (mean RGB / 255 - cut))
MARGIN = CropSettings().margin
RUN_DATE = "2025-04-01"


@pytest.fixture(scope="module")
def brightness_tflite(tmp_path_factory) -> Path:
    import keras

    from realness_tasks.inference import export_tflite

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.full((3, 1), BRIGHTNESS_GAIN / 3, np.float32),
                       np.array([-BRIGHTNESS_GAIN * BRIGHTNESS_CUT], np.float32)])
    path = tmp_path_factory.mktemp("model") / "model.tflite"
    export_tflite(model, path)
    return path


def expected_p_fake(jpeg: bytes) -> float:
    from realness_tasks.model import decode_crops

    mean = float(np.asarray(decode_crops([jpeg], IMAGE_SIZE)).mean()) / 255
    return float(1 / (1 + np.exp(-BRIGHTNESS_GAIN * (mean - BRIGHTNESS_CUT))))


@pytest.fixture(scope="module")
def crops() -> dict[str, list[bytes]]:
    """Real face crops of each sample photo (48 px to keep shards small), and washed-out ("fake") ones."""
    settings = CropSettings(size=48)
    real = [encode_jpeg(crop_face(p.image, p.face_box, settings), 92) for p in sample_photos()]
    fake = [encode_jpeg(cv2.convertScaleAbs(crop_face(p.image, p.face_box, settings), alpha=0.15, beta=225), 92)
            for p in sample_photos()]
    return {"real": real, "fake": fake}


def make_config(tmp_path: Path, database_url: str, store_uri: str = "", s3=None, batch_size: int = 4):
    return RealnessConfig.from_env({}, home=str(tmp_path / "home"), database_url=database_url, store_uri=store_uri,
                                   s3=s3.__dict__ if s3 else None, scoring={"batch_size": batch_size})


def register_champion(cfg: RealnessConfig, store: ObjectStore, tflite: Path, version: str, threshold: float,
                      promoted_at: datetime, crop_margin: float | None = MARGIN) -> registry.ModelVersion:
    """What training leaves behind for scoring: the version folder's engine file and the champion pointer."""
    store.upload(tflite, registry.artefact_key(cfg, version, "model.tflite"))
    record = registry.ModelRecord(version, promoted_at, "train-run", store.uri_for(registry.version_prefix(cfg, version)),
                                  IMAGE_SIZE, threshold, {"auc": 0.9}, 100, promoted_at, "test champion",
                                  promoted_at=promoted_at, crop_margin=crop_margin)
    store.put_bytes(registry.pointer_key(cfg), json.dumps(record.to_json()).encode())
    return record.model_version(promoted=True)


def write_shard(cfg: RealnessConfig, store: ObjectStore, video_id: str, faces: list[tuple[int, int, bytes]],
                run_date: str = RUN_DATE, crop_margin: float = MARGIN, fps: float = 8.0, tracked: bool = False) -> str:
    """A shard of ``(frame_index, face_index, jpeg)`` faces sampled at ``fps``, as ingest publishes it;
    ``tracked``: each face's track is its face_index (else the shard predates tracks)."""
    source = f"s3://landing/{video_id}.mp4"
    rows = [FaceRow(video_id, source, frame, frame / fps, face, "mtcnn", 0.99, 10, 10, 40, 40, 640, 360,
                    None, jpeg, 48, 48, crop_margin, None, None, "ingest-run", track_id=face if tracked else None)
            for frame, face, jpeg in faces]
    key = shard_key(cfg.faces_prefix, run_date, video_id)
    store.put_bytes(key, table_to_bytes(rows_to_table(rows)))
    return key


def one_person(jpegs: list[bytes]) -> list[tuple[int, int, bytes]]:
    return [(frame, 0, jpeg) for frame, jpeg in enumerate(jpegs)]


def standard_day(cfg: RealnessConfig, store: ObjectStore, db: Database, crops) -> dict[str, list]:
    """Shards and ledger rows covering every verdict; returns each shard video's faces."""
    real, fake = crops["real"], crops["fake"]
    videos = {
        "real": one_person(real * 3),                                    # every face below the threshold
        "partly": one_person([fake[i % 4] if i % 2 else real[i % 4] for i in range(10)]),  # 5 of 10 frames swapped
        "guest": [(f, 0, real[f % 4]) for f in range(12)] + [(f, 1, fake[f % 4]) for f in range(4)],  # 2nd person
    }
    for video_id, faces in videos.items():
        write_shard(cfg, store, video_id, faces)
    for entry in (LedgerEntry("s3://landing/empty.mp4", "e1", Status.EMPTY, "ingest-run", None, "zero-byte object"),
                  LedgerEntry("s3://landing/bad.mp4", "e2", Status.UNREADABLE, "ingest-run", "bad", "no frame decodes"),
                  LedgerEntry("s3://landing/wall.mp4", "e3", Status.NO_FACE, "ingest-run", "wall", "no face in 8 frames"),
                  LedgerEntry("s3://landing/wip.mp4", "e4", Status.STAGED, "ingest-run", "wip"),
                  LedgerEntry("s3://landing/real.mp4", "e5", Status.PUBLISHED, "ingest-run", "real")):
        ledger.record(db, entry)
    return videos


def rows(db: Database, table: str) -> list[dict]:
    return db.query(f"SELECT * FROM {table} ORDER BY 1, 2, 3")


def test_without_a_champion_nothing_is_scored(tmp_path, crops):
    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    write_shard(cfg, store, "real", one_person(crops["real"]))

    outcome = scoring.run_scoring(cfg, "run-1", RUN_DATE)

    assert outcome.status == scoring.NO_CHAMPION and "no champion" in outcome.message
    assert outcome.model_version is None and outcome.faces_scored == 0
    assert rows(Database(cfg.resolved_database_url), "verdicts") == []


def test_a_run_scores_every_face_and_decides_every_video(tmp_path, database_url, brightness_tflite, crops):
    cfg = make_config(tmp_path, database_url)
    store = open_store(cfg.resolved_store_uri)
    db = Database(database_url)
    model = register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    videos = standard_day(cfg, store, db, crops)
    progress: list[str] = []

    outcome = scoring.run_scoring(cfg, "run-1", RUN_DATE, progress=progress.append)

    scores = rows(db, "face_scores")
    assert len(scores) == sum(len(f) for f in videos.values()) == outcome.faces_scored
    expected = {(vid, frame, face): expected_p_fake(jpeg) for vid, faces in videos.items() for frame, face, jpeg in faces}
    for s in scores:  # every face got its own probability, whichever batch it travelled in
        assert s["p_fake"] == pytest.approx(expected[(s["video_id"], s["frame_index"], s["face_index"])], abs=1e-4)
        assert s["label"] == ("FAKE" if s["p_fake"] >= model.threshold else "REAL")
        assert s["model_version"] == "v1"
    decided = {v["video_id"]: v for v in rows(db, "verdicts")}
    empty_id = next(k for k in decided if k.startswith("source:"))
    assert {k: v["verdict"] for k, v in decided.items()} == {
        "real": "REAL", "partly": "FAKE", "guest": "FAKE", "wall": "NO_FACE", "bad": "ERROR", empty_id: "ERROR"}
    assert decided["real"]["fake_faces"] == 0 and decided["real"]["faces_scored"] == 12
    assert decided["guest"]["reason"].startswith("face 1")
    assert decided["bad"]["reason"] == "UNREADABLE: no frame decodes"
    assert decided["wall"]["p_fake"] is None and decided[empty_id]["source_uri"] == "s3://landing/empty.mp4"
    assert {v["run_date"] for v in decided.values()} == {RUN_DATE}
    assert {r["video_id"] for r in rows(db, "videos")} == set(videos)
    assert outcome.verdicts == {"REAL": 1, "FAKE": 2, "NO_FACE": 1, "ERROR": 2} and outcome.shards_scored == 3
    assert len(progress) == 3
    export = pq.read_table(io.BytesIO(store.get_bytes(store.key_for(outcome.verdicts_uri))))
    assert f"date={RUN_DATE}/" in outcome.verdicts_uri
    assert sorted(export.column("video_id").to_pylist()) == sorted(decided)
    db.dispose()


def test_a_rerun_changes_no_row_and_later_shards_are_scored_alone(tmp_path, database_url, brightness_tflite, crops):
    cfg = make_config(tmp_path, database_url)
    store = open_store(cfg.resolved_store_uri)
    db = Database(database_url)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    standard_day(cfg, store, db, crops)
    first = scoring.run_scoring(cfg, "run-1", RUN_DATE)
    tables = {t: rows(db, t) for t in ("videos", "face_scores", "verdicts")}
    export = store.get_bytes(store.key_for(first.verdicts_uri))

    again = scoring.run_scoring(cfg, "run-1", RUN_DATE)

    assert {t: rows(db, t) for t in tables} == tables
    assert again.faces_scored == 0 and again.videos_already_scored == 3 and again.verdicts == {}
    assert again.verdicts_uri == first.verdicts_uri
    assert pq.read_table(io.BytesIO(store.get_bytes(store.key_for(again.verdicts_uri)))) == \
        pq.read_table(io.BytesIO(export))

    write_shard(cfg, store, "tomorrow", one_person(crops["real"]), run_date="2025-04-02")
    later = scoring.run_scoring(cfg, "run-2", "2025-04-02")

    assert later.faces_scored == 4 and later.shards_scored == 1 and later.verdicts == {"REAL": 1}
    assert len(rows(db, "verdicts")) == len(tables["verdicts"]) + 1
    db.dispose()


def test_a_tracked_face_faked_for_eight_seconds_makes_a_fake_verdict_naming_the_segment(tmp_path, database_url,
                                                                                       brightness_tflite, crops):
    cfg = make_config(tmp_path, database_url)
    store = open_store(cfg.resolved_store_uri)
    db = Database(database_url)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    real, fake = crops["real"], crops["fake"]
    faces = one_person([fake[i % 4] if 20 <= i < 28 else real[i % 4] for i in range(60)])  # one frame a second
    write_shard(cfg, store, "tracked", faces, fps=1.0, tracked=True)
    write_shard(cfg, store, "untracked", faces, fps=1.0)

    scoring.run_scoring(cfg, "run-1", RUN_DATE)

    decided = {r["video_id"]: r for r in rows(db, "verdicts")}
    for video_id in ("tracked", "untracked"):   # an old shard's face_index group stands for the track
        assert decided[video_id]["verdict"] == "FAKE"
        assert decided[video_id]["reason"].startswith("segment rule: track 0 fake from 20.0 s to 27.0 s (8 faces")
    assert [(r["video_id"], r["track_id"], r["start_s"], r["end_s"], r["verdict"]) for r in rows(db, "segments")] == \
        [("tracked", 0, 20.0, 27.0, "FAKE"), ("untracked", 0, 20.0, 27.0, "FAKE")]
    db.dispose()


def test_a_new_champion_adds_its_own_rows_and_the_latest_view_follows(tmp_path, database_url, brightness_tflite,
                                                                      crops):
    cfg = make_config(tmp_path, database_url)
    store = open_store(cfg.resolved_store_uri)
    db = Database(database_url)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    standard_day(cfg, store, db, crops)
    scoring.run_scoring(cfg, "run-1", RUN_DATE)
    before = rows(db, "verdicts")
    # the same network with a much stricter threshold: the washed-out faces are no longer fake enough
    register_champion(cfg, store, brightness_tflite, "v2", 0.995, datetime(2025, 3, 2))

    outcome = scoring.run_scoring(cfg, "run-2", "2025-04-02")

    assert outcome.model_version == "v2" and outcome.shards_scored == 3
    after = rows(db, "verdicts")
    assert [v for v in after if v["model_version"] == "v1"] == before
    assert len(after) == 2 * len(before)
    latest = {r["video_id"]: r for r in db.query("SELECT * FROM latest_verdicts")}
    assert {r["model_version"] for r in latest.values()} == {"v2"}
    assert latest["partly"]["verdict"] == "REAL"  # was FAKE under v1
    assert "FAKE" not in {r["verdict"] for r in latest.values()}  # no face reaches 0.995
    assert len(rows(db, "face_scores")) == 2 * outcome.faces_scored
    db.dispose()


def test_an_unreadable_shard_is_an_error_and_the_others_are_scored(tmp_path, brightness_tflite, crops):
    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    write_shard(cfg, store, "good", one_person(crops["real"]))
    store.put_bytes(shard_key(cfg.faces_prefix, RUN_DATE, "broken"), b"not parquet at all")
    write_shard(cfg, store, "corrupt-crop", [(0, 0, crops["real"][0]), (1, 0, b"not a jpeg")])

    outcome = scoring.run_scoring(cfg, "run-1", RUN_DATE)

    db = Database(cfg.resolved_database_url)
    decided = {v["video_id"]: v for v in db.query("SELECT * FROM verdicts")}
    assert decided["good"]["verdict"] == "REAL"
    for video_id in ("broken", "corrupt-crop"):
        assert decided[video_id]["verdict"] == "ERROR" and "unreadable shard" in decided[video_id]["reason"]
    assert outcome.verdicts == {"REAL": 1, "ERROR": 2}
    assert {r["video_id"] for r in db.query("SELECT video_id FROM face_scores")} == {"good"}


def test_a_shard_cut_with_another_margin_than_the_models_is_an_error(tmp_path, brightness_tflite, crops):
    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    write_shard(cfg, store, "good", one_person(crops["real"]))
    write_shard(cfg, store, "wider", one_person(crops["real"]), crop_margin=0.6)
    unrecorded = write_shard(cfg, store, "older", one_person(crops["real"]))
    store.put_bytes(unrecorded, table_to_bytes(pq.read_table(io.BytesIO(store.get_bytes(unrecorded)))
                                               .drop_columns(["crop_margin"])))

    outcome = scoring.run_scoring(cfg, "run-1", RUN_DATE)

    db = Database(cfg.resolved_database_url)
    decided = {v["video_id"]: v for v in db.query("SELECT * FROM verdicts")}
    assert outcome.verdicts == {"REAL": 1, "ERROR": 2}
    assert decided["wider"]["verdict"] == "ERROR" and decided["wider"]["source_uri"] == "s3://landing/wider.mp4"
    assert f"crop margin 0.6, model v1 was trained on crops cut with {MARGIN}" in decided["wider"]["reason"]
    assert "no recorded margin" in decided["older"]["reason"] and "REALNESS_CROP_MARGIN=" in decided["older"]["reason"]
    assert {r["video_id"] for r in db.query("SELECT video_id FROM face_scores")} == {"good"}
    # A champion registered before margins were kept scores every shard (and says so in the log).
    register_champion(cfg, store, brightness_tflite, "v0", 0.5, datetime(2025, 3, 2), crop_margin=None)
    assert scoring.run_scoring(cfg, "run-2", RUN_DATE).verdicts == {"REAL": 3}
    db.dispose()


def test_scoring_reads_shards_and_the_model_from_s3(tmp_path, s3_bucket_uri, s3_settings, brightness_tflite, crops):
    cfg = make_config(tmp_path, "", store_uri=s3_bucket_uri, s3=s3_settings)
    store = open_store(s3_bucket_uri, s3_settings)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    write_shard(cfg, store, "partly", one_person([crops["fake"][i % 4] if i % 2 else crops["real"][i % 4]
                                                  for i in range(10)]))

    outcome = scoring.run_scoring(cfg, "run-1", RUN_DATE)

    assert outcome.verdicts == {"FAKE": 1}
    assert outcome.verdicts_uri.startswith(s3_bucket_uri + "/verdicts/date=2025-04-01/")
    assert store.exists(store.key_for(outcome.verdicts_uri))


def test_the_model_input_size_must_match_the_registry(tmp_path, brightness_tflite, crops):
    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    model = register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    write_shard(cfg, store, "real", one_person(crops["real"]))
    wrong = registry.ModelVersion(model.version, model.uri, IMAGE_SIZE * 2, 0.5, {}, True)

    with pytest.raises(ValueError, match="takes 32 px"):
        scoring.run_scoring(cfg, "run-1", RUN_DATE, model=wrong)
    assert Database(cfg.resolved_database_url).query("SELECT * FROM verdicts") == []


def test_a_champion_without_its_engine_file_is_a_clear_error(tmp_path, brightness_tflite, crops):
    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    store.delete(registry.artefact_key(cfg, "v1", "model.tflite"))
    write_shard(cfg, store, "real", one_person(crops["real"]))

    with pytest.raises(FileNotFoundError, match="no model.tflite"):
        scoring.run_scoring(cfg, "run-1", RUN_DATE)


def test_a_fusing_champion_stores_calibrated_p_fake_beside_the_raw_score_and_keeps_the_features(
        tmp_path, brightness_tflite, crops):
    from realness_tasks.detector import Detector, sigmoid
    from realness_tasks.foundation import FeatureCache, LinearHead, load_encoder

    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    db = Database(cfg.resolved_database_url)
    encoder = load_encoder(None, threads=2)
    head = LinearHead(np.random.default_rng(5).normal(0, 3, 512), 0.2, 1.0, encoder.identity)
    detector = Detector(0.4, 1.5, head, 0.8, 0.3, 2.0)
    model = register_champion(cfg, store, brightness_tflite, "fused", 0.5, datetime(2025, 3, 1))
    pointer = json.loads(store.get_bytes(registry.pointer_key(cfg)))
    store.put_bytes(registry.pointer_key(cfg), json.dumps({**pointer, "detector": detector.to_json()}).encode())
    faces = one_person(crops["real"][:2] + crops["fake"][:2])
    write_shard(cfg, store, "mixed", faces)

    outcome = scoring.run_scoring(cfg, "run-1", RUN_DATE)

    assert outcome.faces_scored == 4 and model.threshold == 0.5
    jpegs = [jpeg for _, _, jpeg in faces]
    fused = detector.fused(np.array([expected_p_fake(j) for j in jpegs]), head.logits(encoder.embed_jpegs(jpegs)))
    stored = {s["frame_index"]: s for s in rows(db, "face_scores")}
    for frame, _, _ in faces:
        assert stored[frame]["p_raw"] == pytest.approx(float(sigmoid(fused[frame])), abs=1e-3)
        assert stored[frame]["p_fake"] == pytest.approx(float(detector.calibrated(fused)[frame]), abs=1e-3)
        assert stored[frame]["confidence"] == pytest.approx(max(stored[frame]["p_fake"], 1 - stored[frame]["p_fake"]))
    cache = FeatureCache(store, cfg.features_prefix, encoder)      # scoring kept each crop's features
    cache.features(["mixed"] * 4, jpegs)
    assert (cache.computed, cache.reused) == (0, 4)


def test_a_fusing_champion_cannot_score_with_the_foundation_branch_off(tmp_path, brightness_tflite, crops):
    from realness_tasks.detector import Detector
    from realness_tasks.foundation import LinearHead
    from realness_tasks.settings import ConfigurationError

    cfg = RealnessConfig.from_env({}, home=str(tmp_path / "home"), foundation={"encoder": "none"})
    store = open_store(cfg.resolved_store_uri)
    register_champion(cfg, store, brightness_tflite, "fused", 0.5, datetime(2025, 3, 1))
    pointer = json.loads(store.get_bytes(registry.pointer_key(cfg)))
    detector = Detector(0.0, 1.0, LinearHead(np.zeros(512), 0.0, 1.0, "clip_vit_b16_int8:x"), 1.0, 0.5, 1.0)
    store.put_bytes(registry.pointer_key(cfg), json.dumps({**pointer, "detector": detector.to_json()}).encode())
    write_shard(cfg, store, "real", one_person(crops["real"]))
    with pytest.raises(ConfigurationError, match="REALNESS_FOUNDATION_ENCODER=none"):
        scoring.run_scoring(cfg, "run-1", RUN_DATE)


def write_person_shard(cfg: RealnessConfig, store: ObjectStore, video_id: str, jpegs: list[bytes],
                       embedding: np.ndarray, label: str | None) -> None:
    """A one-person shard whose even faces carry the person's embedding (the odd ones inherit it)."""
    rows = [FaceRow(video_id, f"s3://landing/{video_id}.mp4", frame, frame / 8.0, 0, "mtcnn", 0.99, 10, 10, 40, 40,
                    640, 360, None, jpeg, 48, 48, MARGIN, label, None, "ingest-run",
                    embedding=[float(v) for v in embedding] if frame % 2 == 0 else None)
            for frame, jpeg in enumerate(jpegs)]
    store.put_bytes(shard_key(cfg.faces_prefix, RUN_DATE, video_id), table_to_bytes(rows_to_table(rows)))


def test_a_face_is_judged_against_its_persons_reference_and_forgetting_the_person_removes_it(
        tmp_path, database_url, brightness_tflite, monkeypatch):
    from realness_tasks import cli
    from realness_tasks.embeddings import FaceEmbedder
    from realness_tasks.metrics import log_odds

    photos = {p.name: p for p in sample_photos()}
    embedder = FaceEmbedder()
    embedding = {n: embedder.embed(cv2.cvtColor(p.image, cv2.COLOR_BGR2RGB), [p.face_box])[0]
                 for n, p in photos.items()}
    settings = CropSettings(size=48)

    def crops_of(name: str, wash: tuple[float, int] | None) -> list[bytes]:
        crop = crop_face(photos[name].image, photos[name].face_box, settings)
        if wash:   # brighter looks faker to the model: a soft, bright camera, or a manipulation
            crop = cv2.convertScaleAbs(crop, alpha=wash[0], beta=wash[1])
        return [encode_jpeg(crop, 92)] * 8

    soft = (0.4, 150)

    cfg = RealnessConfig.from_env({}, home=str(tmp_path / "home"), database_url=database_url,
                                  identity={"enabled": True, "min_reference_faces": 4, "shrinkage_faces": 4.0})
    store = open_store(cfg.resolved_store_uri)
    db = Database(database_url)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    write_person_shard(cfg, store, "obama-ref", crops_of("obama", soft), embedding["obama"], "REAL")
    write_person_shard(cfg, store, "biden-ref", crops_of("biden", None), embedding["biden"], "REAL")
    write_person_shard(cfg, store, "obama-new", crops_of("obama2", soft), embedding["obama2"], None)
    write_person_shard(cfg, store, "astro-new", crops_of("astronaut", (0.15, 225)), embedding["astronaut"], None)

    scoring.run_scoring(cfg, "run-1", RUN_DATE)

    scores = {}
    for row in rows(db, "face_scores"):
        scores.setdefault(row["video_id"], []).append(row)
    obama = {r["identity_id"] for r in scores["obama-ref"]}
    assert obama == {r["identity_id"] for r in scores["obama-new"]} and len(obama) == 1 and None not in obama
    assert len({r["identity_id"] for v in scores.values() for r in v}) == 3
    # Reference faces: 8 of Obama (bright), 8 of Biden; the offset is Obama's mean above everyone's, shrunk 8/12.
    z_obama = log_odds(np.array([r["p_fake"] for r in scores["obama-ref"]])).mean()
    z_all = log_odds(np.array([r["p_fake"] for v in ("obama-ref", "biden-ref") for r in scores[v]])).mean()
    offset = 8 / (8 + 4) * (z_obama - z_all)
    assert offset > 1
    for row in scores["obama-new"]:
        expected = 1 / (1 + np.exp(-(log_odds(np.array([row["p_fake"]]))[0] - offset)))
        assert row["p_identity"] == pytest.approx(expected, abs=1e-6) and row["reference_faces"] == 8
        assert row["label"] == ("FAKE" if row["p_identity"] >= 0.5 else "REAL")
    for video_id in ("obama-ref", "biden-ref", "astro-new"):   # no reference beside their own video
        assert all(r["p_identity"] is None and r["reference_faces"] is None for r in scores[video_id])
    decided = {v["video_id"]: v for v in rows(db, "verdicts")}
    assert f"judged against identity {obama.pop()} (8 reference faces)" in decided["obama-new"]["reason"]
    assert decided["obama-new"]["p_fake"] < max(r["p_fake"] for r in scores["obama-new"])
    assert "judged against" not in decided["astro-new"]["reason"]
    obama_id = scores["obama-new"][0]["identity_id"]
    assert {r["video_id"] for r in db.query("SELECT video_id FROM identity_videos WHERE identity_id = :i",
                                            {"i": obama_id})} == {"obama-ref", "obama-new"}

    from realness_tasks.db import SQL_DIR

    def query(name: str, **params) -> list[dict]:
        return db.query((SQL_DIR / "queries" / f"{name}.sql").read_text(), params)

    astronaut = scores["astro-new"][0]["identity_id"]
    fakes = {r["identity_id"]: r for r in query("fakes_per_identity", since=RUN_DATE)}
    assert decided["astro-new"]["verdict"] == "FAKE" and fakes[astronaut]["fakes"] == 1
    assert all(r["fakes"] == sum(decided[v]["verdict"] == "FAKE" for v in decided
                                 if scores.get(v) and scores[v][0]["identity_id"] == i) for i, r in fakes.items())
    judged = query("faces_judged_against_reference", video_id="obama-new")
    assert len(judged) == 8 and {r["reference_faces"] for r in judged} == {8}
    assert query("fakes_per_identity", since="2999-01-01") == []

    monkeypatch.setenv("REALNESS_HOME", cfg.home)
    monkeypatch.setenv("REALNESS_DATABASE_URL", database_url)
    assert cli.main(["identities", "forget", str(obama_id)]) == 2      # needs --yes
    assert cli.main(["identities", "forget", str(obama_id), "--yes"]) == 0

    for video_id in ("obama-ref", "obama-new"):
        shard = pq.read_table(io.BytesIO(store.get_bytes(shard_key(cfg.faces_prefix, RUN_DATE, video_id))))
        assert shard.column("embedding").null_count == shard.num_rows == 8
        assert shard.column("crop_jpeg").null_count == 0
    biden = pq.read_table(io.BytesIO(store.get_bytes(shard_key(cfg.faces_prefix, RUN_DATE, "biden-ref"))))
    assert biden.column("embedding").null_count == 4
    assert db.query("SELECT * FROM face_identities WHERE identity_id = :i", {"i": obama_id}) == []
    assert db.query("SELECT * FROM identities WHERE identity_id = :i", {"i": obama_id}) == []
    assert all(r["identity_id"] is None and r["p_identity"] is None
               for r in db.query("SELECT * FROM face_scores WHERE video_id LIKE 'obama%'"))
    assert cli.main(["identities", "forget", str(obama_id), "--yes"]) == 2    # gone: a clear error, not a crash
    db.dispose()
