"""Per-video aggregation (the confident strategy), publishing in one transaction, latest-verdict view, export."""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from realness_tasks import verdicts
from realness_tasks.db import Database
from realness_tasks.registry import ModelRecord, mirror_promotion
from realness_tasks.settings import ScoringSettings
from realness_tasks.storage import open_store

SETTINGS = ScoringSettings()
THRESHOLD = 0.5


def faces_of(p_fake, face_index=None, video_id="v", threshold=THRESHOLD) -> list[verdicts.FaceScore]:
    face_index = face_index if face_index is not None else [0] * len(p_fake)
    return [verdicts.face_score(video_id, frame, face, p, threshold)
            for frame, (face, p) in enumerate(zip(face_index, p_fake, strict=True))]


def plain_mean_verdict(p_fake, threshold=THRESHOLD) -> str:
    return verdicts.classify(float(np.mean(p_fake)), threshold, SETTINGS.uncertain_band)


@pytest.mark.parametrize("n", [10, 25, 32])
def test_some_manipulated_frames_make_a_fake_where_the_plain_mean_says_real(n):
    rng = np.random.default_rng(n)
    manipulated = int(n // 2.5) + 1
    p = np.concatenate([rng.uniform(0.85, 0.99, manipulated), rng.uniform(0.0, 0.03, n - manipulated)])
    threshold = 0.6  # a stored threshold other than 0.5
    rng.shuffle(p)

    verdict = verdicts.aggregate("v", "s3://b/v.mp4", faces_of(p, threshold=threshold), threshold, SETTINGS)

    assert plain_mean_verdict(p, threshold) == verdicts.REAL
    assert verdict.verdict == verdicts.FAKE
    assert verdict.p_fake == pytest.approx(p[p >= SETTINGS.confident_fake].mean())
    assert verdict.fake_faces == manipulated and verdict.faces_scored == n


def test_too_few_confident_fakes_fall_back_to_the_mean():
    n = 25
    p = np.array([0.95] * int(n // 2.5) + [0.05] * (n - int(n // 2.5)))  # exactly n/2.5: not more than it

    score, _ = verdicts.confident_score(p, THRESHOLD, SETTINGS)

    assert score == pytest.approx(p.mean())


def test_faces_all_below_the_threshold_make_a_real_video():
    p = np.random.default_rng(1).uniform(THRESHOLD - 0.35, THRESHOLD - SETTINGS.uncertain_band - 0.01, 20)

    verdict = verdicts.aggregate("v", None, faces_of(p), THRESHOLD, SETTINGS)

    assert verdict.verdict == verdicts.REAL
    assert verdict.fake_faces == 0
    assert verdict.p_fake == pytest.approx(p.mean())


def test_mostly_confident_real_faces_ignore_a_few_outliers():
    p = np.array([0.02] * 19 + [0.97])  # 95 % confidently real

    verdict = verdicts.aggregate("v", None, faces_of(p), THRESHOLD, SETTINGS)

    assert verdict.verdict == verdicts.REAL
    assert verdict.p_fake == pytest.approx(0.02)
    assert verdict.fake_faces == 1


def test_mixed_faces_around_the_threshold_are_uncertain():
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(THRESHOLD - 0.25, THRESHOLD - 0.05, 10),
                        rng.uniform(THRESHOLD + 0.05, THRESHOLD + 0.25, 10)])
    p += THRESHOLD - p.mean()  # centre the mean on the threshold

    verdict = verdicts.aggregate("v", None, faces_of(p), THRESHOLD, SETTINGS)

    assert verdict.verdict == verdicts.UNCERTAIN


def test_no_faces_is_no_face():
    verdict = verdicts.aggregate("v", None, [], THRESHOLD, SETTINGS)

    assert verdict.verdict == verdicts.NO_FACE and verdict.p_fake is None and verdict.faces_scored == 0


def test_confidence_cutoffs_never_contradict_the_stored_threshold():
    p = np.array([0.85] * 6 + [0.0] * 4)  # confidently fake by the 0.8 default, yet below a 0.9 threshold

    assert verdicts.confident_score(p, 0.5, SETTINGS)[0] == pytest.approx(0.85)
    assert verdicts.confident_score(p, 0.9, SETTINGS)[0] == pytest.approx(p.mean())


def test_a_fake_second_person_makes_the_video_fake():
    rng = np.random.default_rng(3)
    host = rng.uniform(0.0, 0.05, 20)
    guest = rng.uniform(0.9, 0.99, SETTINGS.min_confident_fakes + 1)
    p = np.concatenate([host, guest])
    tracks = [0] * len(host) + [1] * len(guest)

    per_person = verdicts.aggregate("v", None, faces_of(p, tracks), THRESHOLD, SETTINGS)
    pooled = verdicts.aggregate("v", None, faces_of(p), THRESHOLD, SETTINGS)

    assert per_person.verdict == verdicts.FAKE
    assert per_person.p_fake == pytest.approx(guest.mean())
    assert pooled.verdict == verdicts.REAL


def test_a_second_face_seen_in_too_few_frames_does_not_decide():
    host = [0.02] * 20
    spurious = [0.99] * SETTINGS.min_confident_fakes

    verdict = verdicts.aggregate("v", None, faces_of(host + spurious, [0] * 20 + [1] * len(spurious)),
                                 THRESHOLD, SETTINGS)

    assert verdict.verdict == verdicts.REAL


def timed_faces(p_fake, tracks=None, video_id="v", fps=1.0) -> list[verdicts.FaceScore]:
    """One face per sampled frame at ``fps``, in the given tracks (all track 0 by default)."""
    tracks = tracks if tracks is not None else [0] * len(p_fake)
    return [verdicts.face_score(video_id, frame, 0, p, THRESHOLD, track_id=track, timestamp_s=frame / fps)
            for frame, (track, p) in enumerate(zip(tracks, p_fake, strict=True))]


def test_a_short_fake_segment_the_per_video_rule_dilutes_makes_the_video_fake_and_is_named():
    rng = np.random.default_rng(5)
    p = rng.uniform(0.0, 0.1, 120)       # two minutes at one sampled frame a second
    p[40:48] = rng.uniform(0.85, 0.98, 8)  # 8 s manipulated, from 40 s to 47 s

    old = verdicts.aggregate("v", None, faces_of(p), THRESHOLD, SETTINGS)   # untimed: the per-video rule alone
    new = verdicts.aggregate("v", None, timed_faces(p), THRESHOLD, SETTINGS)

    assert old.verdict == verdicts.REAL
    assert new.verdict == verdicts.FAKE
    assert new.reason.startswith("segment rule: track 0 fake from 40.0 s to 47.0 s (8 faces")
    assert new.p_fake == pytest.approx(p[40:48].mean())
    assert new.segments == (verdicts.Segment(0, 40.0, 47.0, 8, pytest.approx(p[40:48].mean()), verdicts.FAKE),)


def test_a_run_too_short_to_be_sustained_is_kept_as_uncertain_and_does_not_decide():
    p = [0.05] * 30
    p[10:12] = [0.9, 0.9]                 # two frames: a glitch, not a segment
    p[20:25] = [0.9] * 5                  # five faces over 4 s: fewer than segment_min_faces

    verdict = verdicts.aggregate("v", None, timed_faces(p), THRESHOLD, SETTINGS)

    assert verdict.verdict == verdicts.REAL
    assert [(s.start_s, s.end_s, s.verdict) for s in verdict.segments] == [(10.0, 11.0, verdicts.UNCERTAIN),
                                                                        (20.0, 24.0, verdicts.UNCERTAIN)]


def test_faces_are_grouped_by_track_where_the_size_rank_mixes_two_people():
    # Host (track 0) and guest (track 1) swap size ranks every other frame; the guest is faked for 8 s.
    # Grouped by face_index the fake run breaks into one-frame pieces; grouped by track it is whole.
    guest = with_run(20, 8)
    faces = []
    for frame in range(60):
        ranks = (0, 1) if frame % 2 else (1, 0)
        faces.append(verdicts.face_score("v", frame, ranks[0], 0.05, THRESHOLD, track_id=0, timestamp_s=frame))
        faces.append(verdicts.face_score("v", frame, ranks[1], guest[frame], THRESHOLD, track_id=1,
                                         timestamp_s=frame))
    by_rank = [replace(f, track_id=None) for f in faces]

    assert verdicts.aggregate("v", None, by_rank, THRESHOLD, SETTINGS).verdict == verdicts.REAL
    tracked = verdicts.aggregate("v", None, faces, THRESHOLD, SETTINGS)
    assert tracked.verdict == verdicts.FAKE
    assert tracked.reason.startswith("segment rule: track 1 fake from 20.0 s to 27.0 s")


def with_run(start: int, length: int, n: int = 60) -> np.ndarray:
    """``n`` real-looking faces, ``length`` of them fake from ``start``."""
    p = np.full(n, 0.05)
    p[start:start + length] = 0.9
    return p


def test_face_label_and_confidence_follow_the_threshold():
    rng = np.random.default_rng(4)
    for p, threshold in zip(rng.uniform(0, 1, 50), rng.uniform(0.2, 0.8, 50), strict=True):
        face = verdicts.face_score("v", 0, 0, p, threshold)
        assert face.label == (verdicts.FAKE if p >= threshold else verdicts.REAL)
        assert face.confidence == pytest.approx(p if p >= threshold else 1 - p)


# --- publishing -----------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, 0)


def promote(db: Database, version: str, at: datetime) -> None:
    mirror_promotion(db, ModelRecord(version, at, "train", f"file:///models/{version}/", 32, THRESHOLD, {}, 10,
                                     at, "test", promoted_at=at))


def publish_videos(db: Database, version: str, run_id: str, run_date: str, video_p: dict[str, list[float]],
                   decided_at: datetime, timed: bool = False) -> list[verdicts.VideoVerdict]:
    """Aggregate and publish; ``timed`` faces are one track at one frame a second, so they make segments."""
    faces = {vid: (timed_faces if timed else faces_of)(p, video_id=vid) for vid, p in video_p.items()}
    decided = [verdicts.aggregate(vid, f"s3://landing/{vid}.mp4", f, THRESHOLD, SETTINGS) for vid, f in faces.items()]
    verdicts.publish(db, model_version=version, run_id=run_id, run_date=run_date, decided_at=decided_at,
                     videos=[verdicts.VideoRow(vid, f"s3://landing/{vid}.mp4", None, 640, 360) for vid in video_p],
                     faces=[f for fs in faces.values() for f in fs], verdicts=decided)
    return decided


def table_rows(db: Database, table: str) -> list[dict]:
    return db.query(f"SELECT * FROM {table} ORDER BY 1, 2, 3")


def test_publishing_the_same_run_twice_keeps_the_same_rows(database_url):
    db = Database(database_url)
    data = {"a": [0.9] * 8, "b": [0.1] * 5, "c": [0.5, 0.55]}
    publish_videos(db, "v1", "run-1", "2025-03-01", data, T0)
    first = {t: table_rows(db, t) for t in ("videos", "face_scores", "verdicts")}

    publish_videos(db, "v1", "run-1", "2025-03-01", data, T0)

    assert {t: table_rows(db, t) for t in first} == first
    assert len(first["face_scores"]) == sum(len(p) for p in data.values())
    assert {r["video_id"]: r["verdict"] for r in first["verdicts"]} == {"a": "FAKE", "b": "REAL", "c": "UNCERTAIN"}
    db.dispose()


def test_publish_is_one_transaction(database_url):
    db = Database(database_url)
    good = verdicts.aggregate("a", None, faces_of([0.9] * 4, video_id="a"), THRESHOLD, SETTINGS)
    bad = verdicts.VideoVerdict("b", None, "MAYBE", 0.5, 1, 0, None)  # violates the verdict CHECK

    with pytest.raises(sa.exc.IntegrityError):
        verdicts.publish(db, model_version="v1", run_id="r", run_date="2025-03-01", decided_at=T0,
                         videos=[verdicts.VideoRow("a", "s3://x/a.mp4", None, 1, 1)],
                         faces=faces_of([0.9] * 4, video_id="a"), verdicts=[good, bad])

    assert [table_rows(db, t) for t in ("videos", "face_scores", "verdicts")] == [[], [], []]
    db.dispose()


def test_latest_verdicts_follow_the_most_recently_promoted_model(database_url):
    db = Database(database_url)
    promote(db, "v1", T0)
    publish_videos(db, "v1", "run-1", "2025-03-01", {"a": [0.9] * 6, "b": [0.05] * 6}, T0)
    promote(db, "v2", T0 + timedelta(days=1))
    publish_videos(db, "v2", "run-2", "2025-03-02", {"a": [0.05] * 6}, T0 + timedelta(days=1))
    # a challenger scored in shadow later, never promoted: must not take over
    publish_videos(db, "shadow", "run-3", "2025-03-03", {"a": [0.9] * 6, "b": [0.9] * 6}, T0 + timedelta(days=2))

    latest = {r["video_id"]: (r["model_version"], r["verdict"]) for r in db.query("SELECT * FROM latest_verdicts")}

    assert latest == {"a": ("v2", "REAL"), "b": ("v1", "REAL")}
    assert len(db.query("SELECT * FROM verdicts")) == 5  # every version keeps its rows
    db.dispose()


def test_daily_summary_counts_each_day_and_version(database_url):
    db = Database(database_url)
    publish_videos(db, "v1", "run-1", "2025-03-01", {"a": [0.9] * 6, "b": [0.05] * 6, "c": [0.02] * 3}, T0)
    verdicts.publish(db, model_version="v1", run_id="run-1", run_date="2025-03-01", decided_at=T0, videos=[],
                     faces=[], verdicts=[verdicts.unscored("d", None, verdicts.NO_FACE, "no face"),
                                         verdicts.unscored("e", None, verdicts.ERROR, "UNREADABLE: corrupt")])
    publish_videos(db, "v1", "run-2", "2025-03-02", {"f": [0.5] * 4}, T0 + timedelta(days=1))

    rows = {r["day"]: r for r in db.query("SELECT * FROM daily_summary ORDER BY day")}

    first = rows["2025-03-01"]
    assert (first["videos_scanned"], first["fakes"], first["real"], first["uncertain"], first["no_face"],
            first["errors"], first["faces_scored"]) == (5, 1, 2, 0, 1, 1, 15)
    assert (rows["2025-03-02"]["videos_scanned"], rows["2025-03-02"]["uncertain"]) == (1, 1)
    db.dispose()


def test_export_writes_the_runs_verdicts_to_one_key_per_run(database_url, tmp_path):
    db = Database(database_url)
    store = open_store(tmp_path.as_uri())
    decided = publish_videos(db, "v1", "scheduled__2025-03-01T00:00:00+00:00", "2025-03-01",
                             {"a": [0.9] * 6, "b": [0.05] * 6}, T0)
    publish_videos(db, "v1", "another-run", "2025-03-01", {"c": [0.9] * 6}, T0)

    uri = verdicts.export_run(db, store, "verdicts/", "scheduled__2025-03-01T00:00:00+00:00", "2025-03-01")
    again = verdicts.export_run(db, store, "verdicts/", "scheduled__2025-03-01T00:00:00+00:00", "2025-03-01")

    assert uri == again and "/verdicts/date=2025-03-01/verdicts-" in uri
    table = pq.read_table(io.BytesIO(store.get_bytes(store.key_for(uri))))
    assert table.schema == verdicts.EXPORT_SCHEMA
    assert {r["video_id"]: (r["verdict"], r["p_fake"]) for r in table.to_pylist()} == \
        {v.video_id: (v.verdict, pytest.approx(v.p_fake)) for v in decided}
    assert table.column("decided_at")[0].as_py().replace(tzinfo=None) == T0
    assert len(list(store.list("verdicts/"))) == 1
    assert verdicts.export_run(db, store, "verdicts/", "run-that-decided-nothing", "2025-03-01") is None
    db.dispose()


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.92])
def test_uncertain_band_shrinks_towards_a_threshold_near_the_extremes(threshold):
    band = 0.1
    assert verdicts.classify(threshold, threshold, band) == verdicts.UNCERTAIN
    assert verdicts.classify(threshold + 0.999 * 2 * band * (1 - threshold), threshold, band) == verdicts.UNCERTAIN
    assert verdicts.classify(threshold + 1.001 * 2 * band * (1 - threshold), threshold, band) == verdicts.FAKE
    assert verdicts.classify(threshold - 0.999 * 2 * band * threshold, threshold, band) == verdicts.UNCERTAIN
    assert verdicts.classify(threshold - 1.001 * 2 * band * threshold, threshold, band) == verdicts.REAL
    assert verdicts.classify(0.999, threshold, band) == verdicts.FAKE
    assert verdicts.classify(0.001, threshold, band) == verdicts.REAL


def test_segments_are_published_with_their_verdicts_and_a_rerun_changes_no_row(database_url):
    db = Database(database_url)
    data = {"partial": with_run(20, 6), "real": np.full(60, 0.05)}
    publish_videos(db, "v1", "run-1", "2025-03-01", data, T0, timed=True)
    first = table_rows(db, "segments")

    publish_videos(db, "v1", "run-1", "2025-03-01", data, T0, timed=True)

    assert table_rows(db, "segments") == first
    assert [(r["video_id"], r["model_version"], r["track_id"], r["start_s"], r["end_s"], r["faces"], r["verdict"],
             r["run_id"]) for r in first] == [("partial", "v1", 0, 20.0, 25.0, 6, "FAKE", "run-1")]
    assert first[0]["p_fake"] == pytest.approx(0.9)
    db.dispose()


def test_a_redecided_verdict_replaces_its_segments(database_url):
    db = Database(database_url)
    publish_videos(db, "v1", "run-1", "2025-03-01", {"a": with_run(20, 6)}, T0, timed=True)
    publish_videos(db, "v1", "run-2", "2025-03-01", {"a": with_run(40, 5)}, T0 + timedelta(hours=1), timed=True)
    verdicts.publish(db, model_version="v1", run_id="run-3", run_date="2025-03-01", decided_at=T0, videos=[],
                     faces=[], verdicts=[verdicts.unscored("b", None, verdicts.ERROR, "UNREADABLE")])

    assert [(r["start_s"], r["run_id"]) for r in table_rows(db, "segments")] == [(40.0, "run-2")]
    publish_videos(db, "v1", "run-4", "2025-03-01", {"a": np.full(60, 0.05)}, T0 + timedelta(hours=2),
                   timed=True)
    assert table_rows(db, "segments") == []
    db.dispose()


def test_latest_segments_follow_the_latest_verdicts_model(database_url):
    db = Database(database_url)
    promote(db, "v1", T0)
    publish_videos(db, "v1", "run-1", "2025-03-01", {"a": with_run(10, 8), "b": with_run(30, 7)}, T0, timed=True)
    promote(db, "v2", T0 + timedelta(days=1))
    publish_videos(db, "v2", "run-2", "2025-03-02", {"a": with_run(12, 9)}, T0 + timedelta(days=1), timed=True)
    publish_videos(db, "shadow", "run-3", "2025-03-03", {"b": with_run(0, 30)}, T0 + timedelta(days=2),
                   timed=True)

    latest = {(r["video_id"], r["model_version"], r["start_s"], r["seconds"], r["video_verdict"])
              for r in db.query("SELECT * FROM latest_segments")}

    assert latest == {("a", "v2", 12.0, 8.0, "FAKE"), ("b", "v1", 30.0, 6.0, "FAKE")}
    db.dispose()
