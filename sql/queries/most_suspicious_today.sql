-- Most suspicious videos of one day: the FAKE and UNCERTAIN verdicts of latest_verdicts decided that
-- day, highest video score first.
-- Parameters: day (text 'YYYY-MM-DD', the scoring run's date: pass today's date for "today"),
--             max_rows (how many videos to list, e.g. 50).
-- Columns: video_id, source_uri, verdict, p_fake, fake_faces, faces_scored, model_version, reason, decided_at.
SELECT video_id, source_uri, verdict, p_fake, fake_faces, faces_scored, model_version, reason, decided_at
FROM latest_verdicts
WHERE run_date = :day
  AND verdict IN ('FAKE', 'UNCERTAIN')
ORDER BY p_fake DESC, video_id
LIMIT :max_rows
