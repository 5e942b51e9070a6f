"""Shared test fixtures: real services (a local S3 server over HTTP, PostgreSQL) and Airflow's home.

Services that a developer's machine may lack (PostgreSQL, Redis) make their tests skip with the
reason; with ``REALNESS_REQUIRE_SERVICES=1`` (set by ``.ci/run``) a missing service fails instead.
"""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path

import pytest

from bench.common import free_port, fresh_database

ROOT = Path(__file__).resolve().parent.parent

# Airflow reads its configuration at import time: point it at a throw-away home before any test imports it.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="realness-airflow-"))
os.environ.setdefault("AIRFLOW_HOME", str(_AIRFLOW_HOME))
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(ROOT / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{_AIRFLOW_HOME}/airflow.db")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# MTCNN's LiteRT networks: converted (with TensorFlow) by the session's first detection, then shared by
# every test and task process, whatever its home; the deployment does the same with /opt/realness/weights.
MTCNN_NETWORKS_DIR = os.environ.setdefault("REALNESS_DETECTION_NETWORKS_DIR",
                                           tempfile.mkdtemp(prefix="realness-mtcnn-networks-"))

REQUIRE_SERVICES = os.environ.get("REALNESS_REQUIRE_SERVICES", "") == "1"


def _service_missing(what: str) -> None:
    message = f"{what} is not reachable; start it or unset REALNESS_REQUIRE_SERVICES"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(f"{what} not reachable on this machine (CI sets REALNESS_REQUIRE_SERVICES=1 to require it)")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-compatible HTTP server (moto) on 127.0.0.1 for the whole session."""
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(s3_endpoint):
    from realness_tasks.settings import S3Settings

    return S3Settings(endpoint_url=s3_endpoint, access_key_id="testing", secret_access_key="testing")


@pytest.fixture
def s3_bucket_uri(s3_settings) -> str:
    """A fresh bucket on the local S3 server; returns ``s3://bucket/root``."""
    import boto3

    bucket = f"realness-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_settings.endpoint_url, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/root"


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """URL of the PostgreSQL server's admin database, or a skip/fail when it is not there."""
    url = os.environ.get("REALNESS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except Exception:  # noqa: BLE001 - any failure here means "no server"
        _service_missing(f"PostgreSQL at {url}")
    return url


@pytest.fixture
def postgres_url(postgres_server_url):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_database(postgres_server_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not port_open("127.0.0.1", 6379):
        _service_missing("Redis at 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """Both verdict-database engines: the embedded default and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'realness.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def local_config(tmp_path):
    """A configuration on the embedded defaults, rooted in the test's temporary directory."""
    from realness_tasks.config import RealnessConfig

    return RealnessConfig.from_env({}, home=str(tmp_path / "home"), detection={"networks_dir": MTCNN_NETWORKS_DIR})


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite in the session's AIRFLOW_HOME), migrated by Airflow's own CLI."""
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True,
                   env=os.environ.copy(), timeout=300)
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture
def realness_env(monkeypatch, tmp_path):
    """Point the DAGs' configuration (environment variables, as in deployment) at a per-test home."""
    home = tmp_path / "realness-home"
    monkeypatch.setenv("REALNESS_HOME", str(home))
    for name in ("REALNESS_STORE_URI", "REALNESS_DATABASE_URL", "AIRFLOW_CONN_AWS_DEFAULT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def run_dag(dagbag, dag_id: str, conf: dict | None = None):
    """Run one DAG through Airflow (``dag.test()``: real scheduler loop in-process, real metadata DB)."""
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, f"{dag_id} did not load: {dagbag.import_errors}"
    return dag.test(run_conf=conf or {})
