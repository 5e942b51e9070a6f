-- How ingest decoded the sampled frames of each video (issue 33, keyframe-aware sampling;
-- REALNESS_SAMPLING_DECODE, docs/detection.md "Keyframe-aware decoding"):
--   'keyframes':  only the keyframe nearest each planned frame was decoded (PyAV seeking); the frames
--                 sampled are those keyframes, at their own indices and timestamps
--   'sequential': every frame up to the last planned one was decoded in order (OpenCV)
-- NULL on rows that sampled nothing, and on rows ingested before this migration.

ALTER TABLE ingest_ledger ADD COLUMN decode_path TEXT;
