"""Run one DAG of ``dags/`` through Airflow's ``dag.test()`` in this process: ``python scripts/run_dag.py DAG_ID``.

``realness demo`` runs each of its DAGs with it, so that the ``realness_tasks`` package never
imports Airflow. Exit status 1 when a DAG file does not import or the run does not succeed.
"""

from __future__ import annotations

import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parent.parent / "dags"


def run_dag(dag_id: str) -> int:
    """Parse the DAG files and run ``dag_id`` once; 0 when its run succeeded."""
    from airflow.dag_processing.dagbag import DagBag

    dagbag = DagBag(dag_folder=str(DAGS))
    if dagbag.import_errors:
        print(f"DAG import errors: {dagbag.import_errors}", file=sys.stderr)
        return 1
    run = dagbag.get_dag(dag_id).test()
    if str(run.state) != "success":
        print(f"{dag_id} ended {run.state}; see the log above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_dag(sys.argv[1]))
