"""``realness evaluate``: labels matched to the latest verdicts, metrics checked against values worked out by hand."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from realness_tasks import verdicts
from realness_tasks.cli import main
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.evaluation import LabelsError, evaluate, read_labels
from realness_tasks.evaluation_report import render, write_evaluation
from realness_tasks.verdicts import FAKE
from realness_tasks.storage import open_store

AT = datetime(2025, 6, 1, 9, 30, tzinfo=timezone.utc)

# (key under landing/, verdict, p_fake): what the latest verdicts say.
SCORED_SET = [
    ("batch1/f1.mp4", verdicts.FAKE, 0.90),
    ("batch1/f2.mp4", verdicts.FAKE, 0.80),
    ("batch1/f3.mp4", verdicts.UNCERTAIN, 0.55),
    ("batch1/f4.mp4", verdicts.REAL, 0.30),
    ("batch1/r1.mp4", verdicts.REAL, 0.10),
    ("batch1/r2.mp4", verdicts.REAL, 0.20),
    ("batch1/r3.mp4", verdicts.FAKE, 0.85),
    ("batch1/r4.mp4", verdicts.UNCERTAIN, 0.45),
    ("batch1/f5.mp4", verdicts.NO_FACE, None),
    ("batch1/r5.mp4", verdicts.ERROR, None),
    ("batch1/dup.mp4", verdicts.REAL, 0.15),       # dup.mp4 is in two folders: the bare name is ambiguous
    ("batch2/dup.mp4", verdicts.REAL, 0.25),
    ("batch1/same.mp4", verdicts.REAL, 0.05),      # same.mp4 too, but the label names batch2/same.mp4
    ("batch2/same.mp4", verdicts.FAKE, 0.95),
    ("batch1/extra.mp4", verdicts.REAL, 0.12),     # no label names it
    ("archive/f1.mp4", verdicts.REAL, 0.01),       # outside --prefix batch
]

# (name, label, collection); f6.mp4 has no verdict at all.
LABELS = [
    ("f1.mp4", "FAKE", "news"), ("f2.mp4", "FAKE", "archive"), ("f3.mp4", "FAKE", "archive"),
    ("f4.mp4", "FAKE", "news"), ("r1.mp4", "REAL", "news"), ("r2.mp4", "REAL", "archive"),
    ("r3.mp4", "REAL", "news"), ("r4.mp4", "REAL", "archive"), ("f5.mp4", "FAKE", "news"),
    ("r5.mp4", "REAL", "archive"), ("f6.mp4", "FAKE", "archive"), ("dup.mp4", "REAL", "archive"),
    ("batch2/same.mp4", "FAKE", "archive"),
]

# Worked out by hand for --prefix batch. The scored videos (FAKE/REAL/UNCERTAIN verdicts) are
#   FAKE-labelled: same .95, f1 .90, f2 .80, f3 .55, f4 .30;  REAL-labelled: r3 .85, r4 .45, r2 .20, r1 .10.
# AUC: of the 5 x 4 pairs, the fake scores above a real one: .95 -> 4, .90 -> 4, .80 -> 3, .55 -> 3,
#   .30 -> 2: 16 / 20 = 0.8.
# Predicted FAKE = verdict FAKE: same, f1, f2 (TP 3) and r3 (FP 1); f3 (UNCERTAIN) and f4 are FN 2;
#   r1, r2, r4 (UNCERTAIN) are TN 3. Accuracy 6/9, precision 3/4, recall 3/5,
#   F1 = 2 * .75 * .6 / 1.35 = 2/3. Confusion [[TN, FP], [FN, TP]] = [[3, 1], [2, 3]].
# Coverage: 12 labels matched or missing (dup.mp4 is ambiguous), UNCERTAIN 2 (f3, r4), NO_FACE 1 (f5),
#   ERROR 1 (r5), no verdict 1 (f6); verdicts with no label: batch1/extra.mp4 and batch1/same.mp4 = 2.
# By collection:
#   news: f1 .90 FAKE (TP), f4 .30 REAL (FN), r1 .10 REAL (TN), r3 .85 FAKE (FP), f5 NO_FACE.
#     AUC: .90 beats both reals, .30 beats .10 only: 3/4. Accuracy 2/4, precision 1/2, recall 1/2, F1 1/2.
#   archive: f2 .80 FAKE (TP), f3 .55 UNCERTAIN (FN), same .95 FAKE (TP), r2 .20 REAL (TN),
#     r4 .45 UNCERTAIN (TN), r5 ERROR, f6 no verdict. AUC 1 (every fake above every real).
#     Accuracy 4/5, precision 2/2, recall 2/3, F1 = 2 * 1 * 2/3 / (5/3) = 0.8.
# Against the whole evaluation (every scored REAL: r3 .85, r4 .45, r2 .20, r1 .10; every scored FAKE:
#   .95, .90, .80, .55, .30), Mann-Whitney: the share of (fake, real) pairs with the fake above.
#   news auc_vs_all_real: its fakes .90 -> 4, .30 -> 2 (above .20, .10): 6 / (2 x 4) = 0.75.
#   news auc_vs_all_fake: its reals .10, .85 against every fake: .95 -> 2, .90 -> 2, .80 -> 1, .55 -> 1,
#     .30 -> 1: 7 / (5 x 2) = 0.7.
#   archive auc_vs_all_real: its fakes .95 -> 4, .80 -> 3, .55 -> 3: 10 / (3 x 4) = 5/6.
#   archive auc_vs_all_fake: its reals .20, .45: .95 -> 2, .90 -> 2, .80 -> 2, .55 -> 2, .30 -> 1: 9/10.
#   The whole evaluation: all three AUCs are the 0.8 above.


def landing_uri(cfg: RealnessConfig, key: str) -> str:
    return open_store(cfg.resolved_store_uri).uri_for(cfg.landing_prefix + key)


def publish_scored_set(cfg: RealnessConfig) -> None:
    db = Database(cfg.resolved_database_url)
    decided = [verdicts.VideoVerdict(f"id-{key}", landing_uri(cfg, key), verdict, p_fake, 0 if p_fake is None else 4,
                                     0, "test") for key, verdict, p_fake in SCORED_SET]
    verdicts.publish(db, model_version="v1", run_id="score-1", run_date="2025-06-01",
                     decided_at=AT.replace(tzinfo=None), videos=[], faces=[], verdicts=decided)
    db.dispose()


def write_csv(path, rows=LABELS):
    path.write_text("name,label,collection\n" + "".join(f"{n},{label},{c}\n" for n, label, c in rows))
    return path


def write_dfdc(path, rows=LABELS):
    # split and original are DFDC fields that group nothing: they must not become breakdown columns
    path.write_text(json.dumps({n: {"label": label, "split": "train", "original": "r1.mp4", "collection": c}
                                for n, label, c in rows}))
    return path


@pytest.fixture
def config(database_url, tmp_path):
    cfg = RealnessConfig.from_env({}, home=str(tmp_path / "home"), database_url=database_url)
    publish_scored_set(cfg)
    return cfg


@pytest.mark.parametrize("writer", [write_csv, write_dfdc], ids=["csv", "dfdc-json"])
def test_metrics_coverage_and_breakdown_match_the_hand_computed_values(config, tmp_path, writer):
    labels = read_labels(writer(tmp_path / "labels"))

    result = evaluate(config, labels, "batch", evaluated_at=AT)

    overall = result.overall
    assert overall.auc == pytest.approx(0.8)
    assert (overall.accuracy, overall.precision_fake, overall.recall_fake, overall.f1_fake) == pytest.approx(
        (6 / 9, 0.75, 0.6, 2 / 3))
    assert overall.confusion == [[3, 1], [2, 3]]
    assert (overall.labelled, overall.scored, overall.uncertain, overall.no_face, overall.error,
            overall.no_verdict) == (12, 9, 2, 1, 1, 1)
    assert overall.verdicts_by_label["FAKE"] == {"FAKE": 3, "REAL": 1, "UNCERTAIN": 1, "NO_FACE": 1, "ERROR": 0,
                                                 "NO_VERDICT": 1}
    assert [(a.name, a.candidates) for a in result.ambiguous] == [
        ("dup.mp4", [landing_uri(config, "batch1/dup.mp4"), landing_uri(config, "batch2/dup.mp4")])]
    assert result.unlabelled_verdicts == 2
    assert result.model_versions == {"v1": 11}  # every matched verdict, NO_FACE and ERROR included
    same = next(v for v in result.videos if v.label.name == "batch2/same.mp4")
    assert (same.verdict, same.p_fake, same.source_uri) == ("FAKE", 0.95, landing_uri(config, "batch2/same.mp4"))

    assert list(result.breakdown) == ["collection"]
    news, archive = result.breakdown["collection"]["news"], result.breakdown["collection"]["archive"]
    assert (news.auc, news.accuracy, news.precision_fake, news.recall_fake, news.f1_fake) == pytest.approx(
        (0.75, 0.5, 0.5, 0.5, 0.5))
    assert news.confusion == [[1, 1], [1, 1]] and news.no_face == 1
    assert (archive.auc, archive.accuracy, archive.precision_fake, archive.recall_fake, archive.f1_fake) == \
        pytest.approx((1.0, 0.8, 1.0, 2 / 3, 0.8))
    assert archive.confusion == [[2, 0], [1, 2]]
    assert (archive.uncertain, archive.error, archive.no_verdict) == (2, 1, 1)
    assert (overall.auc_vs_all_real, overall.auc_vs_all_fake) == pytest.approx((0.8, 0.8))
    assert (news.auc_vs_all_real, news.auc_vs_all_fake) == pytest.approx((0.75, 0.7))
    assert (archive.auc_vs_all_real, archive.auc_vs_all_fake) == pytest.approx((5 / 6, 0.9))


# The same videos grouped by manipulation, DFDC-style: each group holds one label only.
#   Deepfakes: f1 .90, f4 .30 (f5 NO_FACE has no score); FaceSwap: same .95, f2 .80, f3 .55;
#   original: r1 .10, r2 .20, r3 .85, r4 .45.
# No group has both labels, so none has its own auc. Against the whole evaluation:
#   Deepfakes auc_vs_all_real: .90 above all 4 reals, .30 above .20 and .10: 6 / 8 = 0.75.
#   FaceSwap auc_vs_all_real: .95 -> 4, .80 -> 3, .55 -> 3: 10 / 12 = 5/6.
#   original auc_vs_all_fake: every fake against every real, the overall 16 / 20 = 0.8.
#   The fake groups have no reals (auc_vs_all_fake None), original no fakes (auc_vs_all_real None).
MANIPULATIONS = [
    ("f1.mp4", "FAKE", "Deepfakes"), ("f4.mp4", "FAKE", "Deepfakes"), ("f5.mp4", "FAKE", "Deepfakes"),
    ("batch2/same.mp4", "FAKE", "FaceSwap"), ("f2.mp4", "FAKE", "FaceSwap"), ("f3.mp4", "FAKE", "FaceSwap"),
    ("r1.mp4", "REAL", "original"), ("r2.mp4", "REAL", "original"), ("r3.mp4", "REAL", "original"),
    ("r4.mp4", "REAL", "original"),
]


def test_a_group_of_one_label_gets_its_auc_against_the_whole_evaluation(config, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("name,label,manipulation\n" + "".join(f"{n},{label},{m}\n" for n, label, m in MANIPULATIONS))

    result = evaluate(config, read_labels(path), "batch", evaluated_at=AT)

    groups = result.breakdown["manipulation"]
    assert {value: (m.auc, m.auc_vs_all_real, m.auc_vs_all_fake) for value, m in groups.items()} == {
        "Deepfakes": (None, pytest.approx(0.75), None),
        "FaceSwap": (None, pytest.approx(5 / 6), None),
        "original": (None, None, pytest.approx(0.8)),
    }
    assert result.overall.auc == pytest.approx(0.8)


def test_without_a_prefix_a_name_in_two_folders_is_ambiguous_and_a_uri_prefix_works_like_a_key_prefix(config, tmp_path):
    labels = [row for row in read_labels(write_csv(tmp_path / "labels.csv"))
              if row.name in ("f1.mp4", "r1.mp4")]

    everywhere = evaluate(config, labels, evaluated_at=AT)
    by_uri = evaluate(config, labels, landing_uri(config, "batch1/"), evaluated_at=AT)

    assert [(a.name, len(a.candidates)) for a in everywhere.ambiguous] == [("f1.mp4", 2)]
    assert [v.label.name for v in everywhere.videos] == ["r1.mp4"]
    assert by_uri.ambiguous == []
    assert [(v.label.name, v.verdict) for v in by_uri.videos] == [("f1.mp4", "FAKE"), ("r1.mp4", "REAL")]
    assert by_uri.overall.auc == 1.0 and by_uri.overall.confusion == [[1, 0], [0, 1]]


@pytest.mark.parametrize("prefix", ["batch1/", "landing/batch1/", "/landing/batch1/"])
def test_a_key_prefix_with_or_without_the_landing_prefix_selects_the_same_videos(config, tmp_path, prefix):
    labels = read_labels(write_csv(tmp_path / "labels.csv"))

    result = evaluate(config, labels, prefix, evaluated_at=AT)

    assert result.source_prefix == landing_uri(config, "batch1/")
    assert sorted(v.source_uri for v in result.videos if v.source_uri) == sorted(
        landing_uri(config, key) for key, _, _ in SCORED_SET
        if key.startswith("batch1/") and key not in ("batch1/same.mp4", "batch1/extra.mp4"))
    assert result.ambiguous == []  # dup.mp4 has one candidate under batch1/
    assert result.unlabelled_verdicts == 2  # batch1/same.mp4 (the label names batch2/) and batch1/extra.mp4


def test_two_labels_naming_the_same_video_are_both_ambiguous(config, tmp_path):
    labels = read_labels(write_csv(tmp_path / "labels.csv", [("f2.mp4", "FAKE", "x"), ("batch1/f2.mp4", "REAL", "x")]))

    result = evaluate(config, labels, "batch", evaluated_at=AT)

    assert sorted(a.name for a in result.ambiguous) == ["batch1/f2.mp4", "f2.mp4"]
    assert result.overall.labelled == 0


def test_the_stored_evaluation_holds_the_metrics_a_png_and_a_self_contained_page(config, tmp_path):
    result = evaluate(config, read_labels(write_csv(tmp_path / "labels.csv")), "batch", labels_file="labels.csv",
                      evaluated_at=AT)

    uri = write_evaluation(config, result)

    store = open_store(config.resolved_store_uri)
    prefix = store.key_for(uri)
    assert prefix == "reports/evaluations/20250601T093000.000000Z/"
    stored = json.loads(store.get_bytes(prefix + "evaluation.json"))
    assert stored["overall"]["auc"] == pytest.approx(0.8)
    assert stored["overall"]["confusion"] == [[3, 1], [2, 3]]
    assert stored["breakdown"]["collection"]["news"]["auc"] == pytest.approx(0.75)
    assert stored["breakdown"]["collection"]["news"]["auc_vs_all_real"] == pytest.approx(0.75)
    assert stored["breakdown"]["collection"]["news"]["auc_vs_all_fake"] == pytest.approx(0.7)
    assert stored["ambiguous"][0]["name"] == "dup.mp4" and stored["unlabelled_verdicts"] == 2
    assert {"name": "f6.mp4", "label": "FAKE", "groups": {"collection": "archive"}, "verdict": "NO_VERDICT",
            "p_fake": None, "source_uri": None, "model_version": None} in stored["videos"]
    assert store.get_bytes(prefix + "roc.png")[:8] == b"\x89PNG\r\n\x1a\n"
    page = store.get_bytes(prefix + "evaluation.html").decode()
    assert "data:image/png;base64," in page and "<script" not in page and 'src="http' not in page
    assert 'id="by-collection"' in page and "0.800" in page
    assert "<th>auc_vs_all_real</th><th>auc_vs_all_fake</th>" in page and "0.833" in page and "0.900" in page


def test_one_class_only_has_no_auc_and_stores_valid_json(config, tmp_path):
    result = evaluate(config, read_labels(write_csv(tmp_path / "labels.csv", [("r1.mp4", "REAL", "x")])), "batch",
                      evaluated_at=AT)

    assert result.overall.auc is None
    uri = write_evaluation(config, result)
    store = open_store(config.resolved_store_uri)
    assert json.loads(store.get_bytes(store.key_for(uri) + "evaluation.json"))["overall"]["auc"] is None


@pytest.mark.parametrize("content, message", [
    ("[1, 2]", "not a JSON object"),
    ('{"a.mp4": {"label": "MAYBE"}}', "neither FAKE nor REAL"),
    ('{"a.mp4": "FAKE"}', "not an object"),
    ("{broken", "not valid JSON"),
    ("file,verdict\na.mp4,FAKE\n", "name,label"),
    ("", "name,label"),
    ("name,label\na.mp4,FAKE\na.mp4,REAL\n", "more than once"),
])
def test_a_malformed_labels_file_is_refused_with_the_reason(tmp_path, content, message):
    path = tmp_path / "labels"
    path.write_text(content)

    with pytest.raises(LabelsError, match=message):
        read_labels(path)


def test_evaluate_from_the_command_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    for name in ("REALNESS_STORE_URI", "REALNESS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    cfg = RealnessConfig.from_env()
    publish_scored_set(cfg)
    labels = write_dfdc(tmp_path / "metadata.json")

    assert main(["evaluate", "--labels", str(labels), "--prefix", "batch"]) == 0

    out = capsys.readouterr().out
    assert "video AUC 0.800  accuracy 0.667  precision 0.750  recall 0.600  F1 0.667" in out
    assert "NO_FACE 1, ERROR 1, no verdict 1; 1 ambiguous name(s); 2 verdict(s) without a label" in out
    assert "by collection:" in out and "news" in out and "ambiguous: dup.mp4" in out
    assert "auc_vs_all_real" in out and "auc_vs_all_fake" in out
    archive = next(line.split() for line in out.splitlines() if line.strip().startswith("archive"))
    assert archive[3:6] == ["1.000", "0.833", "0.900"]  # auc, auc_vs_all_real, auc_vs_all_fake
    stored = out.split("stored: ")[1].split()[0]
    store = open_store(cfg.resolved_store_uri)
    assert json.loads(store.get_bytes(store.key_for(stored) + "evaluation.json"))["labels_file"] == str(labels)


@pytest.mark.parametrize("content", [None, "not,a,labels,file\n"], ids=["missing", "no-label-column"])
def test_the_command_line_gives_one_line_and_exit_2_for_a_bad_labels_file(monkeypatch, tmp_path, capsys, content):
    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    path = tmp_path / "labels.csv"
    if content is not None:
        path.write_text(content)

    assert main(["evaluate", "--labels", str(path)]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("realness evaluate: ") and captured.err.count("\n") == 1
    assert str(path) in captured.err


def test_labelled_segment_times_give_the_segment_localisation_in_the_result_json_page_and_command_line(
        monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REALNESS_HOME", str(tmp_path / "home"))
    for name in ("REALNESS_STORE_URI", "REALNESS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    cfg = RealnessConfig.from_env()
    db = Database(cfg.resolved_database_url)
    found = {"hit.mp4": (FAKE, (verdicts.Segment(0, 41.0, 49.0, 9, 0.9, FAKE),)),      # labelled 40-50: IoU 0.8
             "miss.mp4": (FAKE, (verdicts.Segment(3, 100.0, 110.0, 11, 0.9, FAKE),)),  # labelled 10-20: IoU 0
             "missed.mp4": (verdicts.REAL, ()),                                         # a partial fake not caught
             "whole.mp4": (FAKE, ())}                                                   # no segment labelled
    verdicts.publish(db, model_version="v1", run_id="score-1", run_date="2025-06-01", decided_at=AT.replace(tzinfo=None),
                     videos=[], faces=[], verdicts=[
                         verdicts.VideoVerdict(f"id-{name}", landing_uri(cfg, f"long/{name}"), verdict, 0.9, 60, 9, "t",
                                               segments) for name, (verdict, segments) in found.items()])
    db.dispose()
    labels = tmp_path / "labels.csv"
    labels.write_text("name,label,segment_start_s,segment_end_s\nhit.mp4,FAKE,40,50\nmiss.mp4,FAKE,10,20\n"
                      "missed.mp4,FAKE,5,15\nwhole.mp4,FAKE,,\n")

    result = evaluate(cfg, read_labels(labels), "long", evaluated_at=AT)
    assert main(["evaluate", "--labels", str(labels), "--prefix", "long"]) == 0

    localisation = result.localisation
    assert (localisation.partial_fakes, localisation.called_fake, localisation.localised) == (3, 2, 1)
    assert (localisation.localised_share, localisation.median_iou) == pytest.approx((0.5, 0.4))
    assert [(v.name, v.iou) for v in localisation.videos] == [
        ("hit.mp4", pytest.approx(0.8)), ("miss.mp4", 0.0), ("missed.mp4", None)]
    out = capsys.readouterr().out
    assert ("segment localisation: 2 of 3 labelled partial fake(s) called FAKE; 1 with segment IoU >= 0.5 "
            "(share 0.500); median IoU 0.400") in out
    store = open_store(cfg.resolved_store_uri)
    prefix = store.key_for(out.split("stored: ")[1].split()[0])
    stored = json.loads(store.get_bytes(prefix + "evaluation.json"))["localisation"]
    assert (stored["localised"], stored["videos"][0]["start_s"], stored["videos"][0]["track_id"]) == (1, 41.0, 0)
    page = store.get_bytes(prefix + "evaluation.html").decode()
    assert 'id="localisation"' in page and "track 0 41.0-49.0 s" in page and "40.0-50.0 s" in page


def test_without_labelled_segments_the_evaluation_has_no_localisation(config, tmp_path):
    result = evaluate(config, read_labels(write_csv(tmp_path / "labels.csv")), "batch", evaluated_at=AT)

    assert result.localisation is None
    assert 'id="localisation"' not in render(result, b"")
