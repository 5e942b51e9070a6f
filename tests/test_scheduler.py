"""The DAGs under Airflow's own components, as deployed, not in-process.

tests/test_dag_ingest.py runs ``realness_ingest`` inside the test with ``dag.test()``. Here
(tests/airflow_stack.py) the scheduler, dag-processor and api-server are separate processes on a
PostgreSQL metadata database: the scheduler hands the mapped ``extract_faces`` tasks to the
LocalExecutor's worker processes, or over Redis to a Celery worker that consumes the detection
queue; the tasks report through the Execution API; and the asset ingest updates makes the
scheduler start ``realness_score`` by itself. The verdict tables are on PostgreSQL too.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from bench.airflow_stack import FINAL_RUN_STATES, AirflowStack, airflow_stack
from realness_tasks import ledger
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.storage import ObjectStore, open_store
from tests.conftest import MTCNN_NETWORKS_DIR, fresh_database
from tests.landing import Landing, populate

pytestmark = pytest.mark.slow

INGEST, SCORE = "realness_ingest", "realness_score"
RUN_TIMEOUT_S = 240
DETECTION_QUEUE = "detection"
MIN_TASKS = RealnessConfig().min_tasks_per_run
BROKER_REDIS_DB = 5  # away from db 0, which the other Redis users of the machine use


@pytest.fixture
def verdict_database(postgres_server_url):
    with fresh_database(postgres_server_url) as url:
        yield url


def realness_settings(tmp_path: Path, verdict_database: str, **extra: str) -> dict[str, str]:
    """The tasks' configuration, as environment variables the way a deployment sets it."""
    return {"REALNESS_HOME": str(tmp_path / "realness-home"), "REALNESS_DATABASE_URL": verdict_database,
            "REALNESS_SAMPLING_EVERY_SECONDS": "0.5", "REALNESS_DETECTION_NETWORKS_DIR": MTCNN_NETWORKS_DIR, **extra}


def land_videos(settings: dict[str, str], workdir: Path, *, with_bad_input: bool) -> tuple[ObjectStore, Landing]:
    cfg = RealnessConfig.from_env(settings)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    return store, populate(store, workdir / "videos", with_bad_input=with_bad_input)


def trigger_ingest(stack: AirflowStack) -> str:
    """Trigger ``realness_ingest`` from the CLI and unpause it; returns the run id.

    Unpausing a cron DAG with ``catchup=False`` makes the scheduler create the latest interval's run
    at once. The manual run takes that interval's logical date, so the scheduler finds the interval
    taken and does not start a second run that could ingest the landing objects before ours.
    """
    pending = stack.query("SELECT next_dagrun FROM dag WHERE dag_id = :d", d=INGEST)[0]["next_dagrun"]
    run_id = f"manual__test_{uuid.uuid4().hex[:8]}"
    stack.airflow("dags", "trigger", INGEST, "--run-id", run_id, "--logical-date", pending.isoformat())
    stack.airflow("dags", "unpause", INGEST)
    return run_id


def assert_ledger_matches(settings: dict[str, str], store: ObjectStore, landing: Landing) -> None:
    db = Database(settings["REALNESS_DATABASE_URL"])
    try:
        landing.assert_statuses({store.key_for(r["source_uri"]): r["status"] for r in ledger.entries(db)})
    finally:
        db.dispose()


def most_at_once(task_instances: list[dict]) -> int:
    """The most task instances that were running at the same moment, from their start and end times."""
    edges = sorted([(ti["start_date"], 1) for ti in task_instances] + [(ti["end_date"], -1) for ti in task_instances])
    running = peak = 0
    for _, step in edges:  # at equal times an end (-1) sorts before a start: touching is not overlapping
        running += step
        peak = max(peak, running)
    return peak


def xcom_value(stack: AirflowStack, dag_id: str, run_id: str, task_id: str):
    rows = stack.query("SELECT value FROM xcom WHERE dag_id = :d AND run_id = :r AND task_id = :t "
                       "AND key = 'return_value'", d=dag_id, r=run_id, t=task_id)
    assert len(rows) == 1, rows
    value = rows[0]["value"]
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def test_local_executor_runs_mapped_ingest_in_parallel_and_the_asset_starts_scoring(
        postgres_server_url, verdict_database, tmp_path):
    # One video per mapped task (the override of automatic batching), each held for 3 s after its
    # download: tasks dispatched together are then seen running at once however fast detection is,
    # and tasks dispatched one at a time (what this checks against) never are.
    settings = realness_settings(tmp_path, verdict_database, REALNESS_VIDEOS_PER_TASK="1",
                                 REALNESS_TEST_HOLD_AT="ingest.downloaded=3")
    store, landing = land_videos(settings, tmp_path, with_bad_input=True)

    with airflow_stack(tmp_path, postgres_server_url, env=settings) as stack:
        stack.wait_for_dags(INGEST, SCORE)
        stack.airflow("dags", "unpause", SCORE)  # never triggered by hand below
        run_id = trigger_ingest(stack)
        state = stack.wait_for_run(INGEST, run_id, RUN_TIMEOUT_S)
        assert state == "success", stack.report(INGEST, run_id)

        extracts = stack.task_instances(INGEST, run_id, "extract_faces")
        assert len(extracts) == len(landing.videos)
        batches = xcom_value(stack, INGEST, run_id, "discover")
        assert sorted(ref["key"] for batch in batches for ref in batch) == sorted(landing.videos)
        assert {ti["state"] for ti in extracts} == {"success"}
        assert most_at_once(extracts) >= 2, [(ti["start_date"], ti["end_date"]) for ti in extracts]
        assert len({ti["pid"] for ti in extracts}) == len(extracts)
        assert_ledger_matches(settings, store, landing)

        def finished_asset_runs() -> list[dict]:
            runs = stack.query("SELECT id, run_id, state FROM dag_run "
                               "WHERE dag_id = :d AND run_type = 'asset_triggered'", d=SCORE)
            return [r for r in runs if r["state"] in FINAL_RUN_STATES]

        scoring = stack.wait_for("an asset-triggered realness_score run to finish", finished_asset_runs, RUN_TIMEOUT_S)
        assert len(scoring) == 1
        events = stack.query("SELECT e.source_dag_id, e.source_run_id FROM asset_event e "
                             "JOIN dagrun_asset_event l ON l.event_id = e.id WHERE l.dag_run_id = :id",
                             id=scoring[0]["id"])
        assert events == [{"source_dag_id": INGEST, "source_run_id": run_id}]
        assert scoring[0]["state"] == "success", stack.report(SCORE, scoring[0]["run_id"])
        # No model was ever trained here: scoring says so instead of failing.
        assert xcom_value(stack, SCORE, scoring[0]["run_id"], "score_and_publish")["status"] == "NO_CHAMPION"


def test_celery_worker_takes_detection_tasks_from_their_own_queue(
        postgres_server_url, redis_url, verdict_database, tmp_path):
    settings = realness_settings(tmp_path, verdict_database, REALNESS_DETECTION_QUEUE=DETECTION_QUEUE)
    store, landing = land_videos(settings, tmp_path, with_bad_input=False)
    broker = redis_url.rsplit("/", 1)[0] + f"/{BROKER_REDIS_DB}"

    with airflow_stack(tmp_path, postgres_server_url, env=settings, celery_broker=broker,
                       celery_queues=("default", DETECTION_QUEUE)) as stack:
        stack.wait_for_dags(INGEST)
        run_id = trigger_ingest(stack)
        state = stack.wait_for_run(INGEST, run_id, RUN_TIMEOUT_S)
        assert state == "success", stack.report(INGEST, run_id)

        tasks = stack.task_instances(INGEST, run_id)
        extracts = [ti for ti in tasks if ti["task_id"] == "extract_faces"]
        assert len(extracts) == MIN_TASKS  # automatic batching: a few small videos fill the parallel slots
        assert {ti["queue"] for ti in extracts} == {DETECTION_QUEUE}
        assert {ti["queue"] for ti in tasks if ti["task_id"] != "extract_faces"} == {"default"}
        # Every task went through Celery, and the worker's own log shows it received each one.
        worker_log = stack.component_log("celery-worker")
        assert all(ti["external_executor_id"] and ti["external_executor_id"] in worker_log for ti in tasks), \
            [ti["external_executor_id"] for ti in tasks]
        assert_ledger_matches(settings, store, landing)
