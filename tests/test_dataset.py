"""Reading labelled face shards from the store and the grouped, stratified, deterministic split.

``write_labelled_shards`` builds the labelled face sets the training tests use: crops of the
sample photos (REAL) and of face swaps made from them (FAKE), jittered so that each video has
several different faces, stored as validated shards.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from realness_tasks import dataset as ds
from realness_tasks.config import CropSettings, RealnessConfig
from realness_tasks.faces import crop_box, crop_face
from realness_tasks.storage import open_store
from tests.factories import face_landmarks, write_labelled_shards


@pytest.fixture
def labelled_store(local_config):
    store = open_store(local_config.resolved_store_uri)
    labels = write_labelled_shards(store, videos_per_class=5, faces_per_video=3, unlabelled_faces=2)
    # Shards outside faces/ (not validated yet) must be ignored.
    write_labelled_shards(store, local_config.staging_prefix, videos_per_class=1, seed=9)
    return local_config, store, labels


def test_split_keeps_each_video_in_one_split_and_is_deterministic():
    rng = np.random.default_rng(3)
    videos = {f"v{i:03d}": int(rng.integers(0, 2)) for i in range(120)}
    split = ds.split_videos(videos, seed=7)
    assigned = [v for name in ds.SPLITS for v in split[name]]
    assert sorted(assigned) == sorted(videos)                      # every video once, no leakage
    shuffled = dict(sorted(videos.items(), key=lambda kv: rng.random()))
    assert ds.split_videos(shuffled, seed=7) == split              # order-independent, same seed -> same split
    assert ds.split_videos(videos, seed=8) != split                # the seed matters
    for label in (0, 1):
        n = sum(1 for y in videos.values() if y == label)
        train = sum(1 for v in split["train"] if videos[v] == label)
        assert 0.6 * n <= train <= 0.95 * n


def test_split_of_small_sets_gives_val_and_test_a_video_of_each_class():
    for seed in range(20):
        videos = {f"r{i}": 0 for i in range(3)} | {f"f{i}": 1 for i in range(4)}
        split = ds.split_videos(videos, seed=seed)
        for name in ds.SPLITS:
            assert {videos[v] for v in split[name]} == {0, 1}, (seed, split)


def test_split_membership_is_stable_as_the_data_set_grows():
    videos = {f"v{i:03d}": i % 2 for i in range(400)}
    before = ds.split_videos(videos, seed=1)
    grown = ds.split_videos(videos | {f"w{i:03d}": i % 2 for i in range(400)}, seed=1)
    for name in ds.SPLITS:
        assert set(before[name]) <= set(grown[name])


def test_class_weights_balance_the_loss():
    labels = np.array([0] * 30 + [1] * 10)
    weights = ds.class_weights(labels)
    assert weights[0] * 30 == pytest.approx(weights[1] * 10)
    assert weights[0] * 30 + weights[1] * 10 == pytest.approx(len(labels))
    with pytest.raises(ds.NotEnoughData):
        ds.class_weights(np.zeros(5, np.int32))


def test_landmarks_map_into_the_crop_as_crop_face_cuts_it():
    # A frame with one bright pixel at each landmark: after crop_face, the bright spots lie where
    # to_crop_pixels puts the landmarks (also for a box clamped at the frame's edge).
    for box in ((60, 40, 80, 100), (5, 3, 90, 70)):
        frame = np.zeros((240, 320, 3), np.uint8)
        points = np.reshape(face_landmarks(box), (5, 2))
        for x, y in points:
            frame[int(y) - 1:int(y) + 2, int(x) - 1:int(x) + 2] = 255
        crop = crop_face(frame, box, CropSettings(size=128))
        mapped = ds.to_crop_pixels(points, box, (320, 240), 128, CropSettings().margin)
        for x, y in mapped:
            assert crop[int(round(y)), int(round(x))].max() > 100
        assert crop_box(frame.shape, box, 0.3)[0] >= 0


def test_load_dataset_reads_only_validated_labelled_faces(labelled_store):
    cfg, store, labels = labelled_store
    listed_at = datetime(2024, 5, 3)
    data = ds.load_dataset(cfg, store, listed_at)
    assert data.total_faces == len(labels) * 3
    assert data.manifest["rows_without_label"] == 2
    assert all(s["key"].startswith("faces/date=") for s in data.manifest["shards"])
    assert len(data.manifest["shards"]) == len(labels)
    split_videos = {name: set(data.manifest["splits"][name]["videos"]) for name in ds.SPLITS}
    assert set().union(*split_videos.values()) == set(labels)
    for name, part in (("train", data.train), ("val", data.val), ("test", data.test)):
        assert set(part.video_ids.tolist()) == split_videos[name]
        assert {labels[v] for v in split_videos[name]} == {"REAL", "FAKE"}
        assert part.class_counts() == data.manifest["splits"][name]["faces"]
        expected = [ds.LABELS[labels[str(v)]] for v in part.video_ids]
        assert part.labels.tolist() == expected
        assert all(lm is not None and lm.shape == (5, 2) for lm in part.landmarks)
    assert data.manifest["listed_at"] == listed_at.isoformat()
    again = ds.load_dataset(cfg, store, listed_at)
    assert again.manifest == data.manifest


def test_too_few_videos_is_a_clear_error(local_config):
    store = open_store(local_config.resolved_store_uri)
    write_labelled_shards(store, videos_per_class=2, faces_per_video=2)
    with pytest.raises(ds.NotEnoughData, match="at least 3 labelled videos"):
        ds.load_dataset(local_config, store, datetime(2024, 5, 3))


def test_reads_shards_from_s3(s3_bucket_uri, s3_settings):
    cfg = RealnessConfig.from_env({}, store_uri=s3_bucket_uri, s3=s3_settings.__dict__)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    labels = write_labelled_shards(store, videos_per_class=3, faces_per_video=2)
    data = ds.load_dataset(cfg, store, datetime(2024, 5, 3))
    assert data.total_faces == len(labels) * 2
    assert sorted(data.manifest["splits"]["test"]["videos"] + data.manifest["splits"]["val"]["videos"]
                  + data.manifest["splits"]["train"]["videos"]) == sorted(labels)
    assert ds.count_labelled(store, [s["key"] for s in data.manifest["shards"]]) == data.total_faces


def test_labels_table_overrides_shard_labels(local_config):
    from realness_tasks.storage import open_store
    from tests.factories import write_labelled_shards

    cfg = local_config
    store = open_store(cfg.resolved_store_uri)
    truth = write_labelled_shards(store, videos_per_class=3, faces_per_video=2, unlabelled_faces=2)
    shards = ds.list_shards(cfg, store)
    first = sorted(truth)[0]
    overrides = {first: None, sorted(truth)[1]: "FAKE" if truth[sorted(truth)[1]] == "REAL" else "REAL"}
    faces, unlabelled = ds.read_faces(cfg, store, shards, overrides)
    assert first not in set(faces.video_ids.tolist()) and unlabelled >= 2
    flipped = sorted(truth)[1]
    assert {ds.LABEL_NAMES[int(y)] for v, y in zip(faces.video_ids, faces.labels) if v == flipped} == {overrides[flipped]}
    keys = [s["key"] for s in shards]
    assert ds.count_labelled(store, keys, overrides) == len(faces) == ds.count_labelled(store, keys) - 2  # withdrawn
