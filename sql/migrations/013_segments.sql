-- Segments (issue 33): runs of consecutive fake faces of one face track, per video and model version.
-- A video is FAKE when one track holds a sustained run (REALNESS_SCORING_SEGMENT_MIN_FACES faces over at
-- least REALNESS_SCORING_SEGMENT_MIN_SECONDS); shorter runs of two or more faces are kept as UNCERTAIN, so
-- an analyst sees where a model hesitated. Written with the verdicts, in the same transaction; a
-- verdict's segments replace the earlier ones of its video under the same model version.
--   track_id: the shard's track_id, or the face_index group for shards written before tracks
--   start_s, end_s: times of the run's first and last face (a one-frame run is not a segment)
--   p_fake: the mean judged p_fake of its faces (p_identity where the face had a reference)

CREATE TABLE segments (
    video_id      TEXT NOT NULL,
    model_version TEXT NOT NULL,
    track_id      INTEGER NOT NULL,
    start_s       DOUBLE PRECISION NOT NULL,
    end_s         DOUBLE PRECISION NOT NULL,
    faces         INTEGER NOT NULL,
    p_fake        DOUBLE PRECISION NOT NULL,
    verdict       TEXT NOT NULL,
    run_id        TEXT NOT NULL,              -- the scoring run that decided it (the verdict's)
    decided_at    TIMESTAMP NOT NULL,         -- UTC
    PRIMARY KEY (video_id, model_version, track_id, start_s),
    CHECK (verdict IN ('FAKE', 'UNCERTAIN')),
    CHECK (end_s >= start_s)
);

CREATE INDEX segments_verdict_idx ON segments (verdict, model_version);

-- The segments of each video's latest verdict (latest_verdicts: the most recently promoted model version
-- that judged it, with that view's source placement), with the verdict's source and run date. A migration
-- that drops latest_verdicts must drop this view first and recreate it (and identity_videos, migration 011, likewise).
CREATE VIEW latest_segments AS
SELECT s.video_id, s.model_version, s.track_id, s.start_s, s.end_s, s.end_s - s.start_s AS seconds, s.faces,
       s.p_fake, s.verdict, s.run_id, s.decided_at, v.source_uri, v.run_date, v.verdict AS video_verdict
FROM segments s
JOIN latest_verdicts v ON v.video_id = s.video_id AND v.model_version = s.model_version;
