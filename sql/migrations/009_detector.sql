-- Fusion and calibration. model_versions.detector: JSON of the EfficientNet weight in the fused score,
-- the foundation encoder, the raw threshold chosen on the validation videos and the calibration
-- temperature (NULL: registered before them; its p_fake is EfficientNet's raw probability).
-- face_scores.p_raw: the fused score before calibration (p_fake is calibrated; NULL before).

ALTER TABLE model_versions ADD COLUMN detector TEXT;
ALTER TABLE face_scores ADD COLUMN p_raw DOUBLE PRECISION;
