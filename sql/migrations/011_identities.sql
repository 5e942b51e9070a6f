-- Identities (REALNESS_IDENTITY_ENABLED): faces of the same person across the archive, clustered on
-- face-recognition embeddings (realness_tasks/identities.py writes these tables; docs/identities.md
-- says what is kept and how to delete one person's data). Biometric data: empty unless enabled.

CREATE TABLE identities (
    identity_id   INTEGER PRIMARY KEY,
    name          TEXT,                       -- given by an operator (realness identities name); never guessed
    embedder      TEXT NOT NULL,              -- the embedding model its centroid lives in
    centroid      TEXT NOT NULL,              -- JSON array: the mean embedding of its embedded faces
    faces         INTEGER NOT NULL,           -- embedded faces behind the centroid
    first_seen_at TIMESTAMP NOT NULL,         -- UTC, when its first face was assigned
    last_seen_at  TIMESTAMP NOT NULL          -- UTC, when a face last joined it
);

CREATE TABLE face_identities (
    video_id      TEXT NOT NULL,
    frame_index   INTEGER NOT NULL,
    face_index    INTEGER NOT NULL,
    identity_id   INTEGER NOT NULL,
    embedded      INTEGER NOT NULL,           -- 1: its own embedding decided; 0: took its nearest embedded face's
    distance      DOUBLE PRECISION,           -- to the identity's centroid when assigned; NULL when it founded it
    assigned_at   TIMESTAMP NOT NULL,         -- UTC
    PRIMARY KEY (video_id, frame_index, face_index)
);

CREATE INDEX face_identities_identity_idx ON face_identities (identity_id, video_id);

-- The identity-relative score: p_identity is p_fake after subtracting the person's offset against
-- their reference (NULL when the face had no identity with enough reference faces); the face's label
-- and the video's verdict use it when present. reference_faces: how many reference faces it was judged against.
ALTER TABLE face_scores ADD COLUMN identity_id INTEGER;
ALTER TABLE face_scores ADD COLUMN reference_faces INTEGER;
ALTER TABLE face_scores ADD COLUMN p_identity DOUBLE PRECISION;

-- Each face with its identity and the operator's name for it.
CREATE VIEW identity_faces AS
SELECT f.video_id, f.frame_index, f.face_index, f.identity_id, i.name, f.embedded, f.distance, f.assigned_at
FROM face_identities f
JOIN identities i ON i.identity_id = f.identity_id;

-- Videos per identity, with each video's latest verdict.
CREATE VIEW identity_videos AS
SELECT f.identity_id, i.name, f.video_id, COUNT(*) AS faces, v.source_uri, v.verdict, v.p_fake,
       v.model_version, v.run_date
FROM face_identities f
JOIN identities i ON i.identity_id = f.identity_id
LEFT JOIN latest_verdicts v ON v.video_id = f.video_id
GROUP BY f.identity_id, i.name, f.video_id, v.source_uri, v.verdict, v.p_fake, v.model_version, v.run_date;
