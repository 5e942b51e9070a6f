"""Self-blended pseudo-fakes: altered inside the blend mask, untouched outside it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.face_shards import face_landmarks
from realness_tasks import dataset as ds
from realness_tasks import samples, sbi
from realness_tasks.faces import crop_face, encode_jpeg
from realness_tasks.settings import CropSettings

SIZE = 96


def crop_with_geometry(photo: samples.SamplePhoto) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop of the photo's face, its 5 landmarks and its box, both in crop pixels."""
    frame_size = (photo.image.shape[1], photo.image.shape[0])
    x, y, w, h = photo.face_box
    crop = crop_face(photo.image, photo.face_box, CropSettings(size=SIZE))
    landmarks = ds.to_crop_pixels(np.reshape(face_landmarks(photo.face_box), (5, 2)), photo.face_box, frame_size,
                                  SIZE, CropSettings().margin)
    corners = ds.to_crop_pixels([(x, y), (x + w, y + h)], photo.face_box, frame_size, SIZE, CropSettings().margin)
    return crop, landmarks, np.r_[corners[0], corners[1] - corners[0]]


@pytest.mark.parametrize("with_landmarks", [True, False])
def test_blend_changes_the_face_and_nothing_outside_the_mask(with_landmarks):
    rng = np.random.default_rng(4)
    for photo in samples.sample_photos():
        crop, landmarks, box = crop_with_geometry(photo)
        blended = sbi.self_blend(crop, landmarks if with_landmarks else None, box, rng, ratio=1.0)
        assert blended.image.shape == crop.shape and blended.image.dtype == np.uint8
        outside = blended.mask == 0
        inside = blended.mask > 0.5
        assert outside.mean() > 0.3 and inside.mean() > 0.05
        assert np.array_equal(blended.image[outside], crop[outside])
        changed = np.abs(blended.image.astype(int) - crop.astype(int)).max(axis=2) > 0
        assert changed[inside].mean() > 0.5
        # the face region is covered: the box's centre is inside the mask
        cx, cy = int(box[0] + box[2] / 2), int(box[1] + box[3] / 2)
        assert blended.mask[cy, cx] > 0.5


def test_blend_ratio_scales_the_mask():
    crop, landmarks, box = crop_with_geometry(samples.sample_photos()[1])
    for ratio in (0.25, 0.75):
        blended = sbi.self_blend(crop, landmarks, box, np.random.default_rng(0), ratio=ratio)
        assert blended.mask.max() == pytest.approx(ratio, abs=1e-5)
    drawn = {round(float(sbi.self_blend(crop, landmarks, box, np.random.default_rng(s)).mask.max()), 4)
             for s in range(30)}
    assert drawn <= set(sbi.BLEND_RATIOS) and len(drawn) >= 3


def test_face_mask_from_landmarks_covers_them_and_without_falls_back_to_the_box_ellipse():
    crop, landmarks, box = crop_with_geometry(samples.sample_photos()[2])
    hull = sbi.face_mask(SIZE, SIZE, landmarks, box)
    assert all(hull[int(y), int(x)] == 1 for x, y in landmarks)
    ellipse = sbi.face_mask(SIZE, SIZE, None, box)
    x, y, w, h = box
    assert ellipse[int(y + h / 2), int(x + w / 2)] == 1
    assert ellipse[:int(y) - 1].sum() == 0 and ellipse[int(y + h) + 2:].sum() == 0
    assert not np.array_equal(hull, ellipse)


def test_pseudo_fake_maker_draws_a_new_fake_jpeg_each_time_reproducibly():
    photos = samples.sample_photos()
    geometry = [crop_with_geometry(p) for p in photos]
    real = ds.FaceSet([encode_jpeg(c, 92) for c, _, _ in geometry], np.zeros(len(photos), np.int32),
                      np.array([f"v{i}" for i in range(len(photos))]), np.array([b for _, _, b in geometry]),
                      [lm for _, lm, _ in geometry], np.zeros(len(photos), np.int16))
    maker = sbi.PseudoFakeMaker(real, seed=1, jpeg_quality=92)
    assert len(maker) == len(real)
    for index, original in enumerate(real.jpegs):
        a = cv2.imdecode(np.frombuffer(original, np.uint8), cv2.IMREAD_COLOR)
        b = cv2.imdecode(np.frombuffer(maker.make(index, draw=index), np.uint8), cv2.IMREAD_COLOR)
        assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 0.5
    assert maker.make(0, draw=7) == maker.make(0, draw=7)                 # seeded: a run can be repeated
    assert len({maker.make(0, draw=d) for d in range(5)}) == 5            # a new pseudo-fake on every draw
    assert sbi.PseudoFakeMaker(real, seed=2, jpeg_quality=92).make(0, draw=7) != maker.make(0, draw=7)
