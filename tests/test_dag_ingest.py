"""realness_ingest run through Airflow itself, with its configuration coming from Airflow connections."""

from __future__ import annotations

import json

import pytest

from realness_tasks import ledger
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.shards import read_shard
from realness_tasks.storage import open_store
from realness_tasks.run_summary import report_key
from tests.conftest import run_dag
from tests.landing import populate

pytestmark = pytest.mark.slow


def _task_states(run) -> dict[str, set[str]]:
    states: dict[str, set[str]] = {}
    for ti in run.get_task_instances():
        states.setdefault(ti.task_id, set()).add(str(ti.state))
    return states


def test_ingest_dag_on_s3_via_the_aws_default_connection(dagbag, realness_env, s3_bucket_uri, s3_endpoint, tmp_path):
    realness_env.setenv("REALNESS_STORE_URI", s3_bucket_uri)
    realness_env.setenv("REALNESS_ALLOW_EMBEDDED_DATABASE", "true")  # the test's SQLite file beside the S3 store
    realness_env.setenv("REALNESS_SAMPLING_EVERY_SECONDS", "0.25")
    realness_env.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "testing", "password": "testing",
        "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}}))
    cfg = RealnessConfig.from_env(s3={"endpoint_url": s3_endpoint, "access_key_id": "testing",
                                      "secret_access_key": "testing"})
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    landing = populate(store, tmp_path / "videos")

    run = run_dag(dagbag, "realness_ingest")
    assert str(run.state) == "success", _task_states(run)
    states = _task_states(run)
    assert states["extract_faces"] == {"success"} and states["announce_shards"] == {"success"}
    [validate] = [ti for ti in run.get_task_instances() if ti.task_id == "validate_shards"]
    assert validate.map_index == -1 and str(validate.state) == "success"  # one task for the run's shards

    rows = {r["source_uri"]: r for r in ledger.entries(Database(cfg.resolved_database_url))}
    landing.assert_statuses({store.key_for(u): r["status"] for u, r in rows.items()})
    published = [r for r in rows.values() if r["status"] == "PUBLISHED"]
    assert all(r["run_id"] == run.run_id and r["shard_uri"].startswith(s3_bucket_uri) for r in published)
    partial = read_shard(store.get_bytes(store.key_for(rows[store.uri_for("landing/clips/partial face.mp4")]["shard_uri"])))
    assert set(partial.column("frame_index").to_pylist()) == {i for i in landing.face_video.face_frames if i % 2 == 0}

    # The asset event that schedules scoring carries the published shards.
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        events = [e for e in session.query(AssetEvent).all() if e.source_run_id == run.run_id]
    assert len(events) == 1 and events[0].extra["count"] == len(published)

    # A second run finds nothing new: nothing is processed twice and no asset event is emitted.
    again = run_dag(dagbag, "realness_ingest")
    assert str(again.state) == "success"
    assert _task_states(again)["announce_shards"] == {"skipped"}
    assert {r["source_uri"]: r["attempts"] for r in ledger.entries(Database(cfg.resolved_database_url))} == \
        {u: r["attempts"] for u, r in rows.items()}


def test_ingest_dag_with_mtcnn_and_azure_face_via_connection(dagbag, realness_env, tmp_path):
    """Both detectors on: Azure Face configured through the ``azure_face`` Airflow connection."""
    from tests.fake_azure_face import FakeFaceService

    service = FakeFaceService(key="conn-key")
    try:
        realness_env.setenv("AIRFLOW_CONN_AZURE_FACE", json.dumps(
            {"conn_type": "generic", "host": service.endpoint, "password": "conn-key"}))
        realness_env.setenv("REALNESS_SAMPLING_EVERY_SECONDS", "0.25")
        realness_env.setenv("REALNESS_AZURE_BACKOFF_S", "0.01")
        cfg = RealnessConfig.from_env()
        store = open_store(cfg.resolved_store_uri)
        landing = populate(store, tmp_path / "videos", with_bad_input=False)

        run = run_dag(dagbag, "realness_ingest")
        assert str(run.state) == "success", _task_states(run)
        rows = {r["source_uri"]: r for r in ledger.entries(Database(cfg.resolved_database_url))}
        landing.assert_statuses({store.key_for(u): r["status"] for u, r in rows.items()})
        detectors: set[str] = set()
        statuses: set[str] = set()
        for row in rows.values():
            if row["status"] == "PUBLISHED":
                shard = read_shard(store.get_bytes(store.key_for(row["shard_uri"])))
                detectors |= set(shard.column("detector").to_pylist())
                statuses |= set(shard.column("azure_status").to_pylist())
        assert "both" in detectors and detectors <= {"mtcnn", "azure", "both"}
        assert statuses == {"ok"}
        assert service.requests, "the Face API was never called"
        report = json.loads(store.get_bytes(report_key(cfg, run.run_id)))
        assert report["detectors"]["azure_calls"] == len(service.requests)
        assert report["detectors"]["both"] > 0
    finally:
        service.close()


def test_rejected_azure_key_fails_the_task_once_without_retries(dagbag, realness_env, tmp_path):
    """REALNESS_AZURE_ON_AUTH_ERROR=fail: a 401 is a configuration error, so no retry and a clear message."""
    from tests.fake_azure_face import FakeFaceService

    service = FakeFaceService(key="the-right-key")
    try:
        realness_env.setenv("REALNESS_AZURE_ENDPOINT", service.endpoint)
        realness_env.setenv("REALNESS_AZURE_KEY", "a-wrong-key")
        realness_env.setenv("REALNESS_AZURE_ON_AUTH_ERROR", "fail")
        cfg = RealnessConfig.from_env()
        store = open_store(cfg.resolved_store_uri)
        samples_dir = tmp_path / "videos"
        samples_dir.mkdir()
        from realness_tasks import samples

        clip = samples.face_video(samples_dir / "one.mp4", samples.sample_photos()[0].image, seconds=1.0, fps=4)
        store.upload(clip.path, "landing/one.mp4")

        run = run_dag(dagbag, "realness_ingest")
        assert str(run.state) == "failed"
        [extract] = [ti for ti in run.get_task_instances() if ti.task_id == "extract_faces"]
        assert str(extract.state) == "failed" and extract.try_number == 1
        # The object stays PENDING, so the next run retries it once the key is fixed.
        assert [r["status"] for r in ledger.entries(Database(cfg.resolved_database_url))] == ["PENDING"]
    finally:
        service.close()
