-- Per-video HTML reports: where the report of a verdict lives, so SQL users can open it.
-- NULL until a report is written (the scoring DAG writes them for the verdicts in
-- REALNESS_REPORT_VERDICTS; `realness report` for any other). Re-deciding a verdict clears it.

ALTER TABLE verdicts ADD COLUMN report_uri TEXT;

DROP VIEW latest_verdicts;

-- As in 005_labels.sql (the newest content under a key supersedes the older one), with report_uri.
CREATE VIEW latest_verdicts AS
SELECT video_id, model_version, run_id, run_date, source_uri, verdict, p_fake, faces_scored, fake_faces,
       reason, decided_at, report_uri
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
  AND NOT EXISTS (SELECT 1 FROM ingest_ledger l
                  WHERE l.source_uri = ranked.source_uri
                    AND COALESCE(l.video_id, 'source:') <> ranked.video_id
                    AND NOT (l.video_id IS NULL AND ranked.video_id LIKE 'source:%'));
