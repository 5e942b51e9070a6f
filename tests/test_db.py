from __future__ import annotations

import threading
from datetime import datetime

import pytest
import sqlalchemy as sa

from realness_tasks import ledger
from realness_tasks.db import MIGRATIONS_DIR, Database, DatabaseNotMigrated, migrate, split_statements
from realness_tasks.ledger import LedgerEntry, Status


def test_migrations_apply_once_on_both_engines(database_url):
    db = Database(database_url)
    versions = [r["version"] for r in db.query("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql"))
    assert migrate(db.engine) == []  # a second migrator finds nothing to do
    for table in ("runs", "videos", "ingest_ledger", "ingest_failures"):
        assert db.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == 0
    db.dispose()


def test_a_read_only_handle_neither_migrates_nor_writes(database_url):
    """What the verdicts page opens: its role may only read, so it must not try to migrate, and says
    which migrations are missing instead of failing later on a missing table."""
    with pytest.raises(DatabaseNotMigrated, match="lacks migrations 001"):
        Database(database_url, migrate=False)
    engine = sa.create_engine(database_url)
    assert sa.inspect(engine).get_table_names() == [], "the read-only open created something"
    engine.dispose()
    writer = Database(database_url)

    reader = Database(database_url, migrate=False)
    assert reader.query("SELECT COUNT(*) AS n FROM latest_verdicts") == [{"n": 0}]
    with pytest.raises(sa.exc.DBAPIError):
        reader.execute("INSERT INTO schema_migrations (version) VALUES ('written by a reader')")
    assert [r["version"] for r in writer.query("SELECT version FROM schema_migrations WHERE version LIKE 'written%'")] == []
    reader.dispose()
    writer.dispose()


def test_statement_splitting_ignores_comments():
    assert split_statements("-- a; comment\nCREATE TABLE a (x INT);\n\n-- b\nCREATE VIEW v AS SELECT 1;") == [
        "CREATE TABLE a (x INT)", "CREATE VIEW v AS SELECT 1"]


def test_ledger_upserts_and_counts_attempts(database_url):
    db = Database(database_url)
    entry = LedgerEntry("s3://b/landing/a.mp4", "e1", Status.PENDING, "run-1")
    ledger.record(db, entry)
    ledger.record(db, LedgerEntry(entry.source_uri, "e1", Status.UNREADABLE, "run-1", "vid", "moov atom not found"))
    ledger.record(db, LedgerEntry(entry.source_uri, "e1", Status.PENDING, "run-2"))
    ledger.record(db, LedgerEntry(entry.source_uri, "e1", Status.NO_FACE, "run-2", None, "no face"))
    rows = ledger.entries(db)
    assert len(rows) == 1
    assert rows[0]["attempts"] == 2 and rows[0]["status"] == "NO_FACE" and rows[0]["video_id"] == "vid"
    assert ledger.processed_sources(db) == {entry.source_uri: "e1"}
    failures = db.query("SELECT * FROM ingest_failures")
    assert failures == []
    ledger.record(db, LedgerEntry("s3://b/landing/b.mp4", "e2", Status.NOT_VIDEO, "run-2", None, "text file"))
    assert [r["source_uri"] for r in db.query("SELECT source_uri FROM ingest_failures")] == ["s3://b/landing/b.mp4"]
    db.dispose()


def test_coverage_is_kept_in_the_ledger_and_shown_beside_the_latest_verdict(database_url):
    """Migration 012: the ledger's coverage columns, the video_coverage view, and latest_verdicts carrying them."""
    from realness_tasks import verdicts

    db = Database(database_url)
    ledger.upsert_video(db, ledger.VideoRecord("vid", "s3://b/landing/long.mp4", 10, None, duration_s=600.0))
    ledger.record(db, LedgerEntry("s3://b/landing/long.mp4", "e1", Status.NO_FACE, "run-1", "vid", "no face",
                                  frames_sampled=64, seconds_covered=600.0, largest_gap_s=9.524))
    ledger.record(db, LedgerEntry("s3://b/landing/copy.mp4", "e2", Status.DUPLICATE, "run-1", "vid", "same content"))
    row = ledger.entries(db)[1]
    assert (row["frames_sampled"], row["seconds_covered"], row["largest_gap_s"]) == (64, 600.0, 9.524)
    assert db.query("SELECT video_id, source_uri, frames_sampled, seconds_covered, largest_gap_s, duration_s "
                    "FROM video_coverage") == [{"video_id": "vid", "source_uri": "s3://b/landing/long.mp4",
                                                "frames_sampled": 64, "seconds_covered": 600.0,
                                                "largest_gap_s": 9.524, "duration_s": 600.0}]
    verdicts.publish(db, model_version="v1", run_id="score-1", run_date="2025-03-01", decided_at=datetime(2025, 3, 1),
                     videos=[], faces=[], verdicts=[
                         verdicts.unscored("vid", "s3://b/landing/long.mp4", verdicts.NO_FACE, "no face"),
                         verdicts.unscored("source:x", "s3://b/landing/bad.mp4", verdicts.ERROR, "NOT_VIDEO")])
    shown = {r["video_id"]: r for r in db.query("SELECT * FROM latest_verdicts")}
    assert {k: shown["vid"][k] for k in ("frames_sampled", "seconds_covered", "largest_gap_s", "duration_s")} == {
        "frames_sampled": 64, "seconds_covered": 600.0, "largest_gap_s": 9.524, "duration_s": 600.0}
    assert shown["source:x"]["frames_sampled"] is None  # nothing was ever sampled
    db.dispose()


def test_pending_rows_are_retried_by_the_next_discovery(database_url):
    db = Database(database_url)
    ledger.record(db, LedgerEntry("file:///l/a.mp4", "e", Status.PENDING, "r"))
    assert ledger.processed_sources(db) == {}
    db.dispose()


def test_concurrent_claims_agree_on_one_owner(database_url):
    db = Database(database_url)
    owners: list[str] = []
    barrier = threading.Barrier(4)

    def claim(i: int) -> None:
        barrier.wait()
        owners.append(ledger.claim_video(db, "same-bytes", f"file:///landing/copy{i}.mp4", 10, None))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(owners) == 4 and len(set(owners)) == 1
    db.dispose()


def test_label_groups_migrate_over_existing_labels_and_follow_the_chosen_label(database_url, tmp_path, monkeypatch):
    """007 on a database that already holds labels (as 006 left it), then the view picks each video's group."""
    import shutil

    import sqlalchemy as sa

    from realness_tasks import db as db_module
    from realness_tasks import labels
    from realness_tasks.db import create_db_engine

    before = tmp_path / "migrations-006"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.stem < "007":
            shutil.copy(path, before)
    monkeypatch.setattr(db_module, "MIGRATIONS_DIR", before)
    engine = create_db_engine(database_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO labels (video_id, source, kind, label, source_uri, recorded_at) VALUES "
                             "('old', 'file:///l/metadata.json', 'metadata', 'REAL', 'file:///l/a.mp4', "
                             "'2026-01-01 00:00:00')"))
    monkeypatch.undo()
    assert migrate(engine) == sorted(p.stem for p in MIGRATIONS_DIR.glob("*.sql") if p.stem >= "007")
    engine.dispose()

    db = Database(database_url)
    assert db.query("SELECT video_id, label, split_group FROM video_labels") == [
        {"video_id": "old", "label": "REAL", "split_group": None}]
    common = {"source_etag": "e", "run_id": "r"}
    labels.record(db, "v", label="FAKE", source="file:///l/fake/v.mp4", kind=labels.FOLDER,
                  source_uri="file:///l/fake/v.mp4", split_group=None, **common)
    labels.record(db, "v", label="FAKE", source="file:///l/metadata.json", kind=labels.METADATA,
                  source_uri="file:///l/v.mp4", split_group="anna", **common)
    assert labels.split_groups(db) == {"v": "anna"}   # the sidecar's label is chosen, and its group with it
    labels.record(db, "v", label="FAKE", source="file:///l/metadata.json", kind=labels.METADATA,
                  source_uri="file:///l/v.mp4", split_group="bob", **common)
    assert labels.split_groups(db) == {"v": "bob"}
    assert len(db.query("SELECT * FROM labels WHERE video_id = 'v'")) == 2
    db.dispose()
