-- Core tables: runs, the videos seen, and the ingest ledger (one row per source object).
-- Portable SQL: the same file runs on SQLite and PostgreSQL.

CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    dag_id       TEXT NOT NULL,
    started_at   TIMESTAMP NOT NULL,
    finished_at  TIMESTAMP,
    status       TEXT NOT NULL,
    summary      TEXT
);

CREATE TABLE videos (
    video_id      TEXT PRIMARY KEY,          -- sha256 of the file's bytes
    source_uri    TEXT NOT NULL,             -- where it was first seen
    size_bytes    BIGINT NOT NULL,
    label         TEXT,                      -- FAKE / REAL from metadata, NULL when unlabelled
    width         INTEGER,
    height        INTEGER,
    fps           DOUBLE PRECISION,
    frame_count   INTEGER,
    duration_s    DOUBLE PRECISION,
    first_seen_at TIMESTAMP NOT NULL
);

CREATE TABLE ingest_ledger (
    source_uri     TEXT PRIMARY KEY,
    source_etag    TEXT NOT NULL,
    video_id       TEXT,
    status         TEXT NOT NULL,            -- see docs/ingest.md for the status list
    reason         TEXT,
    shard_uri      TEXT,
    frames_sampled INTEGER NOT NULL DEFAULT 0,
    faces          INTEGER NOT NULL DEFAULT 0,
    run_id         TEXT,
    attempts       INTEGER NOT NULL DEFAULT 1,
    updated_at     TIMESTAMP NOT NULL
);

CREATE INDEX ingest_ledger_video_idx ON ingest_ledger (video_id);
CREATE INDEX ingest_ledger_status_idx ON ingest_ledger (status, updated_at);

-- Everything that did not end in a published shard or a clean "no face", with its reason.
CREATE VIEW ingest_failures AS
SELECT source_uri, video_id, status, reason, run_id, attempts, updated_at
FROM ingest_ledger
WHERE status NOT IN ('PUBLISHED', 'NO_FACE', 'DUPLICATE', 'PENDING', 'STAGED');
