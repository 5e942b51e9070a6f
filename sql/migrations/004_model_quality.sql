-- What each model was built from and how it did per video (the promotion gate reads video AUC).
-- Rows registered before this migration keep NULL here.

ALTER TABLE model_versions ADD COLUMN backbone TEXT;          -- efficientnet_lite0 | efficientnet_b0
ALTER TABLE model_versions ADD COLUMN backbone_weights TEXT;  -- imagenet:<file> sha256:<hex>, or random
ALTER TABLE model_versions ADD COLUMN video_auc DOUBLE PRECISION;     -- held-out test videos, verdict rule applied
ALTER TABLE model_versions ADD COLUMN video_f1_fake DOUBLE PRECISION;
ALTER TABLE model_versions ADD COLUMN test_videos INTEGER;
