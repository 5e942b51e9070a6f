"""
### realness_train

Retrains the real/fake classifier (a pretrained EfficientNet-Lite0 backbone by default, + Dense 512 +
Dense 128, sigmoid) on the labelled, validated face shards, registers the model with its metrics and
plots under the `models/` prefix and in the `model_versions` table, and promotes it to champion only if
its held-out video AUC reaches `REALNESS_TRAINING_MIN_VIDEO_AUC` and it beats the current champion on
the same held-out videos. A champion that cannot be loaded for that comparison fails the run.

Runs weekly, and when `realness_face_shards` is updated, but an asset-triggered run trains only when
at least `REALNESS_TRAINING_MIN_NEW_FACES` labelled faces arrived since the last model. A promotion
updates the `realness_champion_model` asset, which makes `realness_score` rescore with the new model.

Without any labelled fake (a first model trained on real footage and self-blended copies of it), the
model is registered but not promoted. Trigger the DAG with `approve_version` (and `approve_reason`)
to promote such a version instead of training: the operator's reason is recorded beside the gate's.
See `docs/training.md`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task
from realness_airflow import CHAMPION_MODEL, FACE_SHARDS, HEAVY_POOL, TRAIN_SCHEDULE, TRAINING_QUEUE


@dag(
    dag_id="realness_train",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(TRAIN_SCHEDULE, timezone="UTC"),
        assets=FACE_SHARDS),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["realness", "training"],
    params={"approve_version": Param("", type="string", description="promote this registered version instead of "
                                                                      "training (an operator's approval)"),
            "approve_reason": Param("", type="string", description="who approves it and on what evidence")},
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
)
def realness_train():
    @task.short_circuit
    def enough_new_faces(dag_run=None, params=None) -> bool:
        """Scheduled and manual runs always train (or approve); asset-triggered ones wait for enough new labels."""
        if dag_run.run_type != "asset_triggered" or params.get("approve_version"):  # a str enum: compares by value
            return True
        from realness_airflow import load_config
        from realness_tasks.resources import run_resources
        from realness_tasks.train import labelled_faces_since

        cfg = load_config()
        with run_resources(cfg) as run:
            new = labelled_faces_since(cfg, run.store, run.db, None)
        print(f"{new} new labelled faces since the last model (minimum {cfg.training.min_new_faces})")
        return new >= cfg.training.min_new_faces

    @task(pool=HEAVY_POOL, queue=TRAINING_QUEUE, execution_timeout=timedelta(hours=12))
    def train_and_register(dag_run=None, params=None) -> dict:
        from dataclasses import asdict

        from realness_airflow import load_config
        from realness_tasks.promotion import approve_version
        from realness_tasks.train import run_training

        if params.get("approve_version"):
            return approve_version(load_config(), params["approve_version"], params.get("approve_reason") or "")

        outcome = run_training(load_config(), dag_run.run_id, progress=print)
        print(f"model {outcome.version} on {outcome.backbone}: "
              f"{'promoted' if outcome.promoted else 'not promoted'} ({outcome.reason})")
        return {k: v for k, v in asdict(outcome).items() if k in ("version", "promoted", "reason", "metrics",
                                                                  "backbone")}

    @task(outlets=[CHAMPION_MODEL])
    def announce_champion(outcome: dict, outlet_events=None) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        if not outcome["promoted"]:
            raise AirflowSkipException(f"champion unchanged: {outcome['reason']}")
        outlet_events[CHAMPION_MODEL].extra = {"version": outcome["version"]}
        return outcome["version"]

    enough_new_faces() >> announce_champion(train_and_register())


realness_train()
