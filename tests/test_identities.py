"""Identities: real dlib embeddings of the sample photographs, clustering in both databases, the rule by hand."""

from __future__ import annotations

from datetime import datetime

import cv2
import numpy as np
import pytest

from realness_tasks import identities
from realness_tasks.db import Database
from realness_tasks.embeddings import EMBEDDING_SIZE, FaceEmbedder
from realness_tasks.identities import IdentityIndex, IdentityRule, Reference, VideoFaces
from realness_tasks.samples import sample_photos

NOW = datetime(2026, 1, 5, 12, 0, 0)


@pytest.fixture(scope="module")
def photo_embeddings() -> dict[str, np.ndarray]:
    embedder = FaceEmbedder()
    return {p.name: embedder.embed(cv2.cvtColor(p.image, cv2.COLOR_BGR2RGB), [p.face_box])[0]
            for p in sample_photos()}


def test_the_embedder_puts_two_photographs_of_one_person_closer_than_anyone_else(photo_embeddings):
    e = photo_embeddings
    assert all(v.shape == (EMBEDDING_SIZE,) and v.dtype == np.float32 for v in e.values())
    same = np.linalg.norm(e["obama"] - e["obama2"])
    others = [np.linalg.norm(e[a] - e[b]) for a in e for b in e if a < b and {a, b} != {"obama", "obama2"}]
    assert same < 0.5 < min(others)


def test_a_box_outside_the_face_gives_another_embedding(photo_embeddings):
    photo = next(p for p in sample_photos() if p.name == "obama")
    rgb = cv2.cvtColor(photo.image, cv2.COLOR_BGR2RGB)
    x, y, w, h = photo.face_box
    elsewhere = FaceEmbedder().embed(rgb, [(0, 0, w, h), photo.face_box])
    assert np.allclose(elsewhere[1], photo_embeddings["obama"], atol=1e-5)
    assert np.linalg.norm(elsewhere[0] - photo_embeddings["obama"]) > 0.3


def test_group_video_separates_two_people_and_keeps_order():
    a, b = np.zeros(4), np.full(4, 0.5)   # 1.0 apart
    groups = identities.group_video(np.stack([a, b, a + 0.01, b - 0.01, a]), match_distance=0.5)
    assert groups.tolist() == [0, 1, 0, 1, 0]


def test_the_index_joins_near_centroids_founds_new_ones_and_finds_pairs_that_met():
    index = IdentityIndex()
    first, d = index.add(np.zeros(3), 4, 0.5)
    assert (first, d) == (1, None)
    same, d = index.add(np.array([0.2, 0, 0]), 4, 0.5)
    assert same == 1 and d == pytest.approx(0.2)
    assert np.allclose(index.centroids[0], [0.1, 0, 0]) and index.sizes == [8]
    far, _ = index.add(np.array([0.7, 0, 0]), 2, 0.5)
    assert far == 2 and index.close_pairs(0.5) == []
    assert index.add(np.array([1.1, 0, 0]), 1, 0.5) == (2, pytest.approx(0.4))   # centroid 2 moves to 0.833
    assert index.close_pairs(0.75) == [(1, 2)]
    index.absorb(1, 2)
    assert index.ids == [1] and index.sizes == [11]
    assert np.allclose(index.centroids[0], [(0.1 * 8 + 2.5) / 11, 0, 0])


def test_a_face_without_embedding_takes_the_nearest_embedded_face_in_time_and_place():
    timestamps = np.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    boxes = np.array([[0, 0, 10, 10]] * 3 + [[100, 0, 10, 10]] * 3, np.float64)   # two people side by side
    embedded = np.array([True, False, False, True, False, False])
    assert identities.nearest_embedded(timestamps, boxes, embedded).tolist() == [0, 0, 0, 3, 3, 3]
    with pytest.raises(ValueError):
        identities.nearest_embedded(timestamps, boxes, np.zeros(6, bool))


def test_the_rule_subtracts_the_shrunk_offset_and_never_counts_the_faces_own_video():
    reference = Reference(7, {"r1": 6.0, "r2": 4.0, "me": 100.0}, {"r1": 4, "r2": 6, "me": 5})
    rule = IdentityRule(shrinkage_faces=10.0, min_reference_faces=8)
    offsets, used = rule.offsets("me", np.array([7, 7, -1, 3]), {7: reference}, population_mean=0.25)
    expected = 10 / (10 + 10) * (10.0 / 10 - 0.25)
    assert offsets.tolist() == pytest.approx([expected, expected, 0, 0])
    assert used.tolist() == [10, 10, 0, 0]
    too_small, used = IdentityRule(10.0, 11).offsets("me", np.array([7]), {7: reference}, 0.25)
    assert too_small.tolist() == [0] and used.tolist() == [0]


def video(video_id: str, vectors: list[np.ndarray | None]) -> VideoFaces:
    n = len(vectors)
    return VideoFaces(video_id, np.arange(n), np.zeros(n, np.int64), np.arange(n, dtype=np.float64),
                      np.tile([10.0, 10.0, 40.0, 40.0], (n, 1)), vectors)


def test_assignment_is_incremental_idempotent_and_merges_identities_that_meet(database_url, photo_embeddings):
    db = Database(database_url)
    e = photo_embeddings
    first = identities.assign(db, [video("v-obama", [e["obama"], None, e["obama"]]),
                                   video("v-biden", [e["biden"], e["biden"]]),
                                   video("v-wall", [None])], embedder="dlib_resnet_v1", match_distance=0.5, merge_distance=0.4, now=NOW)
    obama, biden = int(first["v-obama"][0]), int(first["v-biden"][0])
    assert first["v-obama"].tolist() == [obama] * 3 and obama != biden and first["v-wall"].tolist() == [-1]
    second = identities.assign(db, [video("v-obama2", [e["obama2"]]), video("v-obama", [e["astronaut"]] * 3)],
                               embedder="dlib_resnet_v1", match_distance=0.5, merge_distance=0.4, now=NOW)
    assert second["v-obama2"].tolist() == [obama]
    assert second["v-obama"].tolist() == [obama] * 3          # assigned before: unchanged, not counted twice
    rows = {r["identity_id"]: r for r in identities.list_identities(db)}
    assert rows[obama]["embedded_faces"] == 3 and rows[obama]["videos"] == 2
    # Two identities that a later video brings together are merged, their faces with them.
    near_a, near_b = np.zeros(EMBEDDING_SIZE), np.zeros(EMBEDDING_SIZE)
    near_a[0], near_b[0] = 3.0, 3.55
    split = identities.assign(db, [video("v-a", [near_a]), video("v-b", [near_b])], embedder="dlib_resnet_v1",
                              match_distance=0.5, merge_distance=0.4, now=NOW)
    a, b = int(split["v-a"][0]), int(split["v-b"][0])
    assert a != b
    bridge = near_a.copy()
    bridge[0] = 3.3
    joined = identities.assign(db, [video("v-bridge", [bridge] * 4)], embedder="dlib_resnet_v1",
                               match_distance=0.5, merge_distance=0.4, now=NOW)
    kept = int(joined["v-bridge"][0])
    assert kept in (a, b)
    assert {r["video_id"] for r in db.query("SELECT DISTINCT video_id FROM face_identities WHERE identity_id = :i",
                                            {"i": kept})} == {"v-a", "v-b", "v-bridge"}
    assert len(db.query("SELECT identity_id FROM identities WHERE identity_id IN (:a, :b)", {"a": a, "b": b})) == 1
    db.dispose()


def test_operators_name_merge_and_split_identities(database_url, photo_embeddings):
    db = Database(database_url)
    e = photo_embeddings
    got = identities.assign(db, [video("v1", [e["obama"]] * 2), video("v2", [e["obama2"]] * 2),
                                 video("v3", [e["biden"]] * 2)], embedder="dlib_resnet_v1", match_distance=0.5, merge_distance=0.4, now=NOW)
    obama, biden = int(got["v1"][0]), int(got["v3"][0])
    identities.name(db, obama, "  Barack Obama ")
    assert identities.identity_row(db, obama)["name"] == "Barack Obama"
    new = identities.split(db, obama, "v2", {(0, 0): e["obama2"], (1, 0): e["obama2"]}, NOW)
    assert {r["video_id"] for r in db.query("SELECT video_id FROM face_identities WHERE identity_id = :i",
                                            {"i": new})} == {"v2"}
    assert identities.identity_row(db, obama)["faces"] == 2
    identities.merge(db, biden, new, NOW)
    assert {r["video_id"] for r in db.query("SELECT DISTINCT video_id FROM face_identities WHERE identity_id = :i",
                                            {"i": biden})} == {"v2", "v3"}
    with pytest.raises(identities.UnknownIdentity):
        identities.identity_row(db, new)
    with pytest.raises(ValueError):
        identities.split(db, obama, "v1", {(0, 0): e["obama"]}, NOW)    # its only video
    db.dispose()


def test_identities_that_meet_merge_only_within_the_merge_distance(database_url):
    db = Database(database_url)
    near_a, near_b, bridge = (np.zeros(EMBEDDING_SIZE) for _ in range(3))
    near_a[0], near_b[0], bridge[0] = 3.0, 3.55, 3.3
    kwargs = {"embedder": "dlib_resnet_v1", "match_distance": 0.5, "merge_distance": 0.3, "now": NOW}
    apart = identities.assign(db, [video("v-a", [near_a]), video("v-b", [near_b])], **kwargs)
    joined = identities.assign(db, [video("v-bridge", [bridge] * 4)], **kwargs)   # b's centroid moves to 3.35
    assert int(joined["v-bridge"][0]) == int(apart["v-b"][0]) != int(apart["v-a"][0])
    assert len(identities.list_identities(db)) == 2
    db.dispose()


def test_references_leave_out_the_videos_the_model_was_fitted_on(tmp_path):
    import json

    from realness_tasks import registry
    from realness_tasks.config import RealnessConfig
    from realness_tasks.storage import open_store

    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    found = identities.references(db, "v1", [], extra=[(1, "seen", -3.0), (1, "new", 1.0), (2, "new", 0.5)],
                                  exclude_videos=["seen"])
    assert found[1].sums == {"new": 1.0} and found[1].counts == {"new": 1} and found[2].counts == {"new": 1}
    assert identities.population_mean(found) == pytest.approx(0.75)
    cfg = RealnessConfig.from_env({}, home=str(tmp_path / "home"))
    store = open_store(cfg.resolved_store_uri)
    assert registry.trained_videos(cfg, store, "v1") == frozenset()
    store.put_bytes(registry.artefact_key(cfg, "v1", "manifest.json"),
                    json.dumps({"splits": {"train": {"videos": ["seen"]}, "val": {"videos": ["held"]}}}).encode())
    assert registry.trained_videos(cfg, store, "v1") == frozenset({"seen"})
    db.dispose()


def test_a_named_identity_absorbed_by_a_larger_new_one_keeps_its_name_and_first_sighting(database_url):
    db = Database(database_url)
    anchor, far, between = (np.zeros(EMBEDDING_SIZE) for _ in range(3))
    anchor[0], far[0], between[0] = 3.0, 3.6, 3.32
    kwargs = {"embedder": "dlib_resnet_v1", "match_distance": 0.5, "merge_distance": 0.5}
    named = int(identities.assign(db, [video("v-old", [anchor])], now=NOW, **kwargs)["v-old"][0])
    identities.name(db, named, "Anchor")
    later = datetime(2026, 2, 1)
    # A new identity of 10 faces at 3.6, then 10 more at 3.32 join it: its centroid (3.46) meets the anchor's.
    got = identities.assign(db, [video("v-far", [far] * 10), video("v-between", [between] * 10)], now=later, **kwargs)
    kept = int(got["v-far"][0])
    assert kept != named and int(got["v-between"][0]) == kept
    row = identities.identity_row(db, kept)
    assert row["name"] == "Anchor" and row["faces"] == 21
    assert str(row["first_seen_at"]).startswith("2026-01-05")
    assert {r["video_id"] for r in db.query("SELECT DISTINCT video_id FROM face_identities WHERE identity_id = :i",
                                            {"i": kept})} == {"v-old", "v-far", "v-between"}
    db.dispose()
