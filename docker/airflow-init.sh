#!/usr/bin/env bash
# One-shot start-up of a Realness deployment (the airflow-init service); every other Airflow
# service waits for it to succeed. Safe to run again: every step converges. (The preflight service
# has already refused placeholder secrets before PostgreSQL started.)
#   1. migrates Airflow's metadata database (with the FAB auth manager's tables);
#   2. creates the pool that caps concurrent TensorFlow-heavy tasks (the DAGs name it through
#      REALNESS_HEAVY_POOL);
#   3. creates the UI admin (FAB role Admin), or resets its password to AIRFLOW_ADMIN_PASSWORD;
#   4. applies sql/migrations to the verdict database, so analysts see the tables before the first run.
set -euo pipefail

airflow db migrate

airflow pools set "${REALNESS_HEAVY_POOL:?}" "${HEAVY_POOL_SLOTS:?}" \
    "TensorFlow-heavy Realness tasks (MTCNN detection, training, scoring)"

# Through FAB's security manager, as `airflow users create` does, but converging (create, or reset the
# password) and without the password on a command line.
python - <<'PY'
import os

from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

username, password = os.environ["AIRFLOW_ADMIN_USER"], os.environ["AIRFLOW_ADMIN_PASSWORD"]
with get_application_builder() as appbuilder:
    security = appbuilder.sm
    user = security.find_user(username=username)
    if user is None:
        user = security.add_user(username, "Realness", "Admin", f"{username}@localhost", security.find_role("Admin"), password)
        if not user:
            raise SystemExit(f"Could not create the UI admin {username!r}")
        print(f"UI admin {username!r} created")
    elif security.reset_password(user.id, password):
        print(f"UI admin {username!r}: password set from AIRFLOW_ADMIN_PASSWORD")
    else:
        raise SystemExit(f"Could not reset the password of the UI admin {username!r}")
PY

PYTHONPATH="${AIRFLOW__CORE__PLUGINS_FOLDER:-${AIRFLOW_HOME:-/opt/airflow}/plugins}:${PYTHONPATH:-}" python - <<'PY'
from realness_airflow import load_config
from realness_tasks.db import Database

url = load_config().resolved_database_url
if not url.startswith("postgresql"):
    raise SystemExit(f"The realness_db connection is missing or not PostgreSQL; verdicts would go to {url}")
Database(url).dispose()
print("Verdict database migrated:", url.split("@")[-1])
PY
