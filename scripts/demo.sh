#!/usr/bin/env bash
# Set up (first run: .venv with the pinned requirements) and run the whole pipeline locally through
# Airflow on sample videos, then print the verdict table. Everything lands in .realness-demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
exec realness demo "$@"
