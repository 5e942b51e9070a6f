-- Two fixes of the ledger's views.
--
-- latest_verdicts: a verdict whose source URI now holds other content is not simply hidden when the
-- same content still lives under another key (a DUPLICATE of it): it is shown under that key (the
-- smallest such URI). Before, copying a.mp4 to dup.mp4 and then overwriting a.mp4 left no latest row
-- for the content dup.mp4 still holds. Verdicts keyed by a URI ('source:...') are unchanged.
--
-- ingest_failures: SIDECAR_GONE rows (a sidecar no longer listed; its labels stay) are not failures.

DROP VIEW latest_verdicts;
CREATE VIEW latest_verdicts AS
SELECT video_id, model_version, run_id, run_date,
       CASE WHEN superseded = 0 THEN source_uri ELSE holder END AS source_uri,
       verdict, p_fake, faces_scored, fake_faces, reason, decided_at, report_uri
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
WHERE superseded = 0 OR holder IS NOT NULL;

DROP VIEW ingest_failures;
CREATE VIEW ingest_failures AS
SELECT source_uri, video_id, status, reason, run_id, attempts, updated_at
FROM ingest_ledger
WHERE status NOT IN ('PUBLISHED', 'NO_FACE', 'DUPLICATE', 'PENDING', 'STAGED', 'SIDECAR', 'SIDECAR_GONE');
