"""Glue between Airflow and ``realness_tasks``: configuration from Airflow connections.

Airflow puts ``plugins/`` on ``sys.path``, so DAG files import ``realness_airflow``. Connections
(all optional; the environment is the fallback):

- ``aws_default``: S3 login/password, ``endpoint_url`` and ``region_name`` in its extra (MinIO or AWS).
- ``realness_db``: the verdict database (a PostgreSQL connection; its URI is used as is).
- ``azure_face``: host = the Face endpoint, password = the key.

The connection ids can be renamed with ``REALNESS_AWS_CONN_ID``, ``REALNESS_DB_CONN_ID`` and
``REALNESS_AZURE_CONN_ID``. ``REALNESS_REQUIRED_CONNECTIONS`` lists the ones that must exist: Airflow's
Task SDK answers "not defined" also when its lookup could not reach the API server, so only that
list tells a deployment's missing connection from an optional one.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import Asset

log = logging.getLogger(__name__)

# Updated by realness_ingest when validated face shards are published.
FACE_SHARDS = Asset("realness_face_shards")
# Updated by realness_train when a new model is promoted to champion.
CHAMPION_MODEL = Asset("realness_champion_model")



def _wiring():
    """The settings DAG files need at parse time (``realness_tasks.config`` imports nothing heavy)."""
    from realness_tasks.config import RealnessConfig

    return RealnessConfig.from_env()


_WIRING = _wiring()
# Where the TensorFlow-heavy tasks run: a pool caps how many run at once, queues pick the workers.
HEAVY_POOL = _WIRING.heavy_pool
DETECTION_QUEUE = _WIRING.detection_queue
TRAINING_QUEUE = _WIRING.training_queue
INGEST_SCHEDULE = _WIRING.ingest_schedule
TRAIN_SCHEDULE = _WIRING.train_schedule
SCORE_SCHEDULE = _WIRING.score_schedule


def _connection(conn_id: str, required: tuple[str, ...]):
    """The connection ``conn_id``, or None when it is not defined and not in ``required``.

    Only "not defined" falls back to the environment: any other failure of the lookup (a secrets
    backend that raises, a malformed connection) raises. The Task SDK reports a lookup channel that
    failed as "not defined" too (its execution-API backend returns None on any error), so a
    connection a deployment relies on belongs in ``REALNESS_REQUIRED_CONNECTIONS``: then not
    finding it fails the task instead of going on with a silently different database or store.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException  # "The conn_id `x` isn't defined"

    from realness_tasks.settings import ConfigurationError

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        if conn_id in required:
            raise ConfigurationError(
                f"the Airflow connection {conn_id!r} was not found, and REALNESS_REQUIRED_CONNECTIONS requires it: "
                "define it, or check that the worker reaches the API server (Airflow reports a failed lookup "
                "as not defined)") from None
        return None


def _conn_ids() -> dict[str, str]:
    """Which connection gives the store's credentials, the verdict database and the Azure Face key."""
    return {"aws": os.environ.get("REALNESS_AWS_CONN_ID", "aws_default"),
            "database": os.environ.get("REALNESS_DB_CONN_ID", "realness_db"),
            "azure": os.environ.get("REALNESS_AZURE_CONN_ID", "azure_face")}


def _required_connections(conn_ids: dict[str, str]) -> tuple[str, ...]:
    """``REALNESS_REQUIRED_CONNECTIONS``, refusing an id Realness never reads (a typo would require nothing)."""
    from realness_tasks.config import RealnessConfig
    from realness_tasks.settings import ConfigurationError

    required = RealnessConfig.from_env().required_connection_ids
    unknown = sorted(set(required) - set(conn_ids.values()))
    if unknown:
        raise ConfigurationError(f"REALNESS_REQUIRED_CONNECTIONS names {', '.join(unknown)}: Realness reads only "
                                 f"{', '.join(conn_ids.values())} (REALNESS_AWS_CONN_ID, REALNESS_DB_CONN_ID, "
                                 "REALNESS_AZURE_CONN_ID)")
    return required


def _database_url(conn) -> str:
    uri = conn.get_uri()
    for old, new in (("postgres://", "postgresql+psycopg2://"), ("postgresql://", "postgresql+psycopg2://")):
        if uri.startswith(old):
            return new + uri[len(old):]
    return uri


def load_config():
    """The task's ``RealnessConfig``: environment variables, overridden by Airflow connections."""
    from realness_tasks.config import RealnessConfig

    overrides: dict[str, Any] = {}
    conn_ids = _conn_ids()
    required = _required_connections(conn_ids)
    aws = _connection(conn_ids["aws"], required)
    if aws is not None:
        extra = aws.extra_dejson
        overrides["s3"] = {
            "access_key_id": aws.login or None,
            "secret_access_key": aws.password or None,
            "endpoint_url": extra.get("endpoint_url") or (extra.get("service_config", {}).get("s3", {}) or {}).get("endpoint_url"),
            "region": extra.get("region_name"),
        }
    database = _connection(conn_ids["database"], required)
    if database is not None:
        overrides["database_url"] = _database_url(database)
    azure = _connection(conn_ids["azure"], required)
    if azure is not None and azure.host and azure.password:
        host = azure.host if azure.host.startswith("http") else f"https://{azure.host}"
        overrides["azure"] = {"endpoint": host, "key": azure.password}
    config = RealnessConfig.from_env(**overrides)
    config.check_database_placement()
    config.check_store_root()
    log.info("Realness store %s, database %s, Azure Face %s", config.resolved_store_uri,
             config.resolved_database_url.split("@")[-1], "on" if config.azure.enabled else "off (MTCNN only)")
    return config


def run_id_from_context() -> tuple[str, str]:
    """(run id, run date YYYY-MM-DD) of the running DAG run, for ledger rows and shard paths."""
    from airflow.sdk import get_current_context

    context = get_current_context()
    run = context["dag_run"]
    when = context.get("logical_date") or run.run_after
    return run.run_id, when.strftime("%Y-%m-%d")
