-- Labels as facts of their own, verdict exports that cannot be lost, and one current verdict per key.
-- Portable SQL: the same file runs on SQLite and PostgreSQL.

-- One row per (content, source): the label a sidecar (or a real/ fake/ folder) gives a video's bytes.
-- Discovery re-reads the sidecars every run, so a late or corrected sidecar is applied without
-- re-ingesting; training reads the effective label from video_labels (see realness_tasks/labels.py).
CREATE TABLE labels (
    video_id     TEXT NOT NULL,               -- sha256 of the video's bytes
    source       TEXT NOT NULL,               -- URI of the metadata.json, or of the video itself for a folder label
    kind         TEXT NOT NULL,               -- 'metadata' or 'folder'
    label        TEXT,                        -- REAL / FAKE; NULL once the sidecar no longer names the video
    source_uri   TEXT NOT NULL,               -- the video object the label names
    source_etag  TEXT NOT NULL DEFAULT '',    -- the sidecar's etag when the label was read
    run_id       TEXT,                        -- the run that recorded this value
    recorded_at  TIMESTAMP NOT NULL,          -- UTC; moves only when the value changes
    PRIMARY KEY (video_id, source),
    CHECK (label IN ('REAL', 'FAKE')),
    CHECK (kind IN ('metadata', 'folder'))
);

CREATE INDEX labels_source_idx ON labels (source);

-- The label training uses for each video: a sidecar's before a folder's, then the most recent.
CREATE VIEW video_labels AS
SELECT video_id, label, source, kind, source_uri, recorded_at
FROM (
    SELECT l.video_id, l.label, l.source, l.kind, l.source_uri, l.recorded_at,
           ROW_NUMBER() OVER (
               PARTITION BY l.video_id
               ORDER BY CASE WHEN l.kind = 'metadata' THEN 0 ELSE 1 END, l.recorded_at DESC, l.source DESC
           ) AS preference
    FROM labels l
    WHERE l.label IS NOT NULL
) ranked
WHERE preference = 1;

-- The outbox of the Parquet exports: written in the same transaction as a run's verdicts, marked
-- exported once the file is in the store. A run that died between the two is exported by the next.
CREATE TABLE verdict_exports (
    run_id       TEXT PRIMARY KEY,
    run_date     TEXT NOT NULL,               -- 'YYYY-MM-DD', the export's partition
    committed_at TIMESTAMP NOT NULL,          -- UTC, when the run's verdicts were committed
    exported_at  TIMESTAMP,                   -- UTC; NULL while the Parquet file is still to be written
    uri          TEXT                         -- the Parquet file, once written
);

CREATE INDEX verdict_exports_pending_idx ON verdict_exports (exported_at);

-- Sidecar rows are not failures; a BAD_SIDECAR is, and stays listed here.
DROP VIEW ingest_failures;
CREATE VIEW ingest_failures AS
SELECT source_uri, video_id, status, reason, run_id, attempts, updated_at
FROM ingest_ledger
WHERE status NOT IN ('PUBLISHED', 'NO_FACE', 'DUPLICATE', 'PENDING', 'STAGED', 'SIDECAR');

-- One verdict per video as before, less the verdicts of superseded content: when new bytes replace a
-- video under the same key, the newest content speaks for that key. A verdict is superseded when the
-- ledger row of its source URI now holds other content (or, for a content verdict, no content id).
-- The old content's verdicts stay in the verdicts table (history).
DROP VIEW latest_verdicts;
CREATE VIEW latest_verdicts AS
SELECT video_id, model_version, run_id, run_date, source_uri, verdict, p_fake, faces_scored, fake_faces,
       reason, decided_at
FROM (
    SELECT v.video_id, v.model_version, v.run_id, v.run_date, v.source_uri, v.verdict, v.p_fake,
           v.faces_scored, v.fake_faces, v.reason, v.decided_at,
           ROW_NUMBER() OVER (
               PARTITION BY v.video_id
               ORDER BY CASE WHEN m.promoted_at IS NULL THEN 1 ELSE 0 END,
                        m.promoted_at DESC, v.decided_at DESC, v.model_version DESC
           ) AS preference
    FROM verdicts v
    LEFT JOIN model_versions m ON m.version = v.model_version
) ranked
WHERE preference = 1
  AND NOT EXISTS (SELECT 1 FROM ingest_ledger l
                  WHERE l.source_uri = ranked.source_uri
                    AND COALESCE(l.video_id, 'source:') <> ranked.video_id
                    AND NOT (l.video_id IS NULL AND ranked.video_id LIKE 'source:%'));
