-- Scores and verdicts: one row per face and per video, for each model version that judged them.
-- Portable SQL: the same file runs on SQLite and PostgreSQL. Dates that views group by are stored
-- as 'YYYY-MM-DD' text written by Python (run_date), because the engines' date functions differ.

CREATE TABLE face_scores (
    video_id      TEXT NOT NULL,
    frame_index   INTEGER NOT NULL,
    face_index    INTEGER NOT NULL,           -- 0 = the frame's dominant face
    model_version TEXT NOT NULL,
    p_fake        DOUBLE PRECISION NOT NULL,  -- the model's probability that the face is fake
    label         TEXT NOT NULL,              -- FAKE when p_fake >= the model's threshold, else REAL
    confidence    DOUBLE PRECISION NOT NULL,  -- probability of label: p_fake or 1 - p_fake
    run_id        TEXT NOT NULL,
    scored_at     TIMESTAMP NOT NULL,         -- UTC
    PRIMARY KEY (video_id, frame_index, face_index, model_version),
    CHECK (label IN ('FAKE', 'REAL'))
);

-- "Which videos has this version scored?" (what scoring skips) without reading every face.
CREATE INDEX face_scores_version_idx ON face_scores (model_version, video_id);

CREATE TABLE verdicts (
    video_id      TEXT NOT NULL,              -- sha256 of the video; 'source:<sha256 of the URI>' when ingest never read it
    model_version TEXT NOT NULL,
    run_id        TEXT NOT NULL,              -- the scoring run that decided it
    run_date      TEXT NOT NULL,              -- that run's date, 'YYYY-MM-DD'
    source_uri    TEXT,
    verdict       TEXT NOT NULL,
    p_fake        DOUBLE PRECISION,           -- aggregated video score; NULL for NO_FACE and ERROR
    faces_scored  INTEGER NOT NULL DEFAULT 0,
    fake_faces    INTEGER NOT NULL DEFAULT 0, -- faces at or above the threshold
    reason        TEXT,                       -- the rule that decided, or why there is no score
    decided_at    TIMESTAMP NOT NULL,         -- UTC
    PRIMARY KEY (video_id, model_version),
    CHECK (verdict IN ('FAKE', 'REAL', 'UNCERTAIN', 'NO_FACE', 'ERROR'))
);

CREATE INDEX verdicts_day_idx ON verdicts (run_date, verdict);
CREATE INDEX verdicts_version_idx ON verdicts (model_version, verdict);
CREATE INDEX verdicts_run_idx ON verdicts (run_id);

-- One verdict per video: the one by the most recently promoted model version that judged it
-- (model_versions.promoted_at, latest first). Verdicts by versions never promoted (a challenger
-- scored in shadow) rank after every promoted version's, so they show only for videos that no
-- champion has judged. Remaining ties go to the latest decided_at, then the larger version name.
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
WHERE preference = 1;

-- Per scoring day and model version: what that version's runs decided that day. A new champion
-- re-judges earlier videos on the day it first runs, under its own version.
CREATE VIEW daily_summary AS
SELECT run_date AS day,
       model_version,
       COUNT(*) AS videos_scanned,
       SUM(CASE WHEN verdict = 'FAKE' THEN 1 ELSE 0 END) AS fakes,
       SUM(CASE WHEN verdict = 'REAL' THEN 1 ELSE 0 END) AS real,
       SUM(CASE WHEN verdict = 'UNCERTAIN' THEN 1 ELSE 0 END) AS uncertain,
       SUM(CASE WHEN verdict = 'NO_FACE' THEN 1 ELSE 0 END) AS no_face,
       SUM(CASE WHEN verdict = 'ERROR' THEN 1 ELSE 0 END) AS errors,
       SUM(faces_scored) AS faces_scored
FROM verdicts
GROUP BY run_date, model_version;
