#!/usr/bin/env bash
# Run the Realness test suite: creates .venv with the pinned requirements on first use, then pytest.
# Tests that need PostgreSQL (127.0.0.1:5432) or Redis (127.0.0.1:6379) skip with the reason when
# those are missing; REALNESS_REQUIRE_SERVICES=1 (set by .ci/run) turns such skips into failures.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup-env.sh
exec python -m pytest "$@"
