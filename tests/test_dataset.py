"""Reading labelled face shards from the store and the grouped, stratified, deterministic split.

``write_labelled_shards`` builds the labelled face sets the training tests use: crops of the
sample photos (REAL) and of face swaps made from them (FAKE), jittered so that each video has
several different faces, stored as validated shards.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import numpy as np
import pytest

from bench.face_shards import face_landmarks, write_labelled_shards
from realness_tasks import dataset as ds
from realness_tasks.config import RealnessConfig
from realness_tasks.faces import crop_box, crop_face
from realness_tasks.settings import CropSettings
from realness_tasks.storage import open_store


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


def test_faces_cut_with_another_margin_are_left_out_and_counted(labelled_store):
    import pyarrow as pa

    from realness_tasks.shards import read_shard, table_to_bytes

    cfg, store, labels = labelled_store
    key_of = {s["key"].rsplit("/", 1)[1].removesuffix(".parquet"): s["key"] for s in ds.list_shards(cfg, store)}
    wider, unrecorded = sorted(labels)[-2:]   # re-cut at another margin; written before margins were recorded
    table = read_shard(store.get_bytes(key_of[wider]))
    column = table.schema.get_field_index("crop_margin")
    store.put_bytes(key_of[wider], table_to_bytes(
        table.set_column(column, "crop_margin", pa.array([0.6] * table.num_rows, pa.float64()))))
    old = read_shard(store.get_bytes(key_of[unrecorded])).drop_columns(["crop_margin"])
    store.put_bytes(key_of[unrecorded], table_to_bytes(old))

    faces, without_label, other_margin = ds.read_faces(cfg, store, ds.list_shards(cfg, store))

    assert (without_label, other_margin) == (2, 2 * 3)
    assert {wider, unrecorded}.isdisjoint(faces.video_ids.tolist())
    assert len(faces) == (len(labels) - 2) * 3
    data = ds.load_dataset(cfg, store, datetime(2024, 5, 3))
    assert (data.manifest["crop_margin"], data.manifest["faces_other_crop_margin"]) == (cfg.crop.margin, 6)
    # Training at another margin finds too few faces, and says why.
    wider_cfg = replace(cfg, crop=replace(cfg.crop, margin=0.6))
    with pytest.raises(ds.NotEnoughData, match="left out for another crop margin than REALNESS_CROP_MARGIN=0.6"):
        ds.load_dataset(wider_cfg, store, datetime(2024, 5, 3))


def test_too_few_videos_is_a_clear_error(local_config):
    store = open_store(local_config.resolved_store_uri)
    write_labelled_shards(store, videos_per_class=2, faces_per_video=2)
    with pytest.raises(ds.NotEnoughData, match="at least 3 labelled videos"):
        ds.load_dataset(local_config, store, datetime(2024, 5, 3))


def test_reads_shards_from_s3(s3_bucket_uri, s3_settings, tmp_path):
    cfg = RealnessConfig.from_env({}, home=str(tmp_path / "home"), store_uri=s3_bucket_uri, s3=s3_settings.__dict__)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    labels = write_labelled_shards(store, videos_per_class=3, faces_per_video=2)
    data = ds.load_dataset(cfg, store, datetime(2024, 5, 3))
    assert data.total_faces == len(labels) * 2
    assert sorted(data.manifest["splits"]["test"]["videos"] + data.manifest["splits"]["val"]["videos"]
                  + data.manifest["splits"]["train"]["videos"]) == sorted(labels)
    assert ds.count_labelled(store, [s["key"] for s in data.manifest["shards"]]) == data.total_faces


def test_labels_table_overrides_shard_labels(local_config):
    from bench.face_shards import write_labelled_shards
    from realness_tasks.storage import open_store

    cfg = local_config
    store = open_store(cfg.resolved_store_uri)
    truth = write_labelled_shards(store, videos_per_class=3, faces_per_video=2, unlabelled_faces=2)
    shards = ds.list_shards(cfg, store)
    first = sorted(truth)[0]
    overrides = {first: None, sorted(truth)[1]: "FAKE" if truth[sorted(truth)[1]] == "REAL" else "REAL"}
    faces, unlabelled, _ = ds.read_faces(cfg, store, shards, overrides)
    assert first not in set(faces.video_ids.tolist()) and unlabelled >= 2
    flipped = sorted(truth)[1]
    assert {ds.LABEL_NAMES[int(y)] for v, y in zip(faces.video_ids, faces.labels) if v == flipped} == {overrides[flipped]}
    keys = [s["key"] for s in shards]
    assert ds.count_labelled(store, keys, overrides) == len(faces) == ds.count_labelled(store, keys) - 2  # withdrawn


def split_of_each_group(split: dict[str, list[str]], groups: dict[str, str]) -> dict[str, set[str]]:
    """group -> the splits its videos went to."""
    found: dict[str, set[str]] = {}
    for name, videos in split.items():
        for video in videos:
            if video in groups:
                found.setdefault(groups[video], set()).add(name)
    return found


def test_groups_never_straddle_splits_and_the_split_stays_deterministic():
    # 60 people, each with one to three real videos and fakes made of them, plus ungrouped videos.
    rng = np.random.default_rng(5)
    videos: dict[str, int] = {}
    groups: dict[str, str] = {}
    for person in range(60):
        for i in range(int(rng.integers(1, 4))):
            videos[f"p{person}-real{i}"], groups[f"p{person}-real{i}"] = 0, f"person-{person}"
        for i in range(int(rng.integers(0, 4))):
            videos[f"p{person}-fake{i}"], groups[f"p{person}-fake{i}"] = 1, f"person-{person}"
    videos |= {f"loose{i}": i % 2 for i in range(40)}
    for seed in range(5):
        split = ds.split_videos(videos, seed, groups)
        assert sorted(v for name in ds.SPLITS for v in split[name]) == sorted(videos)
        assert all(len(splits) == 1 for splits in split_of_each_group(split, groups).values())
        assert all({videos[v] for v in split[name]} == {0, 1} for name in ds.SPLITS)
        shuffled = dict(sorted(videos.items(), key=lambda kv: rng.random()))
        assert ds.split_videos(shuffled, seed, dict(sorted(groups.items(), key=lambda kv: rng.random()))) == split
    people_in_train = {groups[v] for v in ds.split_videos(videos, 0, groups)["train"] if v in groups}
    assert 0.6 * 60 <= len(people_in_train) <= 0.95 * 60           # about 80% of the groups train


def test_a_video_without_a_group_splits_as_before():
    videos = {f"v{i:03d}": i % 2 for i in range(200)}
    grouped = {f"v{i:03d}": "one-person" for i in range(10)}
    alone = ds.split_videos(videos, seed=3)
    together = ds.split_videos(videos, seed=3, groups=grouped)
    assert ds.split_videos(videos, seed=3, groups={}) == alone
    for name in ds.SPLITS:   # the ungrouped videos keep the split of their own hash
        assert [v for v in together[name] if v not in grouped] == [v for v in alone[name] if v not in grouped]
    assert len(split_of_each_group(together, grouped)["one-person"]) == 1


def test_small_grouped_sets_move_whole_groups_to_give_each_split_both_classes():
    # Three people, each a real video and two fakes of it: every split needs a whole person.
    videos = {f"p{p}-{kind}{i}": int(kind == "fake") for p in range(3) for kind, n in (("real", 1), ("fake", 2))
              for i in range(n)}
    groups = {v: v.split("-")[0] for v in videos}
    for seed in range(30):
        split = ds.split_videos(videos, seed, groups)
        assert all(len(splits) == 1 for splits in split_of_each_group(split, groups).values()), (seed, split)
        assert all({videos[v] for v in split[name]} == {0, 1} for name in ds.SPLITS), (seed, split)


def test_a_group_holding_a_class_s_only_videos_stays_in_train():
    # The fakes all belong to one person who also has a real video; the other reals are loose. The
    # person's group is FAKE's only group, so it trains, and no move for REAL may take it away.
    videos = {"person-real": 0, "person-fake1": 1, "person-fake2": 1} | {f"real{i}": 0 for i in range(6)}
    groups = {"person-real": "person", "person-fake1": "person", "person-fake2": "person"}
    for seed in range(40):
        split = ds.split_videos(videos, seed, groups)
        assert set(groups) <= set(split["train"]), (seed, split)
        assert all(any(videos[v] == 0 for v in split[name]) for name in ds.SPLITS), (seed, split)


def record_groups(cfg, groups: dict[str, str], video_labels: dict[str, str]) -> None:
    """Record ``video_labels`` in the labels table as a sidecar would, with each video's split group."""
    from realness_tasks import labels
    from realness_tasks.db import Database

    db = Database(cfg.resolved_database_url)
    for video, label in video_labels.items():
        labels.record(db, video, label=label, source="file:///landing/metadata.json", kind=labels.METADATA,
                      source_uri=f"file:///landing/{video}.mp4", source_etag="e", split_group=groups.get(video),
                      run_id="r")
    db.dispose()


def test_load_dataset_keeps_each_group_in_one_split_and_says_so_in_the_manifest(local_config):
    store = open_store(local_config.resolved_store_uri)
    labels = write_labelled_shards(store, videos_per_class=6, faces_per_video=2)
    # Video i's real clip and its fake twin are one person; videos 4 and 5 have no group.
    groups = {v: f"person-{v[4:7]}" for v in labels if int(v[4:7]) < 4}
    record_groups(local_config, groups, labels)
    data = ds.load_dataset(local_config, store, datetime(2024, 5, 3))
    splits = {name: data.manifest["splits"][name]["videos"] for name in ds.SPLITS}
    assert all(len(found) == 1 for found in split_of_each_group(splits, groups).values())
    assert data.manifest["grouped"] is True and data.manifest["videos_with_group"] == 8
    for name, part in (("train", data.train), ("val", data.val), ("test", data.test)):
        units = {groups.get(v, v) for v in part.video_ids.tolist()}
        assert data.manifest["splits"][name]["groups"] == len(units)
    assert sum(s["groups"] for s in data.manifest["splits"].values()) == 4 + 4   # 4 people, 4 loose videos


def test_too_few_groups_is_a_clear_error(local_config):
    store = open_store(local_config.resolved_store_uri)
    labels = write_labelled_shards(store, videos_per_class=4, faces_per_video=2)
    record_groups(local_config, {v: "crew-a" if int(v[4:7]) < 2 else "crew-b" for v in labels}, labels)
    with pytest.raises(ds.NotEnoughData, match=r"at least 3 labelled videos.*at least 3 groups.*"
                                               r"have \{'REAL': 2, 'FAKE': 2\} groups \(8 of the videos are grouped\)"):
        ds.load_dataset(local_config, store, datetime(2024, 5, 3))


def test_unlabelled_videos_under_a_trusted_real_prefix_train_as_real_and_others_stay_out(local_config):
    from bench.face_shards import labelled_rows
    from realness_tasks import samples
    from realness_tasks.shards import rows_to_table, shard_key, table_to_bytes

    store = open_store(local_config.resolved_store_uri)
    photo = samples.sample_photos()[0]
    rng = np.random.default_rng(0)
    for video_id, key in (("old1", "landing/archive/1990s/old1.mp4"), ("old2", "landing/archive/old2.mp4"),
                          ("new", "landing/uploads/new.mp4"), ("near", "landing/archive-2/near.mp4")):
        rows = [replace(row, source_uri=store.uri_for(key))
                for row in labelled_rows(video_id, None, photo.image, photo.face_box, 2, 64, rng)]
        store.put_bytes(shard_key(local_config.faces_prefix, "2024-05-01", video_id), table_to_bytes(rows_to_table(rows)))
    shards = ds.list_shards(local_config, store)

    untrusted, without_label, _ = ds.read_faces(local_config, store, shards)
    assert len(untrusted) == 0 and without_label == 8
    for prefixes in ("archive/", "landing/archive/, unused/", "/archive"):
        cfg = replace(local_config, training=replace(local_config.training, trusted_real_prefixes=prefixes))
        faces, without_label, _ = ds.read_faces(cfg, store, shards)
        assert sorted(set(faces.video_ids.tolist())) == ["old1", "old2"], prefixes   # not archive-2/
        assert faces.labels.tolist() == [0] * 4 and without_label == 4
    # a label that says FAKE is not overridden by the prefix
    cfg = replace(local_config, training=replace(local_config.training, trusted_real_prefixes="archive/"))
    faces, _, _ = ds.read_faces(cfg, store, shards, {"old1": "FAKE"})
    assert dict(zip(faces.video_ids.tolist(), faces.labels.tolist())) == {"old1": 1, "old2": 0}


def test_a_dataset_without_any_labelled_fake_splits_its_real_videos_and_says_so(local_config):
    store = open_store(local_config.resolved_store_uri)
    labels = write_labelled_shards(store, videos_per_class=6, faces_per_video=2)
    for video_id, label in labels.items():      # withdraw the fakes: only real videos stay labelled
        if label == "FAKE":
            store.delete(next(s["key"] for s in ds.list_shards(local_config, store) if video_id in s["key"]))
    data = ds.load_dataset(local_config, store, datetime(2024, 5, 3))
    assert data.manifest["labelled_fakes"] is False
    assert all(part.class_counts() == {"REAL": len(part), "FAKE": 0} and len(part) for part in
               (data.train, data.val, data.test))
