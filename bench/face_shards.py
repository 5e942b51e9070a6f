"""Labelled face shards made from the sample photos, for the tests and the benchmarks alike.

Importing this module changes no environment variable and no import path.
"""

from __future__ import annotations

from datetime import datetime, timezone

import cv2
import numpy as np

from realness_tasks import samples
from realness_tasks.settings import CropSettings
from realness_tasks.faces import crop_face, encode_jpeg
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


def valid_rows(size: int, n: int = 4) -> list[FaceRow]:
    """``n`` rows of one sample photo resized to ``size``, which the shard validation accepts."""
    photo = samples.sample_photos()[0]
    jpeg = cv2.imencode(".jpg", cv2.resize(photo.image, (size, size)))[1].tobytes()
    return [FaceRow("v1", "file:///v.mp4", i, i / 8, 0, "mtcnn", 0.99, 10, 20, 100, 120, 640, 360, [1.0] * 10,
                    jpeg, size, size, CropSettings().margin, None, None, "run") for i in range(n)]
