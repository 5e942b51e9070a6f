"""The fault matrix: bad input and infrastructure faults, each with what is recorded and what a re-run does.

Every case asserts the status and reason recorded, the row counts before and after, and that a
re-run completes with nothing lost or duplicated. ``docs/reliability.md`` holds the same matrix as
a table; ``test_reliability_doc_lists_every_case`` keeps the two in step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from realness_tasks.config import ConfigurationError, RealnessConfig

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- configuration and connections

@pytest.fixture
def plugin(monkeypatch, tmp_path):
    """``plugins/realness_airflow.py`` as a worker imports it, with no connection defined."""
    monkeypatch.syspath_prepend(str(ROOT / "plugins"))
    for name in ("REALNESS_STORE_URI", "REALNESS_DATABASE_URL", "REALNESS_ALLOW_EMBEDDED_DATABASE",
                 "AIRFLOW_CONN_AWS_DEFAULT", "AIRFLOW_CONN_REALNESS_DB", "AIRFLOW_CONN_AZURE_FACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    sys.modules.pop("realness_airflow", None)
    import realness_airflow

    return realness_airflow


def test_fault_connection_lookup_glitch_fails_the_task(plugin, monkeypatch):
    """A lookup that fails for any reason but "not defined" raises instead of falling back to a local file."""
    from airflow.sdk import BaseHook

    def unreachable(cls, conn_id):
        raise ConnectionError(f"execution API unreachable while reading {conn_id}")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(unreachable))
    with pytest.raises(ConnectionError, match="unreachable"):
        plugin.load_config()


def test_fault_undefined_connections_fall_back_to_the_environment(plugin, tmp_path):
    cfg = plugin.load_config()
    assert cfg.resolved_database_url == f"sqlite:///{(tmp_path / 'home' / 'realness.db').resolve()}"


def test_fault_embedded_database_beside_a_remote_store_is_refused(plugin, monkeypatch):
    monkeypatch.setenv("REALNESS_STORE_URI", "s3://archive/realness")
    with pytest.raises(ConfigurationError, match="REALNESS_DATABASE_URL"):
        plugin.load_config()
    monkeypatch.setenv("REALNESS_ALLOW_EMBEDDED_DATABASE", "true")
    assert plugin.load_config().resolved_database_url.startswith("sqlite:///")
    monkeypatch.setenv("REALNESS_ALLOW_EMBEDDED_DATABASE", "false")
    monkeypatch.setenv("REALNESS_DATABASE_URL", "postgresql+psycopg2://u:p@db/realness")
    assert plugin.load_config().resolved_database_url.startswith("postgresql")


def test_fault_local_store_with_embedded_database_needs_no_permission(tmp_path):
    RealnessConfig.from_env({}, home=str(tmp_path)).check_database_placement()
