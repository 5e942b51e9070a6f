"""The fault matrix: bad input and infrastructure faults, each with what is recorded and what a re-run does.

Every case asserts the status and reason recorded, the row counts before and after, and that a
re-run completes with nothing lost or duplicated. ``docs/reliability.md`` holds the same matrix as
a table; ``test_reliability_doc_lists_every_case`` keeps the two in step.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from realness_tasks.config import RealnessConfig
from realness_tasks.settings import ConfigurationError

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


def test_fault_required_connection_not_found_fails_the_task(plugin, monkeypatch):
    """The Task SDK answers "not defined" when its lookup channel fails: a required connection must not fall back."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    def swallowed(cls, conn_id):  # what execution_api.py's backend makes of an unreachable API server
        raise AirflowNotFoundException(f"The conn_id `{conn_id}` isn't defined")

    monkeypatch.setattr(BaseHook, "get_connection", classmethod(swallowed))
    monkeypatch.setenv("REALNESS_REQUIRED_CONNECTIONS", "realness_db, aws_default")
    with pytest.raises(ConfigurationError, match="'aws_default' was not found, and REALNESS_REQUIRED_CONNECTIONS"):
        plugin.load_config()
    monkeypatch.setenv("REALNESS_REQUIRED_CONNECTIONS", "realness-db")  # a typo would require nothing
    with pytest.raises(ConfigurationError, match="REALNESS_REQUIRED_CONNECTIONS names realness-db"):
        plugin.load_config()
    monkeypatch.setenv("REALNESS_REQUIRED_CONNECTIONS", "")
    assert plugin.load_config().resolved_database_url.startswith("sqlite:///")  # optional ones still fall back


def test_fault_cli_refuses_embedded_database_beside_a_remote_store(tmp_path, monkeypatch, capsys):
    from realness_tasks.cli import main

    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REALNESS_STORE_URI", "s3://archive/realness")
    monkeypatch.delenv("REALNESS_DATABASE_URL", raising=False)
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("realness status: configuration: the verdict database is a local SQLite file")
    assert "REALNESS_ALLOW_EMBEDDED_DATABASE" in err and not (tmp_path / "home" / "realness.db").exists()


def test_fault_missing_local_store_folder_is_refused(tmp_path, monkeypatch, capsys):
    """A typo in REALNESS_STORE_URI must not scan a new, empty folder and report success."""
    from realness_tasks.cli import main

    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    for uri in ((tmp_path / "stroe").as_uri(), str(tmp_path / "stroe")):
        monkeypatch.setenv("REALNESS_STORE_URI", uri)
        assert main(["ingest"]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"REALNESS_STORE_URI={uri!r}" in err and "is not an existing folder" in err
        assert not (tmp_path / "stroe").exists()
    (tmp_path / "store").mkdir()
    monkeypatch.setenv("REALNESS_STORE_URI", (tmp_path / "store").as_uri())
    assert main(["ingest"]) == 0  # an existing (empty) folder is a store


USER_FIXABLE_SETTINGS = {
    "REALNESS_STORE_URI=s3://": ({"REALNESS_STORE_URI": "s3://"}, "REALNESS_STORE_URI='s3://' names no bucket"),
    "REALNESS_STORE_URI=ftp://": ({"REALNESS_STORE_URI": "ftp://host/videos"},
                                  "REALNESS_STORE_URI='ftp://host/videos': the scheme 'ftp' is not supported"),
    "REALNESS_DATABASE_URL=mysql://": ({"REALNESS_DATABASE_URL": "mysql://u:hunter2@db/realness"},
                                       "REALNESS_DATABASE_URL (or the realness_db connection) uses 'mysql'"),
    "REALNESS_SAMPLING_EVERY_SECONDS<0": ({"REALNESS_SAMPLING_EVERY_SECONDS": "-1"},
                                          "REALNESS_SAMPLING_EVERY_SECONDS=-1.0: a gap above 0 seconds"),
}


@pytest.mark.parametrize("case", sorted(USER_FIXABLE_SETTINGS))
def test_fault_unusable_setting_is_one_line_naming_it(case, tmp_path, monkeypatch, capsys):
    from realness_tasks.cli import main

    environ, expected = USER_FIXABLE_SETTINGS[case]
    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["ingest"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"realness ingest: configuration: {expected}"), err
    assert "hunter2" not in err


def test_fault_invalid_champion_pointer_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    from realness_tasks.cli import main

    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    store = open_store((tmp_path / "home" / "store").as_uri())
    for broken in (b"{bad", b'{"version": "v1"}', b"[]"):
        store.put_bytes("models/champion.json", broken)
        assert main(["score"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "models/champion.json is not a valid champion pointer" in err, err
        assert "realness approve" in err


# ---------------------------------------------------------------- shared helpers

import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
from datetime import datetime  # noqa: E402

import pyarrow.parquet as pq  # noqa: E402

from realness_tasks import labels, ledger, samples, scoring  # noqa: E402
from realness_tasks.db import Database  # noqa: E402
from realness_tasks.ingest import run_ingest  # noqa: E402
from realness_tasks.storage import StorageUnavailable, open_store  # noqa: E402
from tests.conftest import MTCNN_NETWORKS_DIR  # noqa: E402
from tests.test_scoring import (RUN_DATE, brightness_tflite, crops, make_config, one_person,  # noqa: E402,F401
                                register_champion, write_shard)

SAMPLING = {"every_seconds": 0.5, "max_frames": 4}
FAULT_TABLES = ("ingest_ledger", "videos", "labels", "face_scores", "verdicts", "verdict_exports")


def config(tmp_path, **overrides) -> RealnessConfig:
    overrides.setdefault("sampling", SAMPLING)
    overrides.setdefault("detection", {"networks_dir": MTCNN_NETWORKS_DIR})
    return RealnessConfig.from_env({}, home=str(tmp_path / "home"), **overrides)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    """Two short face videos and a faceless one, as bytes."""
    folder = tmp_path_factory.mktemp("clips")
    photos = {p.name: p for p in samples.sample_photos()}
    made = {
        "obama": samples.face_video(folder / "a.mp4", photos["obama"].image, seconds=1.0, fps=4, seed=1),
        "astronaut": samples.face_video(folder / "b.mp4", photos["astronaut"].image, seconds=1.0, fps=4, seed=2),
        "room": samples.face_video(folder / "c.mp4", None, seconds=1.0, fps=4, seed=3),
    }
    return {name: video.path.read_bytes() for name, video in made.items()}


def snapshot(cfg: RealnessConfig) -> dict:
    """Everything a fault could lose or duplicate: the table rows and the store's shards and exports."""
    db = Database(cfg.resolved_database_url)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    try:
        state = {table: db.query(f"SELECT * FROM {table} ORDER BY 1, 2") for table in FAULT_TABLES}
    finally:
        db.dispose()
    for prefix in (cfg.faces_prefix, cfg.staging_prefix, cfg.verdicts_prefix):
        state[prefix] = sorted(o.key for o in store.list(prefix))
    return state


def counts(state: dict) -> dict[str, int]:
    return {name: len(rows) for name, rows in state.items()}


def statuses(cfg: RealnessConfig) -> dict[str, tuple[str, str | None]]:
    db = Database(cfg.resolved_database_url)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    try:
        return {store.key_for(r["source_uri"]): (r["status"], r["reason"]) for r in ledger.entries(db)}
    finally:
        db.dispose()


def assert_rerun_changes_nothing(cfg: RealnessConfig, run_id: str = "rerun") -> dict:
    before = snapshot(cfg)
    summary = run_ingest(cfg, run_id=run_id, run_date="2026-12-31")
    assert summary["videos"] == 0 and summary["problems"] == []
    assert snapshot(cfg) == before
    return summary


# ---------------------------------------------------------------- bad input: sidecars

BAD_SIDECARS = {
    "list": (b'["a.mp4"]', "JSON list where an object of video names was expected"),
    "null": (b"null", "JSON NoneType where an object"),
    "truncated": (b'{"a.mp4": {"label": "FAKE"', "not valid JSON"),
    "latin1": ('{"é.mp4": {"label": "FAKE"}}'.encode("latin-1"), "not valid JSON"),
    "no_labels": (b'{"a.mp4": {"label": "maybe"}, "b.mp4": 3}', "none of its 2 entries has a REAL/FAKE label"),
}


def test_fault_malformed_sidecars_are_recorded_and_videos_go_on_unlabelled(tmp_path, clips):
    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    for name, (data, _) in BAD_SIDECARS.items():
        store.put_bytes(f"landing/{name}/metadata.json", data)
        store.put_bytes(f"landing/{name}/a.mp4", clips["room"] if name != "list" else clips["obama"])
    store.put_bytes("landing/partly/metadata.json", json.dumps(
        {"a.mp4": {"label": "FAKE"}, "b.mp4": {"label": "unsure"}}).encode())
    store.put_bytes("landing/partly/a.mp4", clips["astronaut"])

    summary = run_ingest(cfg, run_id="run-1", run_date="2026-12-01")

    got = statuses(cfg)
    for name, (_, reason) in BAD_SIDECARS.items():
        status, recorded = got[f"landing/{name}/metadata.json"]
        assert status == "BAD_SIDECAR" and reason in recorded, (name, recorded)
    assert got["landing/partly/metadata.json"] == (
        "SIDECAR", "1 label(s); 1 entry without a REAL/FAKE label ignored: b.mp4")
    assert got["landing/list/a.mp4"][0] == "PUBLISHED" and got["landing/partly/a.mp4"][0] == "PUBLISHED"
    assert {got[f"landing/{n}/a.mp4"][0] for n in BAD_SIDECARS if n != "list"} == {"NO_FACE", "DUPLICATE"}
    assert summary["statuses"]["BAD_SIDECAR"] == len(BAD_SIDECARS)
    assert {p["status"] for p in summary["problems"]} >= {"BAD_SIDECAR"}
    db = Database(cfg.resolved_database_url)
    assert {r["source_uri"].rsplit("/", 2)[-2]: r["label"] for r in db.query("SELECT * FROM labels")} == {
        "partly": "FAKE"}
    assert len(db.query("SELECT * FROM ingest_failures WHERE status = 'BAD_SIDECAR'")) == len(BAD_SIDECARS)
    db.dispose()
    assert_rerun_changes_nothing(cfg)


def test_fault_sidecar_entries_naming_no_listed_video_are_reported(tmp_path, clips):
    """Entries are normalised like originals; those naming nothing listed are counted apart and shown."""
    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/batch/a.mp4", clips["obama"])
    store.put_bytes("landing/batch/metadata.json", json.dumps({
        "./a.mp4": {"label": "FAKE"}, "missing.mp4": {"label": "REAL"}, "sub/../typo.mp4": {"label": "REAL"},
        **{f"m{i}.mp4": {"label": "REAL"} for i in range(5)}}).encode())

    run_ingest(cfg, run_id="run-1", run_date="2026-12-01")

    assert statuses(cfg)["landing/batch/metadata.json"] == (
        "SIDECAR", "1 label(s); 7 entries naming no listed video: m0.mp4, m1.mp4, m2.mp4, m3.mp4, m4.mp4, ...")
    assert [(r["label"], r["source_uri"].rsplit("/", 1)[-1]) for r in snapshot(cfg)["labels"]] == [("FAKE", "a.mp4")]
    assert_rerun_changes_nothing(cfg)


def test_fault_oversized_sidecar_is_not_read(tmp_path, clips, monkeypatch):
    cfg = config(tmp_path, sidecar_max_megabytes=1)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/big/a.mp4", clips["obama"])
    entries = {f"v{i:07d}.mp4": {"label": "REAL"} for i in range(40_000)} | {"a.mp4": {"label": "FAKE"}}
    store.put_bytes("landing/big/metadata.json", json.dumps(entries).encode())
    size = len(store.get_bytes("landing/big/metadata.json"))
    read, get_bytes = [], type(store).get_bytes
    monkeypatch.setattr(type(store), "get_bytes", lambda self, key: read.append(key) or get_bytes(self, key))

    summary = run_ingest(cfg, run_id="run-1", run_date="2026-12-01")

    assert "landing/big/metadata.json" not in read and size > 1024 * 1024
    assert statuses(cfg)["landing/big/metadata.json"] == (
        "BAD_SIDECAR", f"{size} bytes, over REALNESS_SIDECAR_MAX_MEGABYTES (1048576 bytes): not read; split it "
                       "per folder, or raise the limit")
    assert statuses(cfg)["landing/big/a.mp4"][0] == "PUBLISHED" and snapshot(cfg)["labels"] == []
    assert {p["status"] for p in summary["problems"]} == {"BAD_SIDECAR"}
    assert_rerun_changes_nothing(cfg)


def test_fault_deleted_sidecar_is_marked_gone_and_its_labels_stay(tmp_path, clips):
    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/batch/a.mp4", clips["obama"])
    store.put_bytes("landing/batch/metadata.json", json.dumps({"a.mp4": {"label": "FAKE"}}).encode())
    run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    labels_before = snapshot(cfg)["labels"]

    store.delete("landing/batch/metadata.json")
    summary = run_ingest(cfg, run_id="run-2", run_date="2026-12-02")
    assert statuses(cfg)["landing/batch/metadata.json"] == (
        "SIDECAR_GONE", "no longer listed (was SIDECAR); the labels it gave stay")
    assert summary["statuses"] == {"SIDECAR_GONE": 1} and summary["problems"] == []
    assert snapshot(cfg)["labels"] == labels_before
    db = Database(cfg.resolved_database_url)
    assert db.query("SELECT * FROM ingest_failures") == []
    db.dispose()
    assert_rerun_changes_nothing(cfg)

    store.put_bytes("landing/batch/metadata.json", json.dumps({"a.mp4": {"label": "FAKE"}}).encode())
    run_ingest(cfg, run_id="run-3", run_date="2026-12-03")
    assert statuses(cfg)["landing/batch/metadata.json"] == ("SIDECAR", "1 label(s)")


# ---------------------------------------------------------------- bad input: late and corrected labels

def test_fault_late_and_corrected_sidecars_label_without_reingesting(tmp_path, clips, database_url):
    from realness_tasks import dataset

    cfg = config(tmp_path, database_url=database_url)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/batch/a.mp4", clips["obama"])
    store.put_bytes("landing/batch/b.mp4", clips["astronaut"])
    run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    before = snapshot(cfg)
    assert {r["label"] for r in before["videos"]} == {None} and before["labels"] == []

    # The sidecar arrives after its videos: applied on the next run, nothing ingested again.
    store.put_bytes("landing/batch/metadata.json", json.dumps(
        {"a.mp4": {"label": "FAKE"}, "b.mp4": {"label": "REAL"}}).encode())
    summary = run_ingest(cfg, run_id="run-2", run_date="2026-12-02")
    after = snapshot(cfg)
    assert summary["videos"] == 0 and summary["statuses"] == {"SIDECAR": 1}
    assert after["faces/"] == before["faces/"]
    assert [r["attempts"] for r in after["ingest_ledger"] if r["status"] == "PUBLISHED"] == [1, 1]
    by_uri = {r["source_uri"].rsplit("/", 1)[-1]: r for r in after["labels"]}
    assert {k: v["label"] for k, v in by_uri.items()} == {"a.mp4": "FAKE", "b.mp4": "REAL"}
    assert all(r["source"].endswith("landing/batch/metadata.json") and r["kind"] == "metadata" and r["run_id"] == "run-2"
               for r in by_uri.values())
    assert sorted(r["label"] for r in after["videos"]) == ["FAKE", "REAL"]
    db = Database(cfg.resolved_database_url)
    faces, unlabelled, other_margin = dataset.read_faces(cfg, store, dataset.list_shards(cfg, store),
                                                         labels.for_training(db))
    assert len(faces) > 0 and unlabelled == other_margin == 0 and set(faces.labels.tolist()) == {0, 1}

    # A corrected sidecar changes the label (and when it was recorded); a removed entry withdraws it.
    store.put_bytes("landing/batch/metadata.json", json.dumps({"a.mp4": {"label": "REAL"}}).encode())
    run_ingest(cfg, run_id="run-3", run_date="2026-12-03")
    rows = {r["source_uri"].rsplit("/", 1)[-1]: r for r in db.query("SELECT * FROM labels")}
    assert (rows["a.mp4"]["label"], rows["a.mp4"]["run_id"]) == ("REAL", "run-3")
    assert rows["a.mp4"]["recorded_at"] > by_uri["a.mp4"]["recorded_at"]
    assert rows["b.mp4"]["label"] is None
    faces, unlabelled, other_margin = dataset.read_faces(cfg, store, dataset.list_shards(cfg, store),
                                                         labels.for_training(db))
    assert set(faces.labels.tolist()) == {0} and unlabelled > 0 and other_margin == 0
    assert sorted(r["label"] or "-" for r in db.query("SELECT label FROM videos")) == ["-", "REAL"]
    db.dispose()
    assert snapshot(cfg)["faces/"] == before["faces/"]
    assert_rerun_changes_nothing(cfg)


def test_fault_label_at_ingest_is_recorded_with_its_source(tmp_path, clips):
    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/fake/a.mp4", clips["obama"])
    store.put_bytes("landing/dfdc/b.mp4", clips["astronaut"])
    store.put_bytes("landing/dfdc/metadata.json", json.dumps({"b.mp4": {"label": "REAL"}}).encode())
    run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    rows = {r["source_uri"].rsplit("/", 1)[-1]: r for r in snapshot(cfg)["labels"]}
    assert (rows["a.mp4"]["label"], rows["a.mp4"]["kind"], rows["a.mp4"]["source"]) == (
        "FAKE", "folder", store.uri_for("landing/fake/a.mp4"))
    assert (rows["b.mp4"]["label"], rows["b.mp4"]["kind"]) == ("REAL", "metadata")
    assert_rerun_changes_nothing(cfg)


# ---------------------------------------------------------------- bad input: what the listing holds

def test_fault_hidden_temporary_and_refused_links_are_accounted_for(tmp_path, clips):
    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    root = Path(store.root)
    store.put_bytes("landing/a.mp4", clips["room"])
    store.put_bytes("landing/.DS_Store", b"finder")
    store.put_bytes("landing/.b.mp4.tmp-x1y2", b"half a video")
    store.put_bytes("landing/c.tmp-2.mp4", clips["room"])  # an ordinary name that contains .tmp-
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.mp4").write_bytes(clips["obama"])
    (root / "landing/escape.mp4").symlink_to(outside / "secret.mp4")
    (root / "landing/dangling.mp4").symlink_to(tmp_path / "nothing-here.mp4")
    (root / "elsewhere").mkdir()
    (root / "landing/linked folder").symlink_to(root / "elsewhere", target_is_directory=True)
    (root / "landing/outside folder").symlink_to(outside / "folder", target_is_directory=True)
    (root / "landing/inside.mp4").symlink_to(root / "landing/a.mp4")

    summary = run_ingest(cfg, run_id="run-1", run_date="2026-12-01")

    got = statuses(cfg)
    assert got["landing/escape.mp4"] == ("UNSAFE_KEY", "symbolic link to a path outside the store root")
    assert got["landing/dangling.mp4"] == ("UNSAFE_KEY", "dangling symbolic link")
    assert got["landing/linked folder"] == ("UNSAFE_KEY", "symbolic link to a folder (not followed)")
    assert got["landing/outside folder"] == ("UNSAFE_KEY", "symbolic link to a path outside the store root")
    assert got["landing/a.mp4"][0] == "NO_FACE"
    assert {got["landing/c.tmp-2.mp4"][0], got["landing/inside.mp4"][0]} == {"DUPLICATE"}
    assert sorted((s["source_uri"].rsplit("/", 1)[-1], s["reason"]) for s in summary["skipped"]) == [
        (".DS_Store", "hidden file"), (".b.mp4.tmp-x1y2", "temporary file of an unfinished write")]
    report = json.loads(store.get_bytes("reports/ingest/run-1.json"))
    assert report["skipped"] == summary["skipped"]
    listed = {o.key for o in store.list("landing/")}
    assert listed == set(got) | {"landing/.DS_Store", "landing/.b.mp4.tmp-x1y2"}  # every object accounted for
    with pytest.raises(ValueError, match="outside the store root"):
        store.get_bytes("landing/escape.mp4")
    assert_rerun_changes_nothing(cfg)


def test_fault_newline_in_a_key_cannot_split_log_lines(tmp_path, clips, caplog):
    import logging

    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/a\nINFO forged line.mp4", clips["room"])
    with caplog.at_level(logging.INFO):
        run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    assert statuses(cfg)["landing/a\nINFO forged line.mp4"][0] == "NO_FACE"  # the row keeps the real key
    messages = [r.getMessage() for r in caplog.records]
    assert any("a\\nINFO forged line.mp4 -> NO_FACE" in m for m in messages)
    assert not [m for m in messages if "\n" in m]
    assert_rerun_changes_nothing(cfg)


def test_fault_local_store_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store = open_store(str(tmp_path / "store"))
        store.put_bytes("faces/x.parquet", b"1")
        source = tmp_path / "f"
        source.write_bytes(b"2")
        store.upload(source, "models/y")
    finally:
        os.umask(old)
    assert (Path(store.root) / "faces/x.parquet").stat().st_mode & 0o777 == 0o644
    assert (Path(store.root) / "models/y").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- same key, new bytes

def test_fault_new_bytes_under_a_key_supersede_its_verdict(database_url):
    """The newest content under a key speaks for it in latest_verdicts; the old content keeps its history."""
    db = Database(database_url)
    now = datetime(2026, 12, 1)
    key, other = "s3://b/landing/k.mp4", "s3://b/landing/other.mp4"
    for video_id, uri in (("old", key), ("new", key), ("kept", other), ("source:abc", other)):
        db.execute("INSERT INTO verdicts (video_id, model_version, run_id, run_date, source_uri, verdict, p_fake, "
                   "faces_scored, fake_faces, reason, decided_at) VALUES (:v, 'm1', 'r', '2026-12-01', :u, 'REAL', "
                   "0.1, 3, 0, 'x', :now)", {"v": video_id, "u": uri, "now": now})
    ledger.record(db, ledger.LedgerEntry(key, "etag-1", ledger.Status.PUBLISHED, "r1", "old"))
    ledger.record(db, ledger.LedgerEntry(other, "etag-1", ledger.Status.PUBLISHED, "r1", "kept"))
    assert {r["video_id"] for r in db.query("SELECT video_id FROM latest_verdicts")} == {"old", "kept"}

    ledger.record(db, ledger.LedgerEntry(key, "etag-2", ledger.Status.PENDING, "r2"))  # new bytes, in progress
    assert db.query("SELECT video_id FROM ingest_ledger WHERE source_uri = :k", {"k": key}) == [{"video_id": None}]
    ledger.record(db, ledger.LedgerEntry(key, "etag-2", ledger.Status.PUBLISHED, "r2", "new"))
    latest = db.query("SELECT video_id, source_uri FROM latest_verdicts ORDER BY video_id")
    assert latest == [{"video_id": "kept", "source_uri": other}, {"video_id": "new", "source_uri": key}]
    assert len(db.query("SELECT * FROM verdicts")) == 4  # history stays

    # An object emptied or refused later: its ERROR verdict (keyed by the URI) replaces the content's.
    ledger.record(db, ledger.LedgerEntry(other, "etag-3", ledger.Status.EMPTY, "r3", None, "zero-byte object"))
    assert {r["video_id"] for r in db.query("SELECT video_id FROM latest_verdicts")} == {"new", "source:abc"}
    db.dispose()


def test_fault_content_still_under_a_duplicate_key_keeps_its_verdict(database_url):
    """Copy a.mp4 to dup.mp4, overwrite a.mp4: dup.mp4's content keeps a latest verdict, under dup.mp4."""
    db = Database(database_url)
    key, dup = "s3://b/landing/a.mp4", "s3://b/landing/dup.mp4"
    for video_id in ("old", "new"):
        db.execute("INSERT INTO verdicts (video_id, model_version, run_id, run_date, source_uri, verdict, p_fake, "
                   "faces_scored, fake_faces, reason, decided_at) VALUES (:v, 'm1', 'r', '2026-12-01', :u, 'FAKE', "
                   "0.9, 3, 3, 'x', :now)", {"v": video_id, "u": key, "now": datetime(2026, 12, 1)})
    ledger.record(db, ledger.LedgerEntry(key, "etag-1", ledger.Status.PUBLISHED, "r1", "old"))
    ledger.record(db, ledger.LedgerEntry(dup, "etag-1", ledger.Status.DUPLICATE, "r1", "old", f"same content as {key}"))
    assert db.query("SELECT video_id, source_uri FROM latest_verdicts WHERE video_id = 'old'") == [
        {"video_id": "old", "source_uri": key}]

    ledger.record(db, ledger.LedgerEntry(key, "etag-2", ledger.Status.PUBLISHED, "r2", "new"))
    latest = db.query("SELECT video_id, source_uri FROM latest_verdicts ORDER BY video_id")
    assert latest == [{"video_id": "new", "source_uri": key}, {"video_id": "old", "source_uri": dup}]

    ledger.record(db, ledger.LedgerEntry(dup, "etag-3", ledger.Status.EMPTY, "r3", None, "zero-byte object"))
    assert [r["video_id"] for r in db.query("SELECT video_id FROM latest_verdicts")] == ["new"]  # nobody holds it
    db.dispose()


def test_fault_reprocess_on_another_date_keeps_one_shard_per_video(tmp_path, clips):
    from realness_tasks import dataset

    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/fake/a.mp4", clips["obama"])
    store.put_bytes("landing/real/b.mp4", clips["astronaut"])
    run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    first = dataset.read_faces(cfg, store, dataset.list_shards(cfg, store)).faces

    summary = run_ingest(cfg, run_id="run-2", run_date="2026-12-08", reprocess=True)

    assert summary["statuses"] == {"PUBLISHED": 2}
    shards = snapshot(cfg)["faces/"]
    assert [k.split("/")[1] for k in shards] == ["date=2026-12-08"] * 2
    assert sorted(r["shard_uri"].rsplit("/", 2)[-2] for r in snapshot(cfg)["ingest_ledger"]) == ["date=2026-12-08"] * 2
    assert len(dataset.read_faces(cfg, store, dataset.list_shards(cfg, store)).faces) == len(first)

    # An older shard left beside the newest (published before this fix, or a run killed between publishing
    # and removing) is not read: the reader takes each video's newest shard.
    store.copy(shards[0], shards[0].replace("date=2026-12-08", "date=2026-12-01"))
    assert [s["key"] for s in dataset.list_shards(cfg, store)] == shards
    assert len(dataset.read_faces(cfg, store, dataset.list_shards(cfg, store)).faces) == len(first)


def test_fault_same_key_new_bytes_is_ingested_as_new_content(tmp_path, clips):
    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/k.mp4", clips["obama"])
    run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    first = snapshot(cfg)
    old_id = first["ingest_ledger"][0]["video_id"]

    store.put_bytes("landing/k.mp4", clips["astronaut"])
    summary = run_ingest(cfg, run_id="run-2", run_date="2026-12-02")

    state = snapshot(cfg)
    assert summary["statuses"] == {"PUBLISHED": 1}
    row = state["ingest_ledger"][0]
    assert len(state["ingest_ledger"]) == 1 and row["video_id"] != old_id and row["attempts"] == 2
    assert {v["video_id"] for v in state["videos"]} == {old_id, row["video_id"]}  # the old content stays known
    assert len(state["faces/"]) == 2 and state["staging/"] == []  # and its shard stays, as history
    assert_rerun_changes_nothing(cfg)


# ---------------------------------------------------------------- scoring: exports that cannot be lost

def test_fault_export_refused_is_written_by_the_next_run(tmp_path, database_url, brightness_tflite, crops):
    """A file where the verdicts/ folder should be: verdicts commit, the export fails loudly, the next run writes it."""
    cfg = make_config(tmp_path, database_url)
    store = open_store(cfg.resolved_store_uri)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    write_shard(cfg, store, "real", one_person(crops["real"]))
    write_shard(cfg, store, "swap", one_person(crops["fake"]))
    blocker = Path(store.root) / "verdicts"
    blocker.write_bytes(b"not a folder")

    with pytest.raises(OSError):
        scoring.run_scoring(cfg, "run-1", RUN_DATE)

    state = snapshot(cfg)
    assert counts(state)["verdicts"] == 2 and counts(state)["face_scores"] == 8
    assert [(r["run_id"], r["exported_at"]) for r in state["verdict_exports"]] == [("run-1", None)]

    blocker.unlink()
    outcome = scoring.run_scoring(cfg, "run-2", "2025-04-02")
    assert outcome.faces_scored == 0 and outcome.verdicts_uri is None
    export = pq.read_table(io.BytesIO(store.get_bytes(f"verdicts/date={RUN_DATE}/verdicts-run-1.parquet")))
    assert sorted(export.column("video_id").to_pylist()) == ["real", "swap"]
    after = snapshot(cfg)
    assert after["verdict_exports"][0]["exported_at"] is not None
    assert {k: v for k, v in after.items() if k != "verdict_exports"} == \
        {k: v for k, v in state.items() if k != "verdict_exports"} | {"verdicts/": [
            f"verdicts/date={RUN_DATE}/verdicts-run-1.parquet"]}
    scoring.run_scoring(cfg, "run-3", "2025-04-03")
    assert snapshot(cfg) == after  # nothing owed, nothing new


# ---------------------------------------------------------------- SIGKILL at chosen points (subprocesses)

def cli(home: Path, *args: str, kill_at: str | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("REALNESS_")}
    environ.update({"REALNESS_HOME": str(home), "REALNESS_SAMPLING_EVERY_SECONDS": "0.5",
                    "REALNESS_SAMPLING_MAX_FRAMES": "4", **env})
    if kill_at:
        environ["REALNESS_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, "-m", "realness_tasks.cli", *args], capture_output=True, text=True,
                          env=environ, timeout=300, cwd=ROOT)


def test_fault_sigkill_mid_score_leaves_the_export_to_the_next_run(tmp_path, brightness_tflite, crops):
    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    register_champion(cfg, store, brightness_tflite, "v1", 0.5, datetime(2025, 3, 1))
    write_shard(cfg, store, "real", one_person(crops["real"]))
    home = tmp_path / "home"

    killed = cli(home, "score", "--run-id", "k1", "--date", RUN_DATE, kill_at="score.committed")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = snapshot(cfg)
    assert counts(state)["verdicts"] == 1 and state["verdicts/"] == []

    done = cli(home, "score", "--run-id", "k2", "--date", "2025-04-02")
    assert done.returncode == 0, done.stderr[-2000:]
    assert snapshot(cfg)["verdicts/"] == [f"verdicts/date={RUN_DATE}/verdicts-k1.parquet"]
    assert counts(snapshot(cfg)) == counts(state) | {"verdicts/": 1}
    assert list((home / "scratch").iterdir()) == []


def test_fault_sigkill_mid_ingest_is_finished_by_later_runs(tmp_path, clips):
    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/a.mp4", clips["obama"])
    home = tmp_path / "home"

    first = cli(home, "ingest", "--run-id", "i1", "--date", "2026-12-01", kill_at="ingest.claimed")
    assert first.returncode == -signal.SIGKILL
    assert statuses(cfg) == {"landing/a.mp4": ("PENDING", None)}
    assert len(list((home / "scratch").iterdir())) == 1  # the dead process's copy of the video

    second = cli(home, "ingest", "--run-id", "i2", "--date", "2026-12-02", kill_at="ingest.staged")
    assert second.returncode == -signal.SIGKILL
    assert statuses(cfg)["landing/a.mp4"][0] == "PENDING"
    assert [k.rsplit("/", 2)[-2] for k in snapshot(cfg)["staging/"]] == ["2026-12-02"]

    third = cli(home, "ingest", "--run-id", "i3", "--date", "2026-12-03")
    assert third.returncode == 0, third.stderr[-2000:]
    state = snapshot(cfg)
    assert statuses(cfg)["landing/a.mp4"][0] == "PUBLISHED"
    assert [k.rsplit("/", 2)[-2] for k in state["faces/"]] == ["date=2026-12-03"]
    assert state["staging/"] == [] and list((home / "scratch").iterdir()) == []
    assert state["ingest_ledger"][0]["attempts"] == 3 and counts(state)["videos"] == 1
    assert_rerun_changes_nothing(cfg)


# ---------------------------------------------------------------- infrastructure: database, store, disk

def test_fault_database_down_before_the_run_is_one_clear_line(tmp_path, clips):
    from tests.conftest import free_port

    home = tmp_path / "home"
    store = open_store((home / "store").as_uri())
    store.put_bytes("landing/a.mp4", clips["room"])
    url = f"postgresql+psycopg2://realness:secret@127.0.0.1:{free_port()}/realness"
    done = cli(home, "ingest", REALNESS_DATABASE_URL=url)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("realness ingest: the verdict database could not be used:")
    assert "Check REALNESS_DATABASE_URL" in last and "secret" not in last and "Traceback" not in done.stderr
    saved = Path(last.rsplit("(traceback in ", 1)[1].rstrip(")"))
    assert "OperationalError" in saved.read_text()
    assert [o.key for o in store.list("")] == ["landing/a.mp4"]  # nothing written


def test_fault_database_lost_mid_run_fails_and_the_rerun_completes(tmp_path, clips, monkeypatch):
    import sqlalchemy.exc

    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/a.mp4", clips["obama"])
    store.put_bytes("landing/b.mp4", clips["astronaut"])
    real_record, calls = ledger.record, []

    def flaky(db, entry):
        calls.append(entry.source_uri)
        if len(calls) == 3:  # a's PENDING, a's STAGED, then the server goes away
            raise sqlalchemy.exc.OperationalError("UPDATE ingest_ledger", {}, ConnectionError("server closed"))
        real_record(db, entry)

    monkeypatch.setattr(ledger, "record", flaky)
    with pytest.raises(sqlalchemy.exc.OperationalError):
        run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    monkeypatch.setattr(ledger, "record", real_record)
    assert statuses(cfg)["landing/a.mp4"][0] == "STAGED"

    run_ingest(cfg, run_id="run-2", run_date="2026-12-01")
    state = snapshot(cfg)
    assert {k: v[0] for k, v in statuses(cfg).items()} == {"landing/a.mp4": "PUBLISHED", "landing/b.mp4": "PUBLISHED"}
    assert counts(state)["faces/"] == 2 and state["staging/"] == [] and counts(state)["videos"] == 2
    assert_rerun_changes_nothing(cfg)


def test_fault_disk_full_while_staging_fails_and_the_rerun_completes(tmp_path, clips, monkeypatch):
    import errno

    from realness_tasks.error_advice import explain
    from realness_tasks.storage import LocalStore

    cfg = config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    store.put_bytes("landing/a.mp4", clips["obama"])
    real_write = LocalStore._write_atomically  # the one path by which the local store writes an object

    def full(self, key, write):
        if key.startswith("staging/"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root / key))
        real_write(self, key, write)

    monkeypatch.setattr(LocalStore, "_write_atomically", full)
    with pytest.raises(OSError) as caught:
        run_ingest(cfg, run_id="run-1", run_date="2026-12-01")
    assert explain(caught.value).startswith("No space left on device (")
    monkeypatch.setattr(LocalStore, "_write_atomically", real_write)
    assert statuses(cfg) == {"landing/a.mp4": ("PENDING", None)}

    run_ingest(cfg, run_id="run-2", run_date="2026-12-01")
    assert statuses(cfg)["landing/a.mp4"][0] == "PUBLISHED" and counts(snapshot(cfg))["faces/"] == 1
    assert_rerun_changes_nothing(cfg)


@pytest.fixture
def hung_endpoint():
    """A TCP server on 127.0.0.1 that accepts connections and never answers (bounded: closed after the test)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=2)
    for conn in held:
        conn.close()
    server.close()


def test_fault_hung_s3_endpoint_fails_fast_with_the_read_timeout(tmp_path, hung_endpoint):
    import time

    from realness_tasks.error_advice import explain
    from realness_tasks.settings import S3Settings

    settings = S3Settings(endpoint_url=hung_endpoint, access_key_id="x", secret_access_key="y",
                          read_timeout_s=0.5, max_attempts=1)
    store = open_store("s3://bucket/root", settings)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="unreachable") as caught:
        list(store.list("landing/"))
    assert time.monotonic() - started < 10
    assert "REALNESS_S3_" in explain(caught.value)
    assert S3Settings().read_timeout_s <= 10 < S3Settings().transfer_timeout_s


@pytest.fixture
def stalling_s3():
    """An S3 endpoint that answers HEAD and never answers GET (a download that hangs); counts the GETs."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop, gets = threading.Event(), []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            for name, value in (("Content-Length", "1000"), ("ETag", '"abc"'), ("Content-Type", "video/mp4"),
                                ("Last-Modified", "Mon, 01 Dec 2026 00:00:00 GMT")):
                self.send_header(name, value)
            self.end_headers()

        def do_GET(self):
            gets.append(self.path)
            stop.wait(5)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", gets
    stop.set()
    server.shutdown()
    server.server_close()


def test_fault_stalled_s3_download_is_unavailable_after_the_documented_attempts(tmp_path, stalling_s3):
    from realness_tasks.settings import S3Settings

    endpoint, gets = stalling_s3
    settings = S3Settings(endpoint_url=endpoint, access_key_id="x", secret_access_key="y", transfer_timeout_s=0.3)
    store = open_store("s3://bucket/root", settings)
    with pytest.raises(StorageUnavailable, match="unreachable"):
        store.download("landing/a.mp4", tmp_path / "a.mp4")
    assert len(gets) == settings.max_attempts == 3  # boto3's transfer manager would repeat it 5 times over


def test_fault_missing_model_file_gets_its_own_hint_not_free_space():
    import errno

    from realness_tasks.error_advice import explain

    missing = FileNotFoundError("model v1 has no model.tflite (fp32 engine) in file:///s/models/v1/: export it "
                                "with realness_tasks.inference.export_tflite")
    assert explain(missing) == str(missing)
    refused = PermissionError(errno.EACCES, "Permission denied", "/home/r/scratch")
    assert explain(refused) == ("Permission denied (/home/r/scratch). Check that REALNESS_HOME and the store root "
                                "are writable folders (not files)")


def test_fault_not_enough_data_to_train_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from realness_tasks.cli import main

    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    assert main(["train"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("realness train: not enough labelled data to train:") and "realness ingest" in err


def test_fault_bad_setting_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from realness_tasks.cli import main

    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REALNESS_SCORING_BATCH_SIZE", "eight")
    assert main(["score"]) == 2
    assert "configuration: REALNESS_SCORING_BATCH_SIZE='eight' is not a valid int" in capsys.readouterr().err


# ---------------------------------------------------------------- the matrix in docs/reliability.md

def test_reliability_doc_lists_every_case():
    import re

    doc = (ROOT / "docs" / "reliability.md").read_text()
    named = set(re.findall(r"`(?:(test_\w+\.py)::)?(test_\w+)`", doc))
    here = set(re.findall(r"^def (test_fault_\w+)", Path(__file__).read_text(), re.M))
    assert here <= {name for file, name in named if not file}, "add these cases to docs/reliability.md"
    for file, name in named:
        source = (ROOT / "tests" / (file or "test_faults.py")).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"docs/reliability.md names a missing test {file}::{name}"
