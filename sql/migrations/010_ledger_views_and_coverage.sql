-- The ledger's views, and what ingest looked at in each video.
--
-- latest_verdicts: a verdict whose source URI now holds other content is not simply hidden when the
-- same content still lives under another key (a DUPLICATE of it): it is shown under that key (the
-- smallest such URI). Before, copying a.mp4 to dup.mp4 and then overwriting a.mp4 left no latest row
-- for the content dup.mp4 still holds. Verdicts keyed by a URI ('source:...') are unchanged. It also
-- carries the coverage of its video (video_coverage, below), so a verdict on a 3-hour video shows it
-- was judged on, say, 64 frames 169 s apart.
--
-- ingest_failures: SIDECAR_GONE rows (a sidecar no longer listed; its labels stay) are not failures.
--
-- Coverage (the sampling budget REALNESS_SAMPLING_MAX_FRAMES is spread over the whole video, so a long
-- video is seen sparsely rather than only at its start; these columns say how sparsely; frames_sampled
-- already exists):
--   seconds_covered: from the start of the first sampled frame to the end of the last (the whole
--                    duration when both ends were sampled)
--   largest_gap_s:   the longest distance between consecutive sampled frames, the video's start and
--                    its declared end counting as ends (a stream that ended early shows the unread rest)
-- NULL when nothing was sampled, and on rows ingested before this migration.

ALTER TABLE ingest_ledger ADD COLUMN seconds_covered DOUBLE PRECISION;
ALTER TABLE ingest_ledger ADD COLUMN largest_gap_s DOUBLE PRECISION;

-- Per video content, the coverage of the latest ingest that sampled it (the ledger is keyed by
-- source; DUPLICATE rows sampled nothing), with the video's duration.
CREATE VIEW video_coverage AS
SELECT video_id, source_uri, frames_sampled, seconds_covered, largest_gap_s, duration_s, updated_at
FROM (
    SELECT l.video_id, l.source_uri, l.frames_sampled, l.seconds_covered, l.largest_gap_s, v.duration_s,
           l.updated_at,
           ROW_NUMBER() OVER (PARTITION BY l.video_id ORDER BY l.updated_at DESC, l.source_uri) AS recency
    FROM ingest_ledger l
    LEFT JOIN videos v ON v.video_id = l.video_id
    WHERE l.video_id IS NOT NULL AND l.frames_sampled > 0
) ranked
WHERE recency = 1;

DROP VIEW latest_verdicts;
CREATE VIEW latest_verdicts AS
SELECT placed.video_id, placed.model_version, placed.run_id, placed.run_date,
       CASE WHEN placed.superseded = 0 THEN placed.source_uri ELSE placed.holder END AS source_uri,
       placed.verdict, placed.p_fake, placed.faces_scored, placed.fake_faces, placed.reason, placed.decided_at,
       placed.report_uri, c.frames_sampled, c.seconds_covered, c.largest_gap_s, c.duration_s
FROM (
    SELECT ranked.video_id, ranked.model_version, ranked.run_id, ranked.run_date, ranked.source_uri,
           ranked.verdict, ranked.p_fake, ranked.faces_scored, ranked.fake_faces, ranked.reason,
           ranked.decided_at, ranked.report_uri,
           CASE WHEN EXISTS (SELECT 1 FROM ingest_ledger l
                             WHERE l.source_uri = ranked.source_uri
                               AND COALESCE(l.video_id, 'source:') <> ranked.video_id
                               AND NOT (l.video_id IS NULL AND ranked.video_id LIKE 'source:%'))
                THEN 1 ELSE 0 END AS superseded,
           (SELECT MIN(h.source_uri) FROM ingest_ledger h WHERE h.video_id = ranked.video_id) AS holder
    FROM (
        SELECT v.video_id, v.model_version, v.run_id, v.run_date, v.source_uri, v.verdict, v.p_fake,
               v.faces_scored, v.fake_faces, v.reason, v.decided_at, v.report_uri,
               ROW_NUMBER() OVER (
                   PARTITION BY v.video_id
                   ORDER BY CASE WHEN m.promoted_at IS NULL THEN 1 ELSE 0 END,
                            m.promoted_at DESC, v.decided_at DESC, v.model_version DESC
               ) AS preference
        FROM verdicts v
        LEFT JOIN model_versions m ON m.version = v.model_version
    ) ranked
    WHERE preference = 1
) placed
LEFT JOIN video_coverage c ON c.video_id = placed.video_id
WHERE placed.superseded = 0 OR placed.holder IS NOT NULL;

DROP VIEW ingest_failures;
CREATE VIEW ingest_failures AS
SELECT source_uri, video_id, status, reason, run_id, attempts, updated_at
FROM ingest_ledger
WHERE status NOT IN ('PUBLISHED', 'NO_FACE', 'DUPLICATE', 'PENDING', 'STAGED', 'SIDECAR', 'SIDECAR_GONE');
