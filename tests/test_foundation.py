"""The foundation encoder (the pinned CLIP file, really run), its feature cache in the store, and the linear head."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realness_tasks import foundation
from realness_tasks.storage import open_store


@pytest.fixture(scope="module")
def encoder():
    return foundation.load_encoder(None, threads=2)


def crops(count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = np.full((224, 224, 3), rng.integers(40, 200, 3), np.uint8)
        cv2.circle(image, tuple(int(v) for v in rng.integers(60, 160, 2)), int(rng.integers(20, 60)),
                   tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        out.append(cv2.imencode(".jpg", image)[1].tobytes())
    return out


def test_the_pinned_encoder_gives_unit_length_features_that_depend_on_the_image(encoder):
    assert encoder.sha256 == foundation.ENCODER_SHA256
    assert encoder.identity == f"{foundation.ENCODER_NAME}:{foundation.ENCODER_SHA256[:16]}"
    jpegs = crops(3, seed=0)
    features = encoder.embed_jpegs(jpegs)
    assert features.shape == (3, 512)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-5)
    assert np.abs(features[0] - features[1]).max() > 1e-3
    np.testing.assert_allclose(encoder.embed_jpegs(jpegs[:1]), features[:1], atol=1e-5)   # batch-independent


def test_a_missing_encoder_file_is_an_error_that_names_the_setting(tmp_path):
    with pytest.raises(foundation.EncoderUnavailable, match="REALNESS_FOUNDATION_ENCODER_PATH"):
        foundation.encoder_path(str(tmp_path / "missing.onnx"))


def test_features_are_encoded_once_per_crop_and_kept_per_video_in_the_store(encoder, tmp_path):
    store = open_store((tmp_path / "store").as_uri())
    jpegs = crops(4, seed=1)
    first = foundation.FeatureCache(store, "features/", encoder)
    features = first.features(["a", "a", "b", "b"], jpegs)
    assert (first.computed, first.reused) == (4, 0)
    keys = sorted(o.key for o in store.list("features/"))
    assert keys == [foundation.cache_key("features/", encoder, v) for v in ("a", "b")]
    again = foundation.FeatureCache(store, "features/", encoder)
    np.testing.assert_array_equal(again.features(["b", "a"], [jpegs[3], jpegs[0]]), features[[3, 0]])
    assert (again.computed, again.reused) == (0, 2)
    changed = crops(1, seed=2)      # a re-ingested video whose crop changed is encoded again
    again.features(["a"], changed)
    assert again.computed == 1


def test_the_linear_head_separates_classes_and_is_deterministic():
    rng = np.random.default_rng(3)
    direction = foundation.l2_normalise(rng.normal(size=(1, 512)))[0]
    x = foundation.l2_normalise(rng.normal(size=(400, 512)) * 0.05 + 0.0)
    y = (rng.random(400) < 0.25).astype(int)          # imbalanced: the loss balances the classes
    x = foundation.l2_normalise(x + np.outer(np.where(y == 1, 0.08, -0.08), direction))
    head = foundation.fit_linear_head(x, y, c=1.0, encoder="enc")
    scores = head.logits(x)
    assert scores[y == 1].min() > scores[y == 0].max()
    assert abs(np.mean(scores[y == 1] > 0) - np.mean(scores[y == 0] < 0)) < 0.1
    np.testing.assert_array_equal(foundation.fit_linear_head(x, y, c=1.0, encoder="enc").weights, head.weights)
    assert foundation.LinearHead.from_json(head.to_json()).logits(x[:3]) == pytest.approx(scores[:3], abs=1e-4)
    with pytest.raises(ValueError, match="real and fake"):
        foundation.fit_linear_head(x, np.zeros(400), c=1.0, encoder="enc")
