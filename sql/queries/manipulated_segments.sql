-- Manipulated segments longer than min_seconds scanned since a day: every sustained run of fake
-- faces in one face track, from each video's latest verdict (latest_segments), longest first.
-- Parameters: min_seconds (e.g. 5), since ('YYYY-MM-DD', the first scoring day to include).
-- Columns: video_id, source_uri, track_id, start_s, end_s, seconds, faces, p_fake, model_version, run_date.
SELECT video_id, source_uri, track_id, start_s, end_s, seconds, faces, p_fake, model_version, run_date
FROM latest_segments
WHERE verdict = 'FAKE' AND seconds > :min_seconds AND run_date >= :since
ORDER BY seconds DESC, video_id, start_s
