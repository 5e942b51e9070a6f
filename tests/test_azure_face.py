"""AzureFaceDetector through the real azure-ai-vision-face SDK against a local fake Face service."""

from __future__ import annotations

import dataclasses
import logging

import cv2
import numpy as np
import pytest

from realness_tasks import azure_face
from realness_tasks.azure_face import AzureAuthError, AzureFaceDetector
from realness_tasks.faces import encode_jpeg
from realness_tasks.settings import AzureSettings
from tests.conftest import free_port
from tests.fake_azure_face import (LANDMARKS, MAX_BYTES, Face, FakeFaceService, malformed, ok, server_error, slow,
                                   throttled, unauthorized)

KEY = "test-key"
MTCNN_ORDER = ("pupilLeft", "pupilRight", "noseTip", "mouthLeft", "mouthRight")


@pytest.fixture
def service():
    fake = FakeFaceService(key=KEY)
    yield fake
    fake.close()


def settings_for(service: FakeFaceService, **changes) -> AzureSettings:
    base = AzureSettings(endpoint=service.endpoint, key=KEY, timeout_s=5.0, backoff_s=0.01)
    return dataclasses.replace(base, **changes)


def textured_frame(seed: int, width: int = 640, height: int = 480) -> np.ndarray:
    """A smooth random BGR frame: distinct per seed, compresses like a photo."""
    coarse = np.random.default_rng(seed).integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), np.uint8)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)


def expected_face(face: Face, width: int, height: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Box and MTCNN-ordered landmarks the scripted face should come back as, in frame pixels."""
    box = (face.left * width, face.top * height, face.width * width, face.height * height)
    landmarks = tuple(v for name in MTCNN_ORDER
                      for v in (box[0] + LANDMARKS[name][0] * box[2], box[1] + LANDMARKS[name][1] * box[3]))
    return box, landmarks


def assert_face_maps_back(service: FakeFaceService, frame: np.ndarray, face: Face, detection) -> None:
    height, width = frame.shape[:2]
    sent_width, sent_height = service.requests[-1].image_size
    # The service answers in whole pixels of the image it received: one of those in frame pixels.
    tolerance = max(width / sent_width, height / sent_height)
    box, landmarks = expected_face(face, width, height)
    assert detection.detector == "azure" and detection.confidence == 1.0
    np.testing.assert_allclose(detection.box, box, atol=tolerance)
    np.testing.assert_allclose(detection.landmarks, landmarks, atol=tolerance)


def test_sends_the_request_the_face_service_expects_and_maps_the_answer(service):
    frame = textured_frame(1)
    face = Face(0.2, 0.25, 0.3, 0.4)
    service.push(ok(face))
    detector = AzureFaceDetector(settings_for(service))

    [result] = detector.detect([frame])

    [request] = service.requests
    assert request.path == "/face/v1.2-preview.1/detect"
    assert request.query["detectionModel"] == ["detection_03"]
    assert request.query["returnFaceId"] == ["false"]
    assert request.query["returnFaceLandmarks"] == ["true"]
    assert request.query["recognitionModel"] == ["recognition_04"]
    assert request.headers["ocp-apim-subscription-key"] == KEY
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.image_size == (640, 480) and request.status == 200
    assert result.azure_status == "ok"
    [detection] = result.detections
    assert_face_maps_back(service, frame, face, detection)
    assert detector.stats() == {"calls": 1, "retries": 0, "failures": 0, "skipped_circuit": 0,
                                "skipped_budget": 0, "cache_hits": 0, "faces": 1}


def test_frame_larger_than_4096_is_downscaled_and_boxes_come_back_in_frame_pixels(service):
    frame = textured_frame(2, width=6000, height=3000)
    faces = (Face(0.1, 0.2, 0.15, 0.3), Face(0.6, 0.5, 0.05, 0.1))
    service.push(ok(*faces))

    [result] = AzureFaceDetector(settings_for(service)).detect([frame])

    assert max(service.requests[-1].image_size) <= 4096
    assert result.azure_status == "ok"
    assert len(result.detections) == 2
    for face, detection in zip(faces, result.detections):
        assert_face_maps_back(service, frame, face, detection)


def test_jpeg_over_the_byte_limit_is_reencoded_under_6_mb(service):
    frame = np.random.default_rng(3).integers(0, 256, (4096, 4096, 3), np.uint8)
    assert len(encode_jpeg(frame, azure_face.JPEG_QUALITY)) > MAX_BYTES  # the plain encoding would be refused
    face = Face(0.4, 0.4, 0.2, 0.2)
    service.push(ok(face))

    [result] = AzureFaceDetector(settings_for(service)).detect([frame])

    assert result.azure_status == "ok"
    assert 0 < service.requests[-1].body_bytes <= MAX_BYTES
    assert_face_maps_back(service, frame, face, result.detections[0])


def test_throttled_call_waits_for_retry_after_then_succeeds(service):
    retry_after = 0.3
    service.push(throttled(str(retry_after)), ok(Face(0.1, 0.1, 0.3, 0.3)))
    detector = AzureFaceDetector(settings_for(service, backoff_s=0.01))

    [result] = detector.detect([textured_frame(4)])

    assert result.azure_status == "ok" and len(result.detections) == 1
    first, second = service.requests
    assert (first.status, second.status) == (429, 200)
    # A lower bound only: the 0.01 s backoff alone could not explain this gap.
    assert second.received_at - first.received_at >= retry_after
    assert detector.stats()["calls"] == 1 and detector.stats()["retries"] == 1


@pytest.mark.timeout(60)
def test_retry_after_is_capped(service, monkeypatch):
    monkeypatch.setattr(azure_face, "MAX_WAIT_S", 0.05)
    service.push(throttled("3600"), ok())

    [result] = AzureFaceDetector(settings_for(service)).detect([textured_frame(5)])

    assert result.azure_status == "ok"
    assert [r.status for r in service.requests] == [429, 200]


def test_transient_server_errors_are_retried(service):
    service.push(server_error(500), server_error(503), ok(Face(0.3, 0.3, 0.2, 0.2)))
    detector = AzureFaceDetector(settings_for(service, max_retries=3))

    [result] = detector.detect([textured_frame(6)])

    assert result.azure_status == "ok" and len(result.detections) == 1
    assert [r.status for r in service.requests] == [500, 503, 200]
    assert detector.stats()["retries"] == 2 and detector.stats()["failures"] == 0


def test_timeout_is_retried(service):
    service.push(slow(2.0), ok(Face(0.3, 0.3, 0.2, 0.2)))
    detector = AzureFaceDetector(settings_for(service, timeout_s=0.3))

    [result] = detector.detect([textured_frame(7)])

    assert result.azure_status == "ok" and len(result.detections) == 1
    assert len(service.requests) == 2
    assert detector.stats()["retries"] == 1


def test_retries_are_bounded_and_the_sdk_adds_none(service):
    service.push(*[server_error(500)] * 5)
    detector = AzureFaceDetector(settings_for(service, max_retries=2))

    [result] = detector.detect([textured_frame(8)])

    assert result.azure_status == "failed:http_500"
    assert len(service.requests) == 3  # one call, two retries: no hidden SDK retries
    assert detector.stats()["retries"] == 2 and detector.stats()["failures"] == 1


def test_unreachable_endpoint_fails_the_frame_without_raising():
    settings = AzureSettings(endpoint=f"http://127.0.0.1:{free_port()}", key=KEY, backoff_s=0.01, max_retries=1)
    detector = AzureFaceDetector(settings)

    [result] = detector.detect([textured_frame(9)])

    assert result.azure_status == "failed:connection"
    assert detector.stats()["retries"] == 1 and detector.stats()["failures"] == 1


def test_malformed_json_fails_that_frame_and_the_run_goes_on(service):
    face = Face(0.25, 0.25, 0.3, 0.3)
    service.push(malformed(), ok(face))
    detector = AzureFaceDetector(settings_for(service))
    frames = [textured_frame(10), textured_frame(11)]

    results = detector.detect(frames)

    assert [r.azure_status for r in results] == ["failed:malformed_response", "ok"]
    assert results[0].detections == []
    assert_face_maps_back(service, frames[1], face, results[1].detections[0])
    assert len(service.requests) == 2  # a malformed answer is not retried
    assert detector.stats()["failures"] == 1


@pytest.mark.parametrize("cause", ["wrong_key", "revoked_key"])
def test_auth_error_in_fail_mode_raises_naming_the_settings(service, cause):
    key = "not-the-key" if cause == "wrong_key" else KEY
    if cause == "revoked_key":
        service.push(unauthorized())
    detector = AzureFaceDetector(settings_for(service, key=key, on_auth_error="fail"))

    with pytest.raises(AzureAuthError) as raised:
        detector.detect([textured_frame(12)])

    message = str(raised.value)
    assert "REALNESS_AZURE_KEY" in message and "azure_face" in message and "401" in message
    assert len(service.requests) == 1  # 401 is not retried


def test_auth_error_in_fallback_mode_marks_frames_and_stops_calling(service, caplog):
    detector = AzureFaceDetector(settings_for(service, key="not-the-key", on_auth_error="fallback"))

    with caplog.at_level(logging.WARNING, logger="realness_tasks.azure_face"):
        first = detector.detect([textured_frame(13), textured_frame(14)])
        second = detector.detect([textured_frame(15)])

    assert [r.azure_status for r in first + second] == ["failed:auth"] * 3
    assert len(service.requests) == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "REALNESS_AZURE_KEY" in errors[0].getMessage()


def test_invalid_on_auth_error_names_its_variable(service):
    with pytest.raises(ValueError, match="REALNESS_AZURE_ON_AUTH_ERROR"):
        AzureFaceDetector(settings_for(service, on_auth_error="ignore"))


def test_circuit_opens_after_consecutive_failures_and_stops_requests(service, caplog):
    service.push(server_error(500), ok(), server_error(500), server_error(500), ok(), ok())
    detector = AzureFaceDetector(settings_for(service, max_retries=0, circuit_failures=2))

    with caplog.at_level(logging.WARNING, logger="realness_tasks.azure_face"):
        results = detector.detect([textured_frame(seed) for seed in range(20, 26)])

    # The success in between resets the count: only the two failures in a row open the circuit.
    assert [r.azure_status for r in results] == [
        "failed:http_500", "ok", "failed:http_500", "failed:http_500", "skipped:circuit_open", "skipped:circuit_open"]
    assert len(service.requests) == 4
    assert detector.stats()["skipped_circuit"] == 2 and detector.stats()["failures"] == 3
    assert sum("circuit open" in r.getMessage() for r in caplog.records) == 1


def test_call_budget_limits_calls(service):
    detector = AzureFaceDetector(settings_for(service, call_budget=2))

    results = detector.detect([textured_frame(seed) for seed in range(30, 34)])

    assert [r.azure_status for r in results] == ["ok", "ok", "skipped:budget", "skipped:budget"]
    assert len(service.requests) == 2
    assert detector.stats()["calls"] == 2 and detector.stats()["skipped_budget"] == 2


def test_second_run_is_served_from_the_cache(service, tmp_path):
    frames = [textured_frame(40), textured_frame(41)]
    service.push(ok(Face(0.1, 0.2, 0.3, 0.3)), ok(Face(0.5, 0.1, 0.2, 0.4), Face(0.1, 0.5, 0.2, 0.2)))
    first = AzureFaceDetector(settings_for(service), cache_dir=tmp_path).detect(frames)
    sent = {r.body_sha256 for r in service.requests}

    rerun = AzureFaceDetector(settings_for(service), cache_dir=tmp_path)
    second = rerun.detect(frames)

    assert len(service.requests) == 2  # nothing reached the service the second time
    assert {p.stem for p in tmp_path.glob("*.json")} == sent  # keyed by the hash of the JPEG sent
    assert [r.azure_status for r in first] == ["ok", "ok"]
    assert [r.azure_status for r in second] == ["cached", "cached"]
    assert [r.detections for r in second] == [r.detections for r in first]
    assert rerun.stats()["cache_hits"] == 2 and rerun.stats()["calls"] == 0 and rerun.stats()["faces"] == 3


def test_frame_too_small_for_the_service_is_not_sent(service):
    detector = AzureFaceDetector(settings_for(service))

    [result] = detector.detect([textured_frame(50, width=30, height=200)])

    assert result.azure_status == "failed:image_too_small"
    assert service.requests == []


def test_fake_service_finds_the_sample_faces_unscripted(service):
    from realness_tasks.faces import iou
    from realness_tasks.samples import sample_photos

    photos = sample_photos()
    results = AzureFaceDetector(settings_for(service)).detect([photo.image for photo in photos])

    for photo, result in zip(photos, results):
        assert result.azure_status == "ok"
        assert max(iou(d.box, photo.face_box) for d in result.detections) > 0.3, photo.name
