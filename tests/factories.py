"""Test data made in code: face shards, crops and stand-in backbone weights built from the sample photos."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from realness_tasks import model, samples
from realness_tasks.faces import crop_face, encode_jpeg
from realness_tasks.settings import CropSettings
from realness_tasks.shards import FaceRow, rows_to_table, shard_key, table_to_bytes
from realness_tasks.storage import ObjectStore

DATES = ("2024-05-01", "2024-05-02")


def face_landmarks(box: tuple[int, int, int, int]) -> list[float]:
    """Five plausible landmarks (eyes, nose, mouth corners) inside a face box."""
    x, y, w, h = box
    spots = [(0.3, 0.38), (0.7, 0.38), (0.5, 0.58), (0.35, 0.78), (0.65, 0.78)]
    return [float(v) for fx, fy in spots for v in (x + fx * w, y + fy * h)]


def labelled_rows(video_id: str, label: str | None, image: np.ndarray, box: tuple[int, int, int, int],
                  faces: int, crop_size: int, rng: np.random.Generator) -> list[FaceRow]:
    """``faces`` crops of ``image``'s face, each with a slightly moved box and changed brightness."""
    rows = []
    height, width = image.shape[:2]
    for i in range(faces):
        dx, dy = (int(v) for v in rng.integers(-4, 5, 2))
        moved = (box[0] + dx, box[1] + dy, box[2], box[3])
        frame = np.clip(image.astype(np.int16) + int(rng.integers(-12, 13)), 0, 255).astype(np.uint8)
        settings = CropSettings(size=crop_size)
        crop = crop_face(frame, moved, settings)
        rows.append(FaceRow(
            video_id=video_id, source_uri=f"s3://landing/{video_id}.mp4", frame_index=i, timestamp_s=i / 8,
            face_index=0, detector="mtcnn", confidence=0.99, box_x=moved[0], box_y=moved[1], box_w=moved[2],
            box_h=moved[3], frame_width=width, frame_height=height, landmarks=face_landmarks(moved),
            crop_jpeg=encode_jpeg(crop, 92), crop_width=crop_size, crop_height=crop_size,
            crop_margin=settings.margin, label=label, azure_status=None, run_id="test-ingest",
            created_at=datetime.now(timezone.utc)))
    return rows


def fake_image(target: samples.SamplePhoto, source: samples.SamplePhoto, seed: int) -> np.ndarray:
    """``source``'s face swapped into ``target`` with a visible colour mismatch (a badly colour-matched swap).

    The mismatch is a cue a small network picks up in a few steps, whoever's face it is, so the
    training tests can tell a model that learned from one that did not.
    """
    return samples.face_swap(target, source, seed=seed, colour_cast=samples.CRUDE_SWAP_CAST)


def write_labelled_shards(store: ObjectStore, faces_prefix: str = "faces/", *, videos_per_class: int = 4,
                          faces_per_video: int = 5, crop_size: int = 64, seed: int = 0, first_video: int = 0,
                          unlabelled_faces: int = 0) -> dict[str, str]:
    """One shard per video under ``faces_prefix``; returns {video_id: label}.

    Video ``i`` uses sample photo ``i % 4``; its FAKE twin swaps the next photo's face into it.
    ``unlabelled_faces`` rows with a null label are added to the first shard.
    """
    photos = samples.sample_photos()
    rng = np.random.default_rng(seed)
    labels: dict[str, str] = {}
    for i in range(first_video, first_video + videos_per_class):
        target, source = photos[i % len(photos)], photos[(i + 1) % len(photos)]
        for label, image in (("REAL", target.image), ("FAKE", fake_image(target, source, seed=i))):
            video_id = f"{label.lower()}{i:03d}{seed:02d}"
            rows = labelled_rows(video_id, label, image, target.face_box, faces_per_video, crop_size, rng)
            if unlabelled_faces and not labels:
                rows += labelled_rows(video_id, None, image, target.face_box, unlabelled_faces, crop_size, rng)
            store.put_bytes(shard_key(faces_prefix, DATES[i % 2], video_id), table_to_bytes(rows_to_table(rows)))
            labels[video_id] = label
    return labels


def sample_crops(size: int = 64) -> list[bytes]:
    return [encode_jpeg(crop_face(p.image, p.face_box, CropSettings(size=size)), 92) for p in samples.sample_photos()]


def calibrated_backbone(path: Path, image_size: int) -> Path:
    """Write stand-in EfficientNetB0 no-top weights to ``path`` (``*.weights.h5``, or ``*.h5`` in Keras' legacy
    format, which is how Keras caches the real file)."""
    import h5py
    import keras
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    backbone = keras.applications.EfficientNetB0(include_top=False, pooling="avg", weights=None,
                                                 input_shape=(image_size, image_size, 3))
    model.calibrate_batchnorm(backbone, [model.decode_crops(sample_crops() * 4, image_size)])
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".weights.h5"):
        backbone.save_weights(path)
    else:
        with h5py.File(path, "w") as handle:
            save_weights_to_hdf5_group(handle, backbone)
    return path


def valid_rows(size: int, n: int = 4) -> list[FaceRow]:
    photo = samples.sample_photos()[0]
    jpeg = cv2.imencode(".jpg", cv2.resize(photo.image, (size, size)))[1].tobytes()
    return [FaceRow("v1", "file:///v.mp4", i, i / 8, 0, "mtcnn", 0.99, 10, 20, 100, 120, 640, 360, [1.0] * 10,
                    jpeg, size, size, CropSettings().margin, None, None, "run") for i in range(n)]


def brightness_classifier(image_size: int, gain: float, cut: float):
    """A genuine Keras classifier shaped like the project's (a nested backbone named ``model.BACKBONE_NAME``
    ending in global average pooling, then a dense head) whose fake probability is known:
    sigmoid(gain * (mean RGB / 255 - cut)), so brighter crops are "faker".

    The backbone's one convolution passes each channel through, so its feature map is the image
    itself and Grad-CAM on it highlights the bright regions.
    """
    import keras

    pixels = keras.Input((image_size, image_size, 3))
    conv = keras.layers.Conv2D(3, 3, padding="same", use_bias=False, name="pass_through")
    features = keras.layers.GlobalAveragePooling2D()(conv(keras.layers.Rescaling(1 / 255)(pixels)))
    backbone = keras.Model(pixels, features, name=model.BACKBONE_NAME)
    kernel = np.zeros((3, 3, 3, 3), np.float32)
    kernel[1, 1] = np.eye(3)
    conv.set_weights([kernel])
    inputs = keras.Input((image_size, image_size, 3), name="face_rgb_0_255")
    head = keras.layers.Dense(1, activation="sigmoid", name="fake_probability")
    classifier = keras.Model(inputs, head(backbone(inputs)), name="brightness_classifier")
    head.set_weights([np.full((3, 1), gain / 3, np.float32), np.array([-gain * cut], np.float32)])
    return classifier
