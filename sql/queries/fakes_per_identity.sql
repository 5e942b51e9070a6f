-- Fakes per identity since a day: for each identity, the videos whose latest verdict is FAKE and
-- scored on or after that day, beside every video of theirs scored since (REALNESS_IDENTITY_ENABLED).
-- Parameters: since (text 'YYYY-MM-DD': pass the date a week ago for "this week").
-- Columns: identity_id, name (the operator's, or NULL), videos, fakes, uncertain, last_fake_run_date.
SELECT identity_id,
       name,
       COUNT(*) AS videos,
       SUM(CASE WHEN verdict = 'FAKE' THEN 1 ELSE 0 END) AS fakes,
       SUM(CASE WHEN verdict = 'UNCERTAIN' THEN 1 ELSE 0 END) AS uncertain,
       MAX(CASE WHEN verdict = 'FAKE' THEN run_date END) AS last_fake_run_date
FROM identity_videos
WHERE run_date >= :since
GROUP BY identity_id, name
HAVING SUM(CASE WHEN verdict = 'FAKE' THEN 1 ELSE 0 END) > 0
ORDER BY fakes DESC, identity_id
