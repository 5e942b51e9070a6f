"""Per-video reports on a scored sample: content, embedded images, Grad-CAM maps, escaping.

The champion is ``factories.brightness_classifier`` (a real Keras model of the project's shape whose
fake probability grows with brightness), registered with both its engine file and ``model.keras``;
"fake" crops are face crops washed out towards white, as in test_scoring.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import re
from datetime import datetime

import cv2
import numpy as np
import pytest

from realness_tasks import registry, reports, scoring, verdicts
from realness_tasks.cli import main
from realness_tasks.db import Database
from realness_tasks.storage import open_store
from tests.factories import brightness_classifier, sample_crops
from tests.test_scoring import (BRIGHTNESS_CUT, BRIGHTNESS_GAIN, IMAGE_SIZE, RUN_DATE, make_config, one_person,
                                register_champion, write_shard)

CROP_SIZE = 48
IMAGE_SRC = re.compile(r'src="data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def champion_files(tmp_path_factory):
    """model.keras and model.tflite of the brightness classifier."""
    from realness_tasks.inference import export_tflite

    folder = tmp_path_factory.mktemp("champion")
    classifier = brightness_classifier(IMAGE_SIZE, BRIGHTNESS_GAIN, BRIGHTNESS_CUT)
    classifier.save(folder / "model.keras")
    export_tflite(classifier, folder / "model.tflite")
    return folder


@pytest.fixture(scope="module")
def crops() -> dict[str, list[bytes]]:
    real = sample_crops(CROP_SIZE)
    fake = [cv2.imencode(".jpg", cv2.convertScaleAbs(cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR),
                                                     alpha=0.15, beta=225))[1].tobytes() for j in real]
    return {"real": real, "fake": fake}


@pytest.fixture
def scored(tmp_path, champion_files, crops):
    """A scored day: one real video, one with every other frame swapped (FAKE), one with a second person."""
    cfg = make_config(tmp_path, "")
    store = open_store(cfg.resolved_store_uri)
    register_champion(cfg, store, champion_files / "model.tflite", "v1", 0.5, datetime(2025, 3, 1))
    store.upload(champion_files / "model.keras", registry.artefact_key(cfg, "v1", "model.keras"))
    real, fake = crops["real"], crops["fake"]
    write_shard(cfg, store, "real", one_person(real * 2))
    write_shard(cfg, store, "partly", one_person([fake[i % 4] if i % 2 else real[i % 4] for i in range(8)]))
    write_shard(cfg, store, "guest", [(f, 0, real[f % 4]) for f in range(6)] + [(f, 1, fake[f % 4]) for f in range(4)])
    scoring.run_scoring(cfg, "run-1", RUN_DATE)
    db = Database(cfg.resolved_database_url)
    yield cfg, store, db
    db.dispose()


def embedded_images(page: str) -> list[np.ndarray]:
    """Every base64 image of the page, decoded; fails on one that does not decode."""
    images = []
    for kind, data in IMAGE_SRC.findall(page):
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data, validate=True), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None, f"an embedded {kind} image does not decode"
        images.append(image)
    return images


def test_a_report_shows_the_verdict_every_face_and_the_heatmaps(scored):
    cfg, store, db = scored
    gradcam = reports.load_gradcam(cfg, store, "v1")

    uri = reports.write_report(cfg, store, db, "partly", "v1", gradcam)

    page = read_page(store, uri)
    assert store.key_for(uri) == "reports/videos/partly/v1.html"
    assert db.query("SELECT report_uri FROM verdicts WHERE video_id = 'partly'")[0]["report_uri"] == uri
    verdict = db.query("SELECT * FROM verdicts WHERE video_id = 'partly'")[0]
    assert f'id="verdict">{verdict["verdict"]}<' in page and verdict["verdict"] == "FAKE"
    assert html.escape(verdict["reason"]) in page and "v1" in page and f"{verdict['p_fake']:.3f}" in page
    face_rows = re.findall(r"<tr><td><img.*?</tr>", page)
    scores = db.query("SELECT * FROM face_scores WHERE video_id = 'partly' ORDER BY frame_index")
    assert len(face_rows) == len(scores) == 8
    for row, score in zip(face_rows, scores, strict=True):   # sorted by time, one frame per face here
        assert f">{score['label']}<" in row and f"{score['confidence']:.3f}" in row and "MTCNN" in row
        assert f"<td>{score['frame_index'] / 8:.2f}</td>" in row
    images = embedded_images(page)
    # one timeline, 4 crops with their heatmap overlay (gradcam_faces), then one crop per face in the table
    assert len(images) == 1 + 2 * cfg.report.gradcam_faces + 8
    assert all(image.shape[:2] == (CROP_SIZE, CROP_SIZE) for image in images[1:])
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_a_scoring_run_writes_reports_for_the_configured_verdicts(scored):
    cfg, store, db = scored

    written = reports.write_run_reports(cfg, "run-1")

    assert sorted(written) == ["guest", "partly"]   # the FAKE verdicts; "real" is REAL
    stored = {r["video_id"]: r["report_uri"] for r in db.query("SELECT video_id, report_uri FROM verdicts")}
    assert stored == {"guest": written["guest"], "partly": written["partly"], "real": None}
    assert all(store.exists(store.key_for(uri)) for uri in written.values())
    only_real = dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, verdicts="real"))
    assert list(reports.write_run_reports(only_real, "run-1")) == ["real"]
    assert reports.write_run_reports(dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, verdicts="")),
                                     "run-1") == {}


def test_report_on_demand_by_source_uri_and_a_new_decision_clears_the_uri(scored, monkeypatch, capsys):
    cfg, store, db = scored
    monkeypatch.setenv("REALNESS_HOME", cfg.home)

    assert main(["report", "s3://landing/real.mp4"]) == 0

    uri = capsys.readouterr().out.strip()
    assert store.key_for(uri) == "reports/videos/real/v1.html" and 'id="verdict">REAL<' in read_page(store, uri)
    with pytest.raises(KeyError, match="no verdict for s3://landing/never.mp4"):
        reports.write_video_report(cfg, "s3://landing/never.mp4")
    decided = db.query("SELECT * FROM verdicts WHERE video_id = 'real'")[0]
    verdicts.publish(db, model_version="v1", run_id="run-2", run_date=RUN_DATE, decided_at=decided["decided_at"],
                     videos=[], faces=[], verdicts=[verdicts.unscored("real", None, verdicts.ERROR, "re-decided")])
    assert db.query("SELECT report_uri FROM verdicts WHERE video_id = 'real'")[0]["report_uri"] is None


def read_page(store, uri: str) -> str:
    return store.get_bytes(store.key_for(uri)).decode()


def test_the_heatmaps_go_to_the_most_suspicious_faces(scored):
    cfg, store, db = scored
    faces = reports.load_faces(cfg, store, db, "guest", "v1")

    suspicious = reports.most_suspicious(faces, 4)

    assert {f.face_index for f in suspicious} == {1}   # the washed-out second person
    assert [f.p_fake for f in suspicious] == sorted((f.p_fake for f in faces), reverse=True)[:4]


def test_gradcam_maps_have_the_crop_size_and_follow_the_bright_regions(scored, crops):
    cfg, store, _ = scored
    gradcam = reports.load_gradcam(cfg, store, "v1")

    maps = gradcam.heatmaps(crops["real"])

    for jpeg, heatmap in zip(crops["real"], maps, strict=True):
        assert heatmap.shape == (CROP_SIZE, CROP_SIZE)
        assert heatmap.std() > 0.05 and 0 <= heatmap.min() and heatmap.max() <= 1
        # the model's evidence is brightness: the map must rank bright pixels above dark ones
        grey = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
        assert np.corrcoef(grey.ravel(), heatmap.ravel())[0, 1] > 0.8


def test_gradcam_works_on_the_real_classifier(tmp_path):
    """The project's own network (the default pretrained EfficientNet-Lite0 backbone and the paper's head)."""
    from realness_tasks import model
    from realness_tasks.settings import TrainingSettings

    classifier, _ = model.build_classifier(TrainingSettings(image_size=128, seed=3), tmp_path / "weights")
    classifier.save(tmp_path / "model.keras")
    import keras

    gradcam = reports.GradCam(keras.models.load_model(tmp_path / "model.keras", compile=False))

    maps = gradcam.heatmaps(sample_crops(CROP_SIZE))

    assert all(m.shape == (CROP_SIZE, CROP_SIZE) and m.std() > 0 for m in maps)


def branching_head(features):
    """A second path from the backbone's features to the output, merged by addition."""
    import keras

    skip = keras.layers.Dense(1, name="skip")(features)
    return keras.layers.Activation("sigmoid")(keras.layers.Add()([keras.layers.Dense(1)(features), skip]))


def shared_layer_head(features):
    """One layer applied twice: listed once among the model's layers."""
    import keras

    twice = keras.layers.Dense(2, activation="tanh", name="twice")
    return keras.layers.Dense(1, activation="sigmoid")(twice(twice(features)))


@pytest.mark.parametrize("head", [branching_head, shared_layer_head])
def test_gradcam_refuses_a_network_that_is_not_a_chain_after_the_feature_map(head):
    import keras

    from realness_tasks.model import BACKBONE_NAME

    pixels = keras.Input((16, 16, 3))
    backbone = keras.Model(pixels, keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(pixels)),
                           name=BACKBONE_NAME)
    inputs = keras.Input((16, 16, 3))
    gradcam = reports.GradCam(keras.Model(inputs, head(backbone(inputs))))

    with pytest.raises(ValueError, match="not a chain"):
        gradcam(np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32))


def test_names_and_reasons_are_escaped_in_the_report():
    evil = "<img src=x onerror=alert(1)>"
    verdict = {"video_id": "abc", "source_uri": f"s3://landing/{evil}.mp4", "verdict": "FAKE", "p_fake": 0.9,
               "reason": "<script>alert(1)</script>", "model_version": f"v{evil}", "faces_scored": 0,
               "fake_faces": 0, "decided_at": "2025-04-01", "run_id": evil}

    page = reports.render(verdict, 0.5, [], {})

    assert "<img src=x" not in page and "<script>" not in page
    assert page.count(html.escape(evil)) == 5   # title, heading, source, version, run
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_report_names_the_reference_each_face_was_judged_against():
    import cv2

    crop = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()
    verdict = {"video_id": "abc", "source_uri": "s3://landing/a.mp4", "verdict": "REAL", "p_fake": 0.2,
               "reason": "face 0: mean of all 2 faces; judged against identity 3 (12 reference faces)",
               "model_version": "v1", "faces_scored": 3, "fake_faces": 0, "decided_at": "2025-04-01", "run_id": "r"}
    faces = [reports.ReportFace(0, 0, 0.0, "mtcnn", 0.99, crop, 0.81, "REAL", 0.7, "identity 3 (<b>Anchor</b>)", 12,
                                0.3),
             reports.ReportFace(8, 0, 1.0, "mtcnn", 0.99, crop, 0.79, "REAL", 0.75, "identity 3 (<b>Anchor</b>)", 12,
                                0.25),
             reports.ReportFace(8, 1, 1.0, "mtcnn", 0.99, crop, 0.1, "REAL", 0.9, "identity 4", None, None)]

    page = reports.render(verdict, 0.5, faces, {})

    summary = page.split('id="references">', 1)[1].split("</dd>", 1)[0]
    assert summary == "identity 3 (&lt;b&gt;Anchor&lt;/b&gt;): 12 reference faces"
    assert "<b>Anchor" not in page and page.count("<td>identity 4</td>") == 1
    assert "<td>0.300</td>" in page and "<td>0.250</td>" in page
    assert [f.p_judged for f in reports.most_suspicious(faces, 2)] == [0.3, 0.25]

    without = reports.render(verdict, 0.5, [reports.ReportFace(0, 0, 0.0, "mtcnn", 0.99, crop, 0.8, "FAKE", 0.8)], {})
    assert 'id="references"' not in without


def test_a_report_shades_and_lists_the_verdicts_segments(monkeypatch):
    crop = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()
    verdict = {"video_id": "abc", "source_uri": "s3://landing/a.mp4", "verdict": "FAKE", "p_fake": 0.9,
               "reason": "segment rule: track 1 fake from 4.0 s to 9.0 s (6 faces, mean 0.90)",
               "model_version": "v1", "faces_scored": 12, "fake_faces": 6, "decided_at": "2025-04-01", "run_id": "r"}
    faces = [reports.ReportFace(t, 0, float(t), "mtcnn", 0.99, crop, 0.9 if 4 <= t <= 9 else 0.1,
                                "FAKE" if 4 <= t <= 9 else "REAL", 0.9, track_id=1) for t in range(12)]
    segments = [verdicts.Segment(1, 4.0, 9.0, 6, 0.9, verdicts.FAKE)]
    spans = []
    monkeypatch.setattr(reports, "line_chart", lambda draw: draw(_Recorder(spans)) or b"png")

    page = reports.render(verdict, 0.5, faces, {}, segments)

    assert spans == [(4.0, 9.0)]
    rows = page.split('id="segments">', 1)[1].split("</table>", 1)[0]
    assert "<td>1</td><td>4.00</td><td>9.00</td><td>6</td><td>0.900</td>" in rows and ">FAKE</td>" in rows


class _Recorder:
    """Stands in for matplotlib's axes: keeps the shaded spans, ignores the rest."""

    def __init__(self, spans: list):
        self.spans = spans

    def axvspan(self, start, end, **_):
        self.spans.append((start, end))

    def __getattr__(self, name):
        return lambda *args, **kwargs: None
