"""The analyst queries in sql/queries/, run on both engines against verdicts published by the real code."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest

from realness_tasks import verdicts
from realness_tasks.db import SQL_DIR, Database
from realness_tasks.registry import ModelRecord, mirror_promotion
from realness_tasks.settings import ScoringSettings

QUERIES = SQL_DIR / "queries"
SETTINGS = ScoringSettings()
THRESHOLD = 0.5
DAY1, DAY2 = "2025-05-01", "2025-05-02"
T0 = datetime(2025, 5, 1, 6, 0, 0)


def run_query(db: Database, name: str, **params) -> list[dict]:
    return db.query((QUERIES / f"{name}.sql").read_text(), params)


def random_faces(rng: np.random.Generator) -> np.ndarray:
    kind = rng.choice(["fake", "real", "mixed"])
    n = int(rng.integers(4, 16))
    centre = {"fake": 0.85, "real": 0.1, "mixed": 0.5}[kind]
    return np.clip(rng.normal(centre, 0.12, n), 0, 1)


def publish_day(db: Database, version: str, day: str, at: datetime, video_p: dict[str, np.ndarray],
                unscored: list[verdicts.VideoVerdict] = ()) -> dict[str, verdicts.VideoVerdict]:
    faces = {vid: [verdicts.face_score(vid, frame, 0, float(p), THRESHOLD) for frame, p in enumerate(ps)]
             for vid, ps in video_p.items()}
    decided = [verdicts.aggregate(vid, f"s3://landing/{vid}.mp4", f, THRESHOLD, SETTINGS) for vid, f in faces.items()]
    decided += list(unscored)
    verdicts.publish(db, model_version=version, run_id=f"{version}-{day}", run_date=day, decided_at=at,
                     videos=[verdicts.VideoRow(vid, f"s3://landing/{vid}.mp4", None, 640, 360) for vid in video_p],
                     faces=[f for fs in faces.values() for f in fs], verdicts=decided)
    return {v.video_id: v for v in decided}


@pytest.fixture
def published(database_url):
    """Day 1 judged by v1; then v2 is promoted and, on day 2, judges the new videos and re-judges day 1's."""
    rng = np.random.default_rng(11)
    db = Database(database_url)
    for version, at in (("v1", T0 - timedelta(days=30)), ("v2", T0 + timedelta(hours=20))):
        mirror_promotion(db, ModelRecord(version, at, "train", f"file:///m/{version}/", 224, THRESHOLD, {}, 1, at, "",
                                         promoted_at=at))
    day1 = {f"d1-{i:02d}": random_faces(rng) for i in range(30)}
    day2 = {f"d2-{i:02d}": random_faces(rng) for i in range(20)}
    v2_day1 = {vid: np.clip(p + rng.normal(0, 0.25), 0, 1) for vid, p in day1.items()}
    decided = {
        ("v1", DAY1): publish_day(db, "v1", DAY1, T0, day1,
                                  [verdicts.unscored("d1-noface", None, verdicts.NO_FACE, "no face"),
                                   verdicts.unscored("d1-error", None, verdicts.ERROR, "UNREADABLE: corrupt")]),
        ("v2", DAY2): publish_day(db, "v2", DAY2, T0 + timedelta(days=1), {**v2_day1, **day2}),
    }
    yield db, decided
    db.dispose()


def test_every_query_has_a_comment_header():
    files = sorted(QUERIES.glob("*.sql"))
    assert {f.stem for f in files} >= {"most_suspicious_today", "fake_rate_per_day", "verdict_changes_between_models"}
    for path in files:
        header = path.read_text().splitlines()[0]
        assert header.startswith("-- ") and len(header) > 20, path


def test_most_suspicious_today_lists_the_days_fake_and_uncertain_videos_by_score(published):
    db, decided = published
    expected = sorted((v for v in decided[("v2", DAY2)].values() if v.verdict in ("FAKE", "UNCERTAIN")),
                      key=lambda v: (-v.p_fake, v.video_id))
    assert len(expected) > 5

    rows = run_query(db, "most_suspicious_today", day=DAY2, max_rows=5)

    assert [r["video_id"] for r in rows] == [v.video_id for v in expected[:5]]
    assert [r["p_fake"] for r in rows] == pytest.approx([v.p_fake for v in expected[:5]])
    assert {r["model_version"] for r in rows} == {"v2"}
    # day 1's videos were all re-judged by v2 on day 2, so the current view has none left on day 1
    assert run_query(db, "most_suspicious_today", day=DAY1, max_rows=100) == []


def test_fake_rate_per_day_counts_only_judged_videos(published):
    db, decided = published

    rows = {(r["model_version"], r["day"]): r for r in run_query(db, "fake_rate_per_day")}

    assert set(rows) == set(decided)
    for key, day_verdicts in decided.items():
        judged = [v for v in day_verdicts.values() if v.verdict in ("FAKE", "REAL", "UNCERTAIN")]
        fakes = sum(v.verdict == "FAKE" for v in judged)
        assert (rows[key]["judged"], rows[key]["fakes"]) == (len(judged), fakes)
        assert float(rows[key]["fake_rate"]) == pytest.approx(fakes / len(judged))


def test_verdict_changes_between_models_lists_the_disagreements(published):
    db, decided = published
    old, new = decided[("v1", DAY1)], decided[("v2", DAY2)]
    changed = sorted((vid for vid in old if vid in new and old[vid].verdict != new[vid].verdict),
                     key=lambda vid: (-abs(new[vid].p_fake - old[vid].p_fake), vid))
    assert changed

    rows = run_query(db, "verdict_changes_between_models", old_version="v1", new_version="v2")

    assert [r["video_id"] for r in rows] == changed
    for r in rows:
        assert (r["old_verdict"], r["new_verdict"]) == (old[r["video_id"]].verdict, new[r["video_id"]].verdict)
        assert r["p_fake_change"] == pytest.approx(new[r["video_id"]].p_fake - old[r["video_id"]].p_fake)
    assert run_query(db, "verdict_changes_between_models", old_version="v2", new_version="v2") == []


def test_manipulated_segments_lists_the_latest_sustained_segments_longer_than_asked(database_url):
    db = Database(database_url)
    runs = {"long": (30, 12), "short": (5, 6), "old": (10, 20), "real": (0, 0)}   # (start, faces) at 1 fps
    for day, at, videos in ((DAY1, T0, ["old"]), (DAY2, T0 + timedelta(days=1), ["long", "short", "real"])):
        faces = {}
        for vid in videos:
            p = np.full(90, 0.04)
            start, length = runs[vid]
            p[start:start + length] = 0.93
            faces[vid] = [verdicts.face_score(vid, frame, 0, float(x), THRESHOLD, track_id=0, timestamp_s=frame)
                          for frame, x in enumerate(p)]
        decided = [verdicts.aggregate(vid, f"s3://landing/{vid}.mp4", f, THRESHOLD, SETTINGS)
                   for vid, f in faces.items()]
        verdicts.publish(db, model_version="v1", run_id=f"run-{day}", run_date=day, decided_at=at, videos=[],
                         faces=[f for fs in faces.values() for f in fs], verdicts=decided)

    rows = run_query(db, "manipulated_segments", min_seconds=5, since=DAY2)

    assert [(r["video_id"], r["track_id"], r["start_s"], r["end_s"], r["faces"]) for r in rows] == \
        [("long", 0, 30.0, 41.0, 12)]
    assert rows[0]["source_uri"] == "s3://landing/long.mp4" and rows[0]["p_fake"] == pytest.approx(0.93)
    assert [r["video_id"] for r in run_query(db, "manipulated_segments", min_seconds=2, since=DAY1)] == \
        ["old", "long", "short"]
    db.dispose()
