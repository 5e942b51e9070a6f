-- Split groups: videos that must stay in one train/val/test split (one person, one shoot, a real
-- video and the fakes made from it). A sidecar entry's "group", else its "original"'s group, else
-- the original's key (see realness_tasks/landing_labels.py: find_labels). NULL: the video is its own group.
-- Recorded with the label it came with, so a corrected sidecar updates it like a label.

DROP VIEW video_labels;

ALTER TABLE labels ADD COLUMN split_group TEXT;

-- As in 005_labels.sql (a sidecar's label before a folder's, then the most recent), with the
-- split group recorded with the chosen label.
CREATE VIEW video_labels AS
SELECT video_id, label, split_group, source, kind, source_uri, recorded_at
FROM (
    SELECT l.video_id, l.label, l.split_group, l.source, l.kind, l.source_uri, l.recorded_at,
           ROW_NUMBER() OVER (
               PARTITION BY l.video_id
               ORDER BY CASE WHEN l.kind = 'metadata' THEN 0 ELSE 1 END, l.recorded_at DESC, l.source DESC
           ) AS preference
    FROM labels l
    WHERE l.label IS NOT NULL
) ranked
WHERE preference = 1;
