"""
### realness_score

Scores validated face shards with the champion model (TFLite/XNNPACK engine exported at registration),
labels each face Real/Fake with a confidence, aggregates faces to a per-video verdict (FAKE, REAL,
UNCERTAIN, NO_FACE, ERROR) and publishes the verdict tables in one transaction, plus a Parquet copy
under the `verdicts/` prefix. Then writes an HTML report (faces, timeline, Grad-CAM heatmaps) for each
verdict of the run in `REALNESS_REPORT_VERDICTS` (FAKE and UNCERTAIN by default) under `reports/videos/`.

Scheduled on new face shards and on a new champion (assets), with a nightly sweep. Idempotent: a video
already scored by the champion is not scored again; re-running a day yields the same rows.
See `docs/scoring.md` and `sql/queries/` for what analysts run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, dag, task
from realness_airflow import CHAMPION_MODEL, DETECTION_QUEUE, FACE_SHARDS, HEAVY_POOL, SCORE_SCHEDULE


@dag(
    dag_id="realness_score",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(SCORE_SCHEDULE, timezone="UTC"),
        assets=(FACE_SHARDS | CHAMPION_MODEL)),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["realness", "scoring"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
)
def realness_score():
    @task(pool=HEAVY_POOL, queue=DETECTION_QUEUE, execution_timeout=timedelta(hours=4))
    def score_and_publish() -> dict:
        from dataclasses import asdict

        from realness_airflow import load_config, run_id_from_context
        from realness_tasks.scoring import run_scoring

        run_id, run_date = run_id_from_context()
        outcome = run_scoring(load_config(), run_id, run_date, progress=print)
        print(f"scoring: {outcome}")
        return {k: v for k, v in asdict(outcome).items() if not isinstance(v, (list, dict)) or len(str(v)) < 2000}

    @task(pool=HEAVY_POOL, queue=DETECTION_QUEUE, execution_timeout=timedelta(hours=2))
    def write_reports(outcome: dict) -> int:
        from realness_airflow import load_config
        from realness_tasks.reports import write_run_reports

        written = write_run_reports(load_config(), outcome["run_id"], progress=print)
        print(f"reports: {len(written)} written")
        return len(written)

    write_reports(score_and_publish())


realness_score()
