"""The augmentation stage and the tf.data pipelines: augmentation on the training split only."""

from __future__ import annotations

import numpy as np

from realness_tasks import augment, model, samples, sbi
from realness_tasks import dataset as ds
from realness_tasks.faces import crop_face, encode_jpeg
from realness_tasks.settings import CropSettings
from tests.factories import sample_crops


def test_augmentation_changes_images_in_training_only():
    images = model.decode_crops(sample_crops(), 48)
    stage = augment.augmentation_stage(seed=3)
    augmented = stage(images, training=True).numpy()
    assert augmented.shape == images.shape
    assert not np.allclose(augmented, images.numpy(), atol=1.0)
    assert np.array_equal(stage(images, training=False).numpy(), images.numpy())


def test_every_transform_of_the_stage_is_there():
    names = [type(layer).__name__ for layer in augment.augmentation_stage(seed=0).layers]
    assert names == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomShear"]


def test_random_erasing_puts_a_noise_patch_on_the_share_of_faces_it_is_set_to():
    flat = [encode_jpeg(np.full((48, 48, 3), 100, np.uint8), 95)] * 32    # geometry alone keeps it flat
    labels = np.zeros(32)

    def erased(share: float) -> np.ndarray:
        data = augment.pipeline(flat, labels, 48, batch_size=32, train=True, seed=2,
                                augmentation=augment.AugmentationSettings(erasing=share))
        images = next(iter(data))[0].numpy()
        return (np.abs(images - 100) > 20).mean(axis=(1, 2, 3))          # share of each image that is noise

    assert not erased(0.0).any()
    assert erased(1.0).min() > 0.005 and erased(1.0).max() < 0.3
    assert 4 <= (erased(0.5) > 0).sum() <= 28
    names = [type(layer).__name__ for layer in augment.augmentation_stage(
        0, augment.AugmentationSettings(erasing=0.5)).layers]
    assert names[-1] == "RandomErasing"


def test_evaluation_pipeline_is_deterministic_and_undistorted():
    crops = sample_crops()
    labels = np.array([0, 1, 1, 0])
    data = augment.pipeline(crops, labels, 40, batch_size=3, train=False, seed=1)
    first = [(x.numpy(), y.numpy()) for x, y in data]
    second = [(x.numpy(), y.numpy()) for x, y in data]
    assert [x.shape[0] for x, _ in first] == [3, 1]                      # one pass, in order, last batch short
    images = np.concatenate([x for x, _ in first])
    assert np.array_equal(images, np.concatenate([x for x, _ in second]))
    assert np.array_equal(images, model.decode_crops(crops, 40).numpy())  # what scoring sees
    assert np.concatenate([y for _, y in first]).tolist() == labels.tolist()


def test_training_pipeline_augments_each_pass_differently():
    crop = sample_crops()[:1]
    data = augment.pipeline(crop, np.array([1]), 40, batch_size=1, train=True, seed=1)
    batches = [x.numpy() for x, _ in data.take(4)]                        # repeats: the same face four times
    plain = model.decode_crops(crop, 40).numpy()
    assert all(b.shape == plain.shape for b in batches)
    assert not any(np.allclose(b, plain, atol=1.0) for b in batches)
    assert len({b.tobytes() for b in batches}) == 4
    assert all(y.numpy().tolist() == [1.0] for _, y in data.take(4))


def test_training_pipeline_adds_new_pseudo_fakes_every_epoch():
    photos = samples.sample_photos()[:2]
    crops = [encode_jpeg(crop_face(p.image, p.face_box, CropSettings(size=48)), 92) for p in photos]
    real = ds.FaceSet(crops, np.zeros(2, np.int32), np.array(["a", "b"]), np.array([[8, 8, 32, 32]] * 2, np.float32),
                      [None, None], np.zeros(2, np.int16))
    maker = sbi.PseudoFakeMaker(real, seed=0, jpeg_quality=92)
    data = augment.pipeline(crops, real.labels, 48, batch_size=4, train=True, seed=1, pseudo_fakes=maker)
    epochs = [(x.numpy(), y.numpy()) for x, y in data.take(3)]           # 2 real + 2 pseudo-fakes per epoch
    assert all(sorted(y.tolist()) == [0.0, 0.0, 1.0, 1.0] for _, y in epochs)
    fakes = [x[y == 1] for x, y in epochs]
    assert all(f.shape == (2, 48, 48, 3) for f in fakes)
    assert not np.array_equal(fakes[0], fakes[1]) and not np.array_equal(fakes[1], fakes[2])
    plain = model.decode_crops(crops, 48).numpy()
    assert all(min(np.abs(f - p).mean() for p in plain) > 0.5 for fake in fakes for f in fake)
