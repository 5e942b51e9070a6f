# Sourced by the scripts: make .venv (Python 3.11) with the pinned requirements if it is missing or stale:
# requirements-dev.txt, which includes the runtime set requirements.txt (what the image installs), and
# requirements-nodeps.txt (a file-only package installed without its dependencies).
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    echo "[realness] creating .venv with $($PYTHON --version)" >&2
    "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=.venv/.requirements.sha256
want="$(sha256sum requirements*.txt pyproject.toml | sha256sum | cut -c1-64)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "[realness] installing pinned requirements (first run takes a few minutes)" >&2
    python -m pip install --quiet --upgrade pip
    python -m pip install --quiet -r requirements-dev.txt
    python -m pip install --quiet --no-deps --require-hashes -r requirements-nodeps.txt
    python -m pip install --quiet --no-deps -e .
    echo "$want" > "$stamp"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
