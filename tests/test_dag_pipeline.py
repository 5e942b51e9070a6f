"""ingest -> train -> score through Airflow, on the embedded database and on PostgreSQL."""

from __future__ import annotations

import json

import pytest

from realness_tasks import samples
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.storage import open_store
from tests.conftest import run_dag

pytestmark = pytest.mark.slow

QUICK_TRAINING = {
    "REALNESS_SAMPLING_EVERY_SECONDS": "0.25",
    "REALNESS_TRAINING_IMAGE_SIZE": "32",
    "REALNESS_TRAINING_FROZEN_EPOCHS": "1",
    "REALNESS_TRAINING_FINETUNE_EPOCHS": "1",
    "REALNESS_TRAINING_BATCH_SIZE": "16",
    "REALNESS_TRAINING_FACES_PER_EPOCH": "32",
    "REALNESS_TRAINING_MIN_VIDEO_AUC": "0",              # plumbing, not quality: the floor is tested in test_train
    "REALNESS_TRAINING_INT8_ENGINE": "false",            # the int8 export is tested in test_train and test_inference
    "REALNESS_REPORT_VERDICTS": "FAKE,UNCERTAIN,REAL",   # a quick model's verdicts may all be REAL
}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_videos_to_verdicts(dagbag, realness_env, tmp_path, request, engine):
    for name, value in QUICK_TRAINING.items():
        realness_env.setenv(name, value)
    if engine == "postgresql":  # the verdict database as deployed: the realness_db Airflow connection
        url = request.getfixturevalue("postgres_url")
        realness_env.setenv("AIRFLOW_CONN_REALNESS_DB", json.dumps({
            "conn_type": "postgres", "host": "127.0.0.1", "port": 5432, "login": "postgres",
            "schema": url.rsplit("/", 1)[1]}))
        cfg = RealnessConfig.from_env(database_url=url)
    else:
        cfg = RealnessConfig.from_env()
    store = open_store(cfg.resolved_store_uri)
    videos = samples.labelled_set(tmp_path / "videos", per_class=3)
    for video in videos:
        store.upload(video.path, f"landing/archive/{video.path.name}")
    store.upload(tmp_path / "videos" / "metadata.json", "landing/archive/metadata.json")
    faceless = samples.face_video(tmp_path / "faceless.mp4", None, seconds=1.0, fps=8)
    store.upload(faceless.path, "landing/new/faceless.mp4")
    unlabelled = samples.face_video(tmp_path / "new.mp4", samples.sample_photos()[2].image, seconds=1.0, fps=8, seed=9)
    store.upload(unlabelled.path, "landing/new/unlabelled clip.mp4")

    for dag_id in ("realness_ingest", "realness_train", "realness_score"):
        run = run_dag(dagbag, dag_id)
        assert str(run.state) == "success", f"{dag_id} ended {run.state}"

    db = Database(cfg.resolved_database_url)
    assert db.dialect == engine
    champion = db.query("SELECT version FROM model_versions WHERE promoted = 1")
    assert len(champion) == 1
    version = champion[0]["version"]
    verdicts = {r["source_uri"]: r for r in db.query("SELECT * FROM latest_verdicts")}
    assert len(verdicts) == len(videos) + 2
    assert {r["model_version"] for r in verdicts.values()} == {version}
    assert verdicts[store.uri_for("landing/new/faceless.mp4")]["verdict"] == "NO_FACE"
    scored = [r for r in verdicts.values() if r["verdict"] != "NO_FACE"]
    assert all(r["verdict"] in ("FAKE", "REAL", "UNCERTAIN") and 0 <= r["p_fake"] <= 1 for r in scored)
    published_faces = sum(r["faces"] for r in db.query("SELECT faces FROM ingest_ledger WHERE status = 'PUBLISHED'"))
    face_scores = db.query("SELECT COUNT(*) AS n FROM face_scores WHERE model_version = :v", {"v": version})[0]["n"]
    assert face_scores == published_faces > 0
    assert any(o.key.startswith("verdicts/date=") for o in store.list("verdicts/"))
    for row in scored:   # every scored verdict got its report, recorded with the verdict
        page = store.get_bytes(store.key_for(row["report_uri"])).decode()
        assert f'id="verdict">{row["verdict"]}<' in page and "Grad-CAM" in page
    assert verdicts[store.uri_for("landing/new/faceless.mp4")]["report_uri"] is None

    # Re-running scoring changes nothing: videos already scored by the champion are skipped.
    before = db.query("SELECT video_id, model_version, verdict, p_fake FROM verdicts ORDER BY video_id")
    assert str(run_dag(dagbag, "realness_score").state) == "success"
    assert db.query("SELECT video_id, model_version, verdict, p_fake FROM verdicts ORDER BY video_id") == before
    assert db.query("SELECT COUNT(*) AS n FROM face_scores")[0]["n"] == face_scores
    db.dispose()
