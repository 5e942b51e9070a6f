"""DAG and plugin integrity: every DAG imports cleanly and cheaply, is tagged, documented and retried; plugins load light."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DAG_FILES = sorted((ROOT / "dags").glob("*.py"))
HEAVY_MODULES = ("tensorflow", "keras", "cv2", "mtcnn", "great_expectations", "pyarrow", "boto3")


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"realness_ingest", "realness_train", "realness_score"}


def test_every_dag_is_tagged_documented_and_retried(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md and dag.doc_md.strip(), f"{dag_id} has no doc_md"
        assert dag.catchup is False, f"{dag_id} would backfill"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_ingest_validates_the_whole_run_in_one_task(dagbag):
    """Great Expectations' import (about 2 s) is paid once per run, not once per batch of videos."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    dag = dagbag.dags["realness_ingest"]
    validate = dag.get_task("validate_shards")
    assert isinstance(dag.get_task("extract_faces"), MappedOperator)
    assert not isinstance(validate, MappedOperator)
    assert validate.upstream_task_ids == {"extract_faces"} and validate.downstream_task_ids == {"summarize"}


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_files_import_nothing_heavy(path):
    """Parsing runs every few seconds in the DAG processor: heavy libraries belong inside tasks."""
    probe = (f"import sys, runpy; sys.path.insert(0, {str(path.parent.parent / 'plugins')!r}); "
             f"runpy.run_path({str(path)!r}); "
             f"print(','.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded.splitlines()[-1:] in ([], [""]), f"{path.name} imports {loaded}"


PLUGIN_PROBE = """
import sys
from airflow import plugins_manager

plugins_manager.ensure_plugins_loaded()
assert plugins_manager.get_import_errors() == {}, plugins_manager.get_import_errors()
[page] = [a for a in plugins_manager.get_fastapi_plugins()[0] if a["url_prefix"] == "/realness"]
if sys.argv[1] == "build":   # what the api-server's first request to /realness/ does
    page["app"].app = sys.modules[type(page["app"]).__module__].verdicts_app()
print("heavy modules:", ",".join(m for m in sys.argv[2:] if m in sys.modules))
"""
PAGE_HEAVY_MODULES = (*HEAVY_MODULES, "matplotlib", "pandas", "numpy", "sklearn")


@pytest.mark.parametrize("stage", ["load", "build"])
def test_plugins_import_nothing_heavy(stage, tmp_path):
    """Every Airflow process (scheduler, dag-processor, each task) loads the plugins; the verdicts page is
    built in the api-server on its first request. Neither may drag in the pipeline's libraries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "REALNESS_"))}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", PLUGIN_PROBE, stage, *PAGE_HEAVY_MODULES], env=env, cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    [loaded] = [line for line in done.stdout.splitlines() if line.startswith("heavy modules:")]
    assert loaded == "heavy modules: ", f"loading the plugins ({stage}) imports {loaded}"
