#!/usr/bin/env bash
# One-shot start-up of a Realness deployment (the airflow-init service); every other Airflow
# service waits for it to succeed. Safe to run again: every step converges.
#   1. refuses to start while .env still holds the placeholder secrets of .env.example;
#   2. migrates Airflow's metadata database;
#   3. creates the pool that caps concurrent TensorFlow-heavy tasks (the DAGs name it through
#      REALNESS_HEAVY_POOL);
#   4. sets the UI admin's password (SimpleAuthManager reads it from its passwords file);
#   5. applies sql/migrations to the verdict database, so analysts see the tables before the first run.
set -euo pipefail

placeholders=()
for name in $(compgen -e); do
    if [[ "${!name}" == *change-me* ]]; then
        placeholders+=("$name")
    fi
done
if (( ${#placeholders[@]} )); then
    echo "Refusing to start: these settings still hold a placeholder from .env.example: ${placeholders[*]}" >&2
    echo "Replace every change-me value in .env (docs/deploy.md says how to generate them)." >&2
    exit 1
fi

airflow db migrate

airflow pools set "${REALNESS_HEAVY_POOL:?}" "${HEAVY_POOL_SLOTS:?}" \
    "TensorFlow-heavy Realness tasks (MTCNN detection, training, scoring)"

python - <<'PY'
import json, os
from pathlib import Path

path = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
passwords = json.loads(path.read_text() or "{}") if path.exists() else {}
passwords[os.environ["AIRFLOW_ADMIN_USER"]] = os.environ["AIRFLOW_ADMIN_PASSWORD"]
path.parent.mkdir(parents=True, exist_ok=True)
path.write_text(json.dumps(passwords) + "\n")
path.chmod(0o600)
print(f"UI user {os.environ['AIRFLOW_ADMIN_USER']!r} set in {path}")
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
