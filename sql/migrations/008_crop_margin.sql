-- The crop margin (REALNESS_CROP_MARGIN) of the faces a model was trained on: scoring refuses shards
-- cut with another one (an ERROR verdict naming both). Rows registered before this migration keep NULL.

ALTER TABLE model_versions ADD COLUMN crop_margin DOUBLE PRECISION;
