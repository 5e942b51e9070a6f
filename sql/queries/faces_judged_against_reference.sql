-- How identity references changed one video's faces: each face's global p_fake beside its
-- identity-relative p_identity and the reference it was judged against (REALNESS_IDENTITY_ENABLED).
-- Parameters: video_id (the video's sha256).
-- Columns: frame_index, face_index, model_version, identity_id, name, reference_faces, p_fake, p_identity, label.
SELECT s.frame_index, s.face_index, s.model_version, s.identity_id, i.name, s.reference_faces, s.p_fake,
       s.p_identity, s.label
FROM face_scores s
LEFT JOIN identities i ON i.identity_id = s.identity_id
WHERE s.video_id = :video_id
ORDER BY s.model_version, s.frame_index, s.face_index
