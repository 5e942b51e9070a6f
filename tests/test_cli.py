"""The ``realness`` command: the one-off steps, ``status``, and the README's demo."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from realness_tasks.cli import main
from realness_tasks.config import RealnessConfig
from realness_tasks.storage import open_store
from tests.landing import populate


def test_ingest_then_status_from_the_command_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REALNESS_SAMPLING_EVERY_SECONDS", "0.5")
    store = open_store(RealnessConfig.from_env().resolved_store_uri)
    populate(store, tmp_path / "videos")

    assert main(["ingest", "--run-id", "backfill-1", "--date", "2026-11-01"]) == 0
    out = capsys.readouterr().out
    assert "9 object(s)" in out and "'PUBLISHED': 3" in out
    assert "NOT_VIDEO" in out and "broken/notes.avi" in out  # problems are listed with their reasons
    assert any(o.key.startswith("faces/date=2026-11-01/") for o in store.list("faces/"))

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "PUBLISHED" in out and "UNREADABLE" in out
    assert "latest verdicts:" in out and "(none)" in out  # nothing scored yet


@pytest.mark.slow
def test_demo_runs_the_three_dags_and_prints_verdicts(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "REALNESS_"))}
    # Three videos per class leave one test video of each: too few for the quality gate to mean
    # anything, so this plumbing check turns the floor off (the full demo passes it; see README).
    env["REALNESS_TRAINING_MIN_VIDEO_AUC"] = "0"
    result = subprocess.run([sys.executable, "-m", "realness_tasks.cli", "demo", "--home", str(tmp_path / "demo"),
                             "--videos", "3"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for step in ("[3/5] realness_ingest", "[4/5] realness_train", "[5/5] realness_score"):
        assert step in out
    table = out[out.index("verdicts ("):]
    rows = [line for line in table.splitlines() if "/landing/demo/" in line]
    assert len(rows) == 6 and all(any(v in row for v in ("FAKE", "REAL", "UNCERTAIN")) for row in rows)
    assert (tmp_path / "demo" / "realness.db").exists()
