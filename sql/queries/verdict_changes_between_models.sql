-- Videos both model versions judged and on which they disagree, the largest score change first:
-- what promoting new_version changed.
-- Parameters: old_version, new_version (model_versions.version values).
-- Columns: video_id, source_uri, old_verdict, new_verdict, old_p_fake, new_p_fake,
--          p_fake_change (new minus old; NULL when either has no score).
SELECT n.video_id,
       n.source_uri,
       o.verdict AS old_verdict,
       n.verdict AS new_verdict,
       o.p_fake AS old_p_fake,
       n.p_fake AS new_p_fake,
       n.p_fake - o.p_fake AS p_fake_change
FROM verdicts o
JOIN verdicts n ON n.video_id = o.video_id
WHERE o.model_version = :old_version
  AND n.model_version = :new_version
  AND o.verdict <> n.verdict
ORDER BY ABS(COALESCE(n.p_fake, 0) - COALESCE(o.p_fake, 0)) DESC, n.video_id
