"""Ingest end to end in one process (the path the ``realness ingest`` command takes), on both stores."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from realness_tasks import ledger
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.discovery import VideoRef, batch_refs, discover, scan_landing
from realness_tasks.extraction import BatchProgress
from realness_tasks.ingest import run_ingest
from realness_tasks.landing_labels import find_labels, parse_sidecar, read_labels, sidecar_reason
from realness_tasks.ledger import LedgerEntry
from realness_tasks.publication import validate_and_publish
from realness_tasks.settings import SamplingSettings
from realness_tasks.shards import read_shard, rows_to_table, table_to_bytes
from realness_tasks.storage import StorageUnavailable, open_store
from tests.conftest import MTCNN_NETWORKS_DIR
from tests.landing import populate

SAMPLING = SamplingSettings(every_seconds=0.25, max_frames=16)


def _config(tmp_path, **overrides) -> RealnessConfig:
    overrides.setdefault("sampling", SAMPLING.__dict__)
    overrides.setdefault("detection", {"networks_dir": MTCNN_NETWORKS_DIR})
    return RealnessConfig.from_env({}, home=str(tmp_path / "home"), **overrides)


def _ledger(cfg):
    db = Database(cfg.resolved_database_url)
    return {row["source_uri"]: row for row in ledger.entries(db)}


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """One ingest run over the bad-input zoo on the embedded store, shared by the checks below."""
    tmp_path = tmp_path_factory.mktemp("ingest")
    cfg = _config(tmp_path)
    store = open_store(cfg.resolved_store_uri)
    landing = populate(store, tmp_path / "videos")
    summary = run_ingest(cfg, run_id="run-1", run_date="2026-11-26")
    return cfg, store, landing, summary


def test_every_object_gets_its_status_and_reason(ingested):
    cfg, store, landing, summary = ingested
    rows = _ledger(cfg)
    landing.assert_statuses({store.key_for(uri): row["status"] for uri, row in rows.items()})
    for row in rows.values():
        if row["status"] not in ("PUBLISHED",):
            assert row["reason"], f"{row['source_uri']} has status {row['status']} but no reason"
    assert summary["statuses"]["PUBLISHED"] == 3
    assert {p["status"] for p in summary["problems"]} == {"DUPLICATE", "EMPTY", "NOT_VIDEO", "UNREADABLE"}


def test_faces_found_only_in_frames_that_have_one(ingested):
    cfg, store, landing, _ = ingested
    uri = store.uri_for("landing/clips/partial face.mp4")
    shard_uri = _ledger(cfg)[uri]["shard_uri"]
    table = read_shard(store.get_bytes(store.key_for(shard_uri)))
    frames = set(table.column("frame_index").to_pylist())
    sampled_with_face = {i for i in landing.face_video.face_frames if i % 2 == 0}  # every 0.25 s at 8 fps
    assert frames == sampled_with_face
    assert set(table.column("detector").to_pylist()) == {"mtcnn"}
    assert min(table.column("confidence").to_pylist()) >= cfg.detection.min_confidence


def test_shards_are_partitioned_by_date_and_carry_labels(ingested):
    cfg, store, landing, _ = ingested
    published = [o.key for o in store.list(cfg.faces_prefix)]
    assert len(published) == 3 and all(k.startswith("faces/date=2026-11-26/") for k in published)
    rows = _ledger(cfg)
    for key, label in landing.labels.items():
        if rows[store.uri_for(key)]["status"] == "DUPLICATE":
            continue  # its identical copy was ingested instead (order decides which)
        table = read_shard(store.get_bytes(store.key_for(rows[store.uri_for(key)]["shard_uri"])))
        assert set(table.column("label").to_pylist()) == {label}
    assert list(store.list(cfg.staging_prefix)) == []
    report = json.loads(store.get_bytes("reports/ingest/run-1.json"))
    assert report["faces"] == sum(r["faces"] for r in rows.values() if r["status"] == "PUBLISHED") > 0


def test_rerun_skips_everything_and_changes_no_row(ingested):
    cfg, store, _, _ = ingested
    before = _ledger(cfg)
    shards_before = sorted(o.key for o in store.list(cfg.faces_prefix))
    summary = run_ingest(cfg, run_id="run-2", run_date="2026-11-27")
    assert summary["videos"] == 0
    assert _ledger(cfg) == before
    assert sorted(o.key for o in store.list(cfg.faces_prefix)) == shards_before


def test_reupload_under_a_new_key_is_a_duplicate(ingested, tmp_path):
    cfg, store, _, _ = ingested
    store.copy("landing/dfdc/astronaut.mp4", "landing/later/astronaut again.mp4")
    summary = run_ingest(cfg, run_id="run-3", run_date="2026-11-28")
    assert summary["statuses"] == {"DUPLICATE": 1}


def test_huge_frames_are_rejected_with_the_limit(tmp_path):
    cfg = _config(tmp_path, sampling={**SAMPLING.__dict__, "max_pixels": 320 * 240})
    store = open_store(cfg.resolved_store_uri)
    populate(store, tmp_path / "videos", with_bad_input=False)
    summary = run_ingest(cfg, run_id="r", run_date="2026-11-26")
    assert summary["statuses"] == {"TOO_LARGE": 4, "SIDECAR": 1}
    assert all("pixels" in r["reason"] for r in _ledger(cfg).values() if r["status"] != "SIDECAR")


def test_a_face_only_in_the_last_minute_of_ten_is_found_and_the_coverage_recorded(tmp_path):
    """A sampling budget smaller than the video's seconds is spread over the whole video: before, it was
    the first 64 seconds, and this video came out NO_FACE with nothing saying most of it was never seen."""
    from realness_tasks.samples import face_video, sample_photos

    photo = next(p for p in sample_photos() if p.name == "obama")
    cfg = _config(tmp_path, sampling=SamplingSettings(max_frames=64).__dict__)  # one frame a second, at most 64
    store = open_store(cfg.resolved_store_uri)
    clip = face_video(tmp_path / "long.mp4", photo.image, seconds=600.0, fps=1.0, size=(320, 180),
                      face_between=(540.0, 600.0))
    store.upload(clip.path, "landing/long.mp4")

    summary = run_ingest(cfg, run_id="run-1", run_date="2026-11-26")

    assert summary["statuses"] == {"PUBLISHED": 1}
    row = _ledger(cfg)[store.uri_for("landing/long.mp4")]
    # 64 frames at 0, 9.51, 19.02, ... 599 (599 / 63 apart, rounded to whole frames): 9 or 10 s apart, the
    # last frame starts 1 s before the end; from the start of frame 0 to the end of frame 599 is 600 s.
    assert (row["frames_sampled"], row["seconds_covered"], row["largest_gap_s"]) == (64, 600.0, 10.0)
    shard = read_shard(store.get_bytes(store.key_for(row["shard_uri"])))
    # The sampled frames of the last minute: round(i * 599 / 63) for i = 57..63.
    assert sorted(set(shard.column("frame_index").to_pylist())) == [542, 551, 561, 570, 580, 589, 599]


def _stage(store, video_id: str, shard: bytes) -> LedgerEntry:
    """A shard staged by extract_faces for ``video_id``, and the outcome it handed on."""
    key = f"staging/2026-11-26/{video_id}.parquet"
    store.put_bytes(key, shard)
    return LedgerEntry(f"file:///{video_id}.mp4", "etag", "STAGED", video_id=video_id, staged_key=key, faces=4,
                       stage_seconds={"write": 0.1})


def _shard(video_id: str, crop_size: int, **changes) -> bytes:
    from bench.face_shards import valid_rows

    return table_to_bytes(rows_to_table([replace(r, video_id=video_id, **changes) for r in valid_rows(crop_size)]))


def test_a_bad_shard_among_good_ones_is_quarantined_alone_with_its_own_report(local_config):
    cfg = local_config
    store = open_store(cfg.resolved_store_uri)
    db = Database(cfg.resolved_database_url)
    no_face = LedgerEntry("file:///n.mp4", "etag", "NO_FACE", reason="no face in 8 sampled frames")
    outcomes = [_stage(store, "g1", _shard("g1", cfg.crop.size)),
                _stage(store, "b1", _shard("b1", cfg.crop.size, confidence=1.7)), no_face,
                _stage(store, "u1", b"junk"), _stage(store, "g2", _shard("g2", cfg.crop.size))]

    validated = validate_and_publish(cfg, store, db, outcomes, run_id="r", run_date="2026-11-26")
    assert [o.status for o in validated] == ["PUBLISHED", "QUARANTINED", "NO_FACE", "QUARANTINED", "PUBLISHED"]
    assert validated[2] == no_face
    assert "confidence" in validated[1].reason and "unreadable" in validated[3].reason
    assert sorted(o.key for o in store.list(cfg.faces_prefix)) == [
        "faces/date=2026-11-26/g1.parquet", "faces/date=2026-11-26/g2.parquet"]
    report = json.loads(store.get_bytes("quarantine/date=2026-11-26/b1.validation.json"))
    assert len(report["failures"]) == 1 and "4 rows, e.g. [1.7" in report["failures"][0]
    assert [f["type"] for f in report["result"]["failed_expectations"]] == ["expect_column_values_to_be_between"]
    assert json.loads(store.get_bytes("quarantine/date=2026-11-26/u1.validation.json"))["failures"][0].startswith(
        "unreadable: ")
    assert list(store.list(cfg.staging_prefix)) == []
    for outcome in validated[:2] + validated[3:]:
        assert {"write", "load_checks", "validate"} <= set(outcome.stage_seconds), outcome.stage_seconds
    rows = ledger.entries(db)
    # A retry of the same task after the moves finds each shard where it went instead of failing or duplicating.
    again = validate_and_publish(cfg, store, db, outcomes, run_id="r", run_date="2026-11-26")
    assert [o.status for o in again] == [o.status for o in validated]
    assert [(r["source_uri"], r["status"], r["shard_uri"]) for r in ledger.entries(db)] == [
        (r["source_uri"], r["status"], r["shard_uri"]) for r in rows]
    assert len(rows) == 4  # the NO_FACE outcome was recorded by extract_faces, not here


def test_shards_validated_a_chunk_at_a_time_get_the_verdicts_they_get_together(local_config, monkeypatch):
    from realness_tasks import publication, validation

    cfg = local_config
    store = open_store(cfg.resolved_store_uri)
    db = Database(cfg.resolved_database_url)
    runs: list[int] = []
    validate_run = validation.validate_shards

    def counted_run(shards, crop):
        runs.append(len(shards))
        return validate_run(shards, crop)

    monkeypatch.setattr(validation, "validate_shards", counted_run)
    monkeypatch.setattr(publication, "SHARDS_PER_VALIDATION_RUN", 2)
    outcomes = [_stage(store, f"v{i}", _shard(f"v{i}", cfg.crop.size, **({"box_x": 600} if i == 3 else {})))
                for i in range(5)]
    validated = validate_and_publish(cfg, store, db, outcomes, run_id="r", run_date="2026-11-26")
    assert runs == [2, 2, 1]
    assert [o.status for o in validated] == ["PUBLISHED"] * 3 + ["QUARANTINED", "PUBLISHED"]
    assert "box_right" in validated[3].reason


def test_s3_store_over_http_with_odd_keys(tmp_path, s3_bucket_uri, s3_settings):
    cfg = _config(tmp_path, store_uri=s3_bucket_uri, s3=s3_settings.__dict__)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    populate(store, tmp_path / "videos", with_bad_input=False)
    store.client.put_object(Bucket=store.bucket, Key=store.prefix + "landing/../escape.mp4", Body=b"x")
    summary = run_ingest(cfg, run_id="s3-run", run_date="2026-11-26")
    assert summary["statuses"] == {"PUBLISHED": 3, "NO_FACE": 1, "UNSAFE_KEY": 1, "SIDECAR": 1}
    assert all(uri.startswith(s3_bucket_uri + "/faces/date=2026-11-26/") for uri in summary["published"])


def test_unreachable_store_fails_loudly_so_airflow_retries(tmp_path):
    from realness_tasks.settings import S3Settings
    from tests.conftest import free_port

    settings = S3Settings(endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="x", secret_access_key="y",
                          connect_timeout_s=0.5, max_attempts=1)
    cfg = _config(tmp_path, store_uri="s3://nowhere/root", s3=settings.__dict__)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    with pytest.raises(StorageUnavailable, match="unreachable"):
        discover(cfg, store, Database(cfg.resolved_database_url))


def test_labels_from_metadata_and_folders():
    class Store:
        def get_bytes(self, key):
            return json.dumps({"a.mp4": {"label": "fake"}, "b.mp4": {"label": "REAL"}, "c.mp4": "junk"}).encode()

    keys = ["landing/x/metadata.json", "landing/x/a.mp4", "landing/x/b.mp4", "landing/x/c.mp4",
            "landing/Real/d.mp4", "landing/fake/e.mp4", "landing/other/f.mp4"]
    assert read_labels(Store(), "landing/", keys) == {
        "landing/x/a.mp4": "FAKE", "landing/x/b.mp4": "REAL", "landing/Real/d.mp4": "REAL", "landing/fake/e.mp4": "FAKE"}


def test_sidecar_groups_and_originals_give_each_video_its_split_group():
    dfdc = parse_sidecar("landing/dfdc/metadata.json", "e1", json.dumps({
        "orig.mp4": {"label": "REAL"},                                    # others' original: its own key
        "fake1.mp4": {"label": "FAKE", "original": "orig.mp4"},           # joins its original
        "anna1.mp4": {"label": "REAL", "group": "anna"},
        "anna-fake.mp4": {"label": "FAKE", "original": "anna1.mp4"},     # its original's group
        "own.mp4": {"label": "FAKE", "group": "bob", "original": "anna1.mp4"},  # its own group first
        "solo.mp4": {"label": "REAL"},                                    # no group: its own
        "loop-a.mp4": {"label": "FAKE", "original": "loop-b.mp4"},
        "loop-b.mp4": {"label": "FAKE", "original": "loop-a.mp4"},
        "bad.mp4": {"label": "FAKE", "group": 17},
        "blank.mp4": {"label": "REAL", "original": " "},
    }).encode())
    other = parse_sidecar("landing/other/metadata.json", "e2", json.dumps({
        "x.mp4": {"label": "FAKE", "original": "../dfdc/fake1.mp4"},     # a fake of a fake, in another folder
        "y.mp4": {"label": "FAKE", "original": "../real/z.mp4"},          # of a video labelled by its folder
    }).encode())
    keys = [f"landing/dfdc/{n}.mp4" for n in ("orig", "fake1", "anna1", "anna-fake", "own", "solo", "loop-a",
                                               "loop-b", "bad", "blank")] + ["landing/other/x.mp4",
                                                                            "landing/other/y.mp4", "landing/real/z.mp4"]
    facts = find_labels("landing/", keys, [dfdc, other])
    assert {key.removeprefix("landing/"): fact[3] for key, fact in facts.items()} == {
        "dfdc/orig.mp4": "landing/dfdc/orig.mp4", "dfdc/fake1.mp4": "landing/dfdc/orig.mp4",
        "dfdc/anna1.mp4": "anna", "dfdc/anna-fake.mp4": "anna", "dfdc/own.mp4": "bob", "dfdc/solo.mp4": None,
        "dfdc/loop-a.mp4": "landing/dfdc/loop-a.mp4", "dfdc/loop-b.mp4": "landing/dfdc/loop-a.mp4",
        "other/x.mp4": "landing/dfdc/orig.mp4", "other/y.mp4": "landing/real/z.mp4",
        "real/z.mp4": "landing/real/z.mp4"}
    assert facts["landing/real/z.mp4"] == ("REAL", "landing/real/z.mp4", "", "landing/real/z.mp4")
    # A malformed group or original gives no label rather than a wrong group, and the ledger says why.
    assert "landing/dfdc/bad.mp4" not in facts and "landing/dfdc/blank.mp4" not in facts
    assert sidecar_reason(dfdc) == ("8 label(s); 2 entries whose group or original is not a non-empty string "
                                    "ignored: bad.mp4, blank.mp4")
    broken = parse_sidecar("landing/m/metadata.json", "e", json.dumps(
        {"a.mp4": {"label": "FAKE", "group": ["p"]}, "b.mp4": {}}).encode())
    assert broken.problem == ("none of its 2 entries is usable: 1 entry whose group or original is not a non-empty "
                              "string ignored: a.mp4; 1 entry without a REAL/FAKE label ignored: b.mp4")


def test_a_corrected_group_is_applied_on_the_next_discovery(tmp_path, database_url):
    from realness_tasks import labels

    cfg = _config(tmp_path, database_url=database_url)
    store = open_store(cfg.resolved_store_uri)
    db = Database(cfg.resolved_database_url)
    for key in ("landing/people/real.mp4", "landing/fakes/fake.mp4"):   # ingested before the sidecars came
        store.put_bytes(key, key.encode())
    for obj in store.list("landing/"):
        ledger.record(db, ledger.LedgerEntry(store.uri_for(obj.key), obj.etag, ledger.Status.PUBLISHED, "run-1",
                                             video_id=obj.key.rsplit("/", 1)[-1].removesuffix(".mp4")))
    store.put_bytes("landing/fakes/metadata.json", json.dumps(
        {"fake.mp4": {"label": "FAKE", "original": "../people/real.mp4"}}).encode())

    def discover_with(people: dict, run_id: str) -> dict[str, dict]:
        store.put_bytes("landing/people/metadata.json", json.dumps(people).encode())
        scan_landing(cfg, store, db, run_id=run_id)
        return {r["video_id"]: r for r in db.query("SELECT * FROM labels")}

    first = discover_with({"real.mp4": {"label": "REAL"}}, "run-2")
    assert labels.split_groups(db) == {"real": "landing/people/real.mp4", "fake": "landing/people/real.mp4"}
    # Only the original's sidecar changes: the fake, named in an unchanged sidecar, follows it.
    corrected = discover_with({"real.mp4": {"label": "REAL", "group": "anna"}}, "run-3")
    assert labels.split_groups(db) == {"real": "anna", "fake": "anna"}
    assert all(corrected[v]["run_id"] == "run-3" and corrected[v]["recorded_at"] > first[v]["recorded_at"]
               for v in ("real", "fake"))
    assert {v: r["label"] for v, r in corrected.items()} == {"real": "REAL", "fake": "FAKE"}
    same = discover_with({"real.mp4": {"label": "REAL", "group": "anna", "note": "re-saved"}}, "run-4")
    assert {v: (r["run_id"], r["recorded_at"]) for v, r in same.items()} == {   # same values: not re-dated
        v: (r["run_id"], r["recorded_at"]) for v, r in corrected.items()}
    store.put_bytes("landing/fakes/metadata.json", json.dumps({"fake.mp4": {"label": "FAKE"}}).encode())
    discover_with({"real.mp4": {"label": "REAL"}}, "run-5")
    assert labels.split_groups(db) == {}
    db.dispose()


def _refs(*megabytes: float) -> list[VideoRef]:
    return [VideoRef(f"landing/v{i}.mp4", f"etag{i}", int(mb * 1024 * 1024)) for i, mb in enumerate(megabytes)]


def test_fixed_batches_with_the_override_stay_within_the_task_limit(tmp_path):
    refs = _refs(*[1] * 10)
    assert batch_refs(refs, _config(tmp_path, videos_per_task=1), 1024) == [[r] for r in refs]
    assert batch_refs(refs, _config(tmp_path, videos_per_task=4), 1024) == [refs[0:4], refs[4:8], refs[8:10]]
    assert len(batch_refs(refs, _config(tmp_path, videos_per_task=3), 2)) == 2
    capped = batch_refs(refs, _config(tmp_path, videos_per_task=1, max_tasks_per_run=3), 1024)
    assert len(capped) <= 3 and sum(capped, []) == refs
    assert batch_refs([], _config(tmp_path, videos_per_task=1), 5) == []


def test_automatic_batches_group_small_clips_and_give_large_videos_their_own_task(tmp_path):
    cfg = _config(tmp_path, megabytes_per_task=40, min_tasks_per_run=2)
    refs = _refs(*[2] * 40, 60, 50)  # 80 MB of clips, two large videos: 190 MB in 5 tasks
    batches = batch_refs(refs, cfg, 1024)
    assert sorted(len(b) for b in batches) == [1, 1, 13, 13, 14]
    assert sorted(r.key for b in batches for r in b) == sorted(r.key for r in refs)
    large = {refs[-2].key, refs[-1].key}
    assert [[r.key for r in b] for b in batches if large & {r.key for r in b}] == [[refs[-2].key], [refs[-1].key]]


def test_automatic_batches_fill_the_parallel_slots_and_respect_the_task_limits(tmp_path):
    few = _refs(1, 1, 1)
    assert len(batch_refs(few, _config(tmp_path, min_tasks_per_run=2), 1024)) == 2
    assert len(batch_refs(_refs(1), _config(tmp_path, min_tasks_per_run=2), 1024)) == 1
    many = _refs(*[100] * 50)
    assert len(batch_refs(many, _config(tmp_path, max_tasks_per_run=8), 1024)) == 8
    assert len(batch_refs(many, _config(tmp_path, max_tasks_per_run=8), 5)) == 5
    empty_objects = _refs(0, 0, 0, 0)  # sizes of 0 still count as work
    assert sorted(len(b) for b in batch_refs(empty_objects, _config(tmp_path, min_tasks_per_run=2), 1024)) == [2, 2]


def test_progress_says_which_video_how_many_frames_and_the_time_left():
    refs = _refs(1, 3)  # the second video is three times the work of the first
    now = [100.0]
    lines: list[str] = []
    progress = BatchProgress(refs, lines.append, clock=lambda: now[0])
    order = []
    for ref in progress:
        order.append(ref)
        for done in (5, 10):
            now[0] += 2.0
            progress.frames(done, 10, faces=done * 2)
    assert order == refs
    assert lines == [
        "video 1 of 2 (v0.mp4): 5/10 frames, 10 faces; elapsed 2 s, about 14 s remaining",
        "video 1 of 2 (v0.mp4): 10/10 frames, 20 faces; elapsed 4 s, about 12 s remaining",
        "video 2 of 2 (v1.mp4): 5/10 frames, 10 faces; elapsed 6 s, about 4 s remaining",
        "video 2 of 2 (v1.mp4): 10/10 frames, 20 faces; elapsed 8 s, about 0 s remaining",
    ]


def test_the_run_report_splits_the_time_by_stage(ingested):
    _, _, _, summary = ingested
    stages = summary["stage_seconds"]
    assert set(stages) == {"load_detector", "download", "decode", "detect", "crop", "write", "load_checks",
                           "validate", "publish"}
    assert stages["decode"] > 0 and stages["detect"] > 0 and all(seconds >= 0 for seconds in stages.values())


def test_embedding_targets_spread_over_the_planned_frames():
    from realness_tasks.extraction import embedding_targets

    assert embedding_targets(list(range(0, 100, 10)), 3) == [0, 40, 90]   # positions 0, 4.5 (to even), 9
    assert embedding_targets([4, 8], 5) == [4, 8]
    assert embedding_targets([], 3) == []


def test_with_identities_on_the_faces_of_a_few_frames_get_the_persons_embedding(tmp_path):
    import cv2
    import numpy as np

    from realness_tasks.embeddings import FaceEmbedder
    from realness_tasks.samples import face_video, sample_photos

    photo = next(p for p in sample_photos() if p.name == "obama")
    cfg = _config(tmp_path, identity={"enabled": True, "embedded_frames": 3})
    store = open_store(cfg.resolved_store_uri)
    clip = face_video(tmp_path / "obama.mp4", photo.image, seconds=2.0, fps=8.0)
    store.upload(clip.path, "landing/obama.mp4")

    summary = run_ingest(cfg, run_id="run-1", run_date="2026-11-26")

    assert summary["statuses"] == {"PUBLISHED": 1} and summary["stage_seconds"]["embed"] > 0
    shard = read_shard(store.get_bytes(next(o.key for o in store.list(cfg.faces_prefix))))
    embedded = [(f, e) for f, e in zip(shard.column("frame_index").to_pylist(), shard.column("embedding").to_pylist())
                if e is not None]
    assert len(embedded) == 3 and shard.num_rows == 8
    assert shard.column("track_id").to_pylist() == [0] * 8   # one person, one track
    assert [f for f, _ in embedded] == [0, 8, 14]      # first, middle and last of frames 0, 2, ..., 14
    reference = FaceEmbedder().embed(cv2.cvtColor(photo.image, cv2.COLOR_BGR2RGB), [photo.face_box])[0]
    assert max(np.linalg.norm(np.asarray(e) - reference) for _, e in embedded) < 0.4
