"""Segment localisation: labelled segment times read, compared with the latest FAKE segments by IoU."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from realness_tasks import queries, verdicts
from realness_tasks.db import Database
from realness_tasks.evaluation import NO_VERDICT, LabelRow, LabelsError, MatchedVideo, read_labels
from realness_tasks.localisation import interval_iou, localise, summary
from realness_tasks.verdicts import FAKE, NO_FACE, REAL, UNCERTAIN, Segment


def segment(start: float, end: float, verdict: str = FAKE, track: int = 0) -> Segment:
    return Segment(track, start, end, int(end - start) + 1, 0.9, verdict)


def matched(name: str, verdict: str, labelled: tuple[float, float] | None, label: str = FAKE) -> MatchedVideo:
    return MatchedVideo(LabelRow(name, label, {}, labelled), verdict, 0.5, f"s3://landing/{name}", "v1")


@pytest.mark.parametrize("a, b, iou", [
    ((10, 20), (10, 20), 1.0),
    ((10, 20), (15, 25), 5 / 15),      # overlap 15-20 over union 10-25
    ((10, 20), (12, 18), 6 / 10),      # inside: its length over the labelled one's
    ((10, 20), (20, 30), 0.0),         # touching, no overlap
    ((10, 20), (30, 40), 0.0),
])
def test_interval_iou(a, b, iou):
    assert interval_iou(a, b) == pytest.approx(iou)
    assert interval_iou(b, a) == pytest.approx(iou)


def test_segment_times_are_read_from_csv_and_json_and_are_not_breakdown_columns(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("name,label,segment_start_s,segment_end_s,collection\n"
                   "p.mp4,FAKE,12.5,20,news\nw.mp4,FAKE,,,news\nr.mp4,REAL,,,news\n")
    dfdc = tmp_path / "metadata.json"
    dfdc.write_text(json.dumps({"p.mp4": {"label": "FAKE", "segment_start_s": 12.5, "segment_end_s": 20},
                                "w.mp4": {"label": "FAKE"}, "r.mp4": {"label": "REAL"}}))

    from_csv, from_json = read_labels(csv), read_labels(dfdc)

    assert [(r.name, r.segment) for r in from_csv] == [("p.mp4", (12.5, 20.0)), ("w.mp4", None), ("r.mp4", None)]
    assert [(r.name, r.segment) for r in from_json] == [(r.name, r.segment) for r in from_csv]
    assert all(r.groups == {"collection": "news"} for r in from_csv)
    assert all(r.groups == {} for r in from_json)


@pytest.mark.parametrize("row, message", [
    ("a.mp4,FAKE,12,", "needs both"),
    ("a.mp4,FAKE,twelve,20", "not numbers"),
    ("a.mp4,FAKE,20,12", "0 <= start < end"),
    ("a.mp4,FAKE,-1,12", "0 <= start < end"),
    ("a.mp4,REAL,12,20", "REAL video"),
])
def test_bad_segment_times_refuse_the_labels_file_with_the_reason(tmp_path, row, message):
    path = tmp_path / "labels.csv"
    path.write_text(f"name,label,segment_start_s,segment_end_s\n{row}\n")

    with pytest.raises(LabelsError, match=message):
        read_labels(path)


def test_localisation_takes_the_best_overlapping_fake_segment_of_each_partial_fake_called_fake():
    videos = [
        matched("a.mp4", FAKE, (10, 20)),     # best FAKE segment 11-21: IoU 9/11; the UNCERTAIN one is ignored
        matched("b.mp4", FAKE, (30, 40)),     # 38-50: IoU 2/20 = 0.1
        matched("c.mp4", FAKE, (5, 8)),       # called FAKE by pooling, no FAKE segment: IoU 0
        matched("d.mp4", UNCERTAIN, (5, 9)),  # not called FAKE: counted as a partial fake, no IoU
        matched("e.mp4", FAKE, (0, 4)),       # 0-4: IoU 1
        matched("w.mp4", FAKE, None),         # a whole-video fake: not a partial one
        matched("r.mp4", REAL, None, REAL),
        MatchedVideo(LabelRow("n.mp4", FAKE, {}, (1, 2)), NO_VERDICT, None, None, None),  # nothing to judge
    ]
    segments = {"s3://landing/a.mp4": [segment(2, 9), segment(10, 20, UNCERTAIN, 1), segment(11, 21, track=2)],
                "s3://landing/b.mp4": [segment(38, 50)],
                "s3://landing/c.mp4": [segment(5, 8, UNCERTAIN)],
                "s3://landing/d.mp4": [segment(5, 9)],
                "s3://landing/e.mp4": [segment(0, 4)]}

    result = localise(videos, segments)

    assert (result.partial_fakes, result.called_fake, result.localised) == (5, 4, 2)
    assert result.localised_share == pytest.approx(0.5)
    assert result.median_iou == pytest.approx((0.1 + 9 / 11) / 2)   # of 0, 0.1, 9/11, 1
    by_name = {v.name: v for v in result.videos}
    assert (by_name["a.mp4"].track_id, by_name["a.mp4"].start_s, by_name["a.mp4"].iou) == (2, 11, pytest.approx(9 / 11))
    assert (by_name["c.mp4"].track_id, by_name["c.mp4"].iou) == (None, 0.0)
    assert (by_name["d.mp4"].start_s, by_name["d.mp4"].iou) == (None, None)
    assert "4 of 5 labelled partial fake(s) called FAKE; 2 with segment IoU >= 0.5 (share 0.500)" in summary(result)


def test_without_labelled_segments_there_is_no_localisation():
    assert localise([matched("w.mp4", FAKE, None), matched("r.mp4", REAL, None, REAL)], {}) is None


def test_partial_fakes_none_called_fake_have_no_share_or_median():
    result = localise([matched("a.mp4", REAL, (1, 5)), matched("b.mp4", NO_FACE, (1, 5))], {})

    assert (result.partial_fakes, result.called_fake, result.localised_share, result.median_iou) == (2, 0, None, None)


def test_latest_segments_are_read_by_source_under_a_prefix(database_url):
    db = Database(database_url)
    at = datetime(2025, 6, 1, 9, 30)
    decided = [verdicts.VideoVerdict("a", "s3://b/landing/x/a.mp4", FAKE, 0.9, 20, 8, "t",
                                     (segment(30, 40, UNCERTAIN, 1), segment(10, 20))),
               verdicts.VideoVerdict("b", "s3://b/landing/y/b.mp4", FAKE, 0.9, 20, 8, "t", (segment(1, 9),))]
    verdicts.publish(db, model_version="v1", run_id="r1", run_date="2025-06-01", decided_at=at, videos=[], faces=[],
                     verdicts=decided)

    everything = queries.latest_segments(db)
    under_x = queries.latest_segments(db, "s3://b/landing/x/")
    db.dispose()

    assert everything["s3://b/landing/x/a.mp4"] == [segment(10, 20), segment(30, 40, UNCERTAIN, 1)]
    assert everything["s3://b/landing/y/b.mp4"] == [segment(1, 9)]
    assert list(under_x) == ["s3://b/landing/x/a.mp4"]
