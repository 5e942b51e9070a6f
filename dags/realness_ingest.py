"""
### realness_ingest

Turns videos that land under the landing prefix into validated Parquet face shards.

`discover` lists new objects (by content hash and etag; re-uploads and re-runs are skipped) ->
`extract_faces`, one mapped task per batch of videos (batched from their sizes, `REALNESS_VIDEOS_PER_TASK`
overrides; see `docs/ingest.md`): sample frames with
OpenCV, detect faces with MTCNN (plus Azure AI Vision Face when configured), crop, stage a shard ->
`validate_shards`, one task for the run's shards (Great Expectations imported once, a few hundred
shards per suite run): a passing shard is published under the faces prefix, a failing one is
quarantined with its own report -> `summarize` writes the run report ->
`announce_shards` updates the `realness_face_shards` asset when new shards were published, which
schedules `realness_score`.

Every object ends with a row in the `ingest_ledger` table; see `docs/ingest.md`.
Trigger with `{"reprocess": true}` to process already-seen objects again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, task
from realness_airflow import DETECTION_QUEUE, FACE_SHARDS, HEAVY_POOL, INGEST_SCHEDULE


@dag(
    dag_id="realness_ingest",
    schedule=INGEST_SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["realness", "ingest"],
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
    params={"reprocess": Param(False, type="boolean", description="Process objects already in the ledger again")},
)
def realness_ingest():
    @task
    def discover(params=None, ti=None, run_id=None) -> list[list[dict]]:
        """Returns the batches of videos to extract; what discovery recorded or skipped itself goes, as the
        ``accounted`` XCom, to the run report (wired below: ``summarize(..., accounted=found["accounted"])``)."""
        from dataclasses import asdict

        from realness_airflow import load_config
        from realness_tasks.discovery import batch_refs, scan_landing
        from realness_tasks.resources import run_resources

        cfg = load_config()
        with run_resources(cfg) as run:
            found = scan_landing(cfg, run.store, run.db, reprocess=bool(params and params.get("reprocess")),
                                 run_id=run_id)
        ti.xcom_push(key="accounted", value={"recorded": [o.to_dict() for o in found.recorded],
                                             "skipped": found.skipped})
        from airflow.sdk import conf

        max_map = conf.getint("core", "max_map_length", fallback=1024)
        return [[asdict(r) for r in batch] for batch in batch_refs(found.refs, cfg, max_map)]

    @task(pool=HEAVY_POOL, queue=DETECTION_QUEUE, execution_timeout=timedelta(hours=2))
    def extract_faces(batch: list[dict]) -> list[dict]:
        from realness_airflow import load_config, run_id_from_context
        from realness_tasks.embeddings import build_embedder
        from realness_tasks.faces import build_detector
        from realness_tasks.discovery import VideoRef
        from realness_tasks.extraction import BatchProgress, process_video
        from realness_tasks.resources import run_resources

        from airflow.sdk.exceptions import AirflowFailException
        from realness_tasks.azure_face import AzureAuthError

        run_id, run_date = run_id_from_context()
        with run_resources(load_config()) as run:
            cfg = run.cfg
            detector = build_detector(cfg)
            progress = BatchProgress([VideoRef(**ref) for ref in batch], logging.getLogger("realness.ingest").info)
            try:
                embedder = build_embedder(cfg)
                return [process_video(cfg, run.store, run.db, ref, run_id=run_id, run_date=run_date,
                                      detector=detector, progress=progress, embedder=embedder).to_dict()
                        for ref in progress]
            except AzureAuthError as exc:  # a configuration error: retrying cannot help
                raise AirflowFailException(str(exc)) from exc

    @task
    def validate_shards(batches: list[list[dict]]) -> list[dict]:
        """One task for the whole run (a reduce over extract_faces): Great Expectations is imported once
        and validates the run's shards a few hundred per suite run."""
        from realness_airflow import load_config, run_id_from_context
        from realness_tasks.ledger import LedgerEntry
        from realness_tasks.publication import validate_and_publish
        from realness_tasks.resources import run_resources

        run_id, run_date = run_id_from_context()
        outcomes = [LedgerEntry.from_dict(o) for batch in batches for o in batch]
        with run_resources(load_config()) as run:
            validated = validate_and_publish(run.cfg, run.store, run.db, outcomes, run_id=run_id, run_date=run_date)
        return [o.to_dict() for o in validated]

    @task
    def summarize(validated: list[dict], accounted: dict | None = None, dag_run=None) -> dict:
        """The run report, from the validated outcomes and what ``discover`` ``accounted`` for itself."""
        from realness_airflow import load_config
        from realness_tasks.ledger import LedgerEntry
        from realness_tasks.resources import run_resources
        from realness_tasks.run_summary import write_run_summary

        accounted = accounted or {}
        outcomes = [LedgerEntry.from_dict(o) for o in accounted.get("recorded", [])]
        outcomes += [LedgerEntry.from_dict(o) for o in validated]
        with run_resources(load_config()) as run:
            summary = write_run_summary(run.cfg, run.store, run.db, outcomes, run_id=dag_run.run_id,
                                        dag_id=dag_run.dag_id, started_at=dag_run.start_date,
                                        skipped=accounted.get("skipped", []))
        print(f"ingest summary: {summary['statuses']}, {summary['faces']} faces published")
        return {k: summary[k] for k in ("videos", "statuses", "faces", "published")}

    @task(outlets=[FACE_SHARDS])
    def announce_shards(summary: dict, outlet_events=None) -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        if not summary["published"]:
            raise AirflowSkipException("no new face shards in this run")
        outlet_events[FACE_SHARDS].extra = {"shards": summary["published"][:100], "count": len(summary["published"])}
        return len(summary["published"])

    found = discover()
    announce_shards(summarize(validate_shards(extract_faces.expand(batch=found)), accounted=found["accounted"]))


realness_ingest()
