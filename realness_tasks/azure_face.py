"""Azure AI Vision Face as a second face detector beside MTCNN.

Each frame is sent on its own to the Face ``detect`` operation through the official SDK
(``azure-ai-vision-face``). The service is paid, rate limited and can be down, so every call is
guarded here: one retry layer (the SDK's own is switched off so retries can be counted and
bounded), a circuit breaker that gives up on Azure for the rest of the run, a call budget, and a
content-addressed cache so a re-run never pays twice for the same image. Azure never decides
whether a task fails, except when the key or endpoint is wrong and ``on_auth_error`` says "fail".
See docs/azure.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from azure.ai.vision.face import FaceClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    DeserializationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.policies import HttpLoggingPolicy, RetryPolicy

from realness_tasks.detection import Detection, FaceDetector, FrameFaces, encode_jpeg
from realness_tasks.settings import AzureSettings

log = logging.getLogger(__name__)

# The SDK logs every request and response at INFO; keep that out of task logs unless asked for.
HTTP_LOGGER = logging.getLogger(f"{__name__}.http")
HTTP_LOGGER.setLevel(logging.WARNING)

DETECTION_MODEL = "detection_03"  # best on small and rotated faces; returns landmarks
RECOGNITION_MODEL = "recognition_04"  # required by the SDK; unused since no face ids are requested
MAX_IMAGE_BYTES = 6_000_000  # the service takes up to 6 MB; stay under either reading of "MB"
MIN_IMAGE_BYTES = 1024  # the service rejects images under 1 KB
MIN_SIDE = 36
MAX_SIDE = 4096
JPEG_QUALITY = 90
LOW_JPEG_QUALITY = 75  # tried before downscaling when an image is over the byte limit
MAX_WAIT_S = 30.0  # cap on backoff and on the service's Retry-After
AUTH_MODES = ("fail", "fallback")
# Azure's landmarks that match MTCNN's five points, in MTCNN's order.
FIVE_POINTS = ("pupil_left", "pupil_right", "nose_tip", "mouth_left", "mouth_right")
# Every error status becomes an exception before the SDK tries to read the body, so a 5xx
# with an HTML body is still seen as a 5xx.
ERROR_MAP = {status: HttpResponseError for status in range(400, 600)} | {
    401: ClientAuthenticationError,
    403: ClientAuthenticationError,
}


class AzureAuthError(RuntimeError):
    """Azure refused the key or endpoint (HTTP 401/403): a configuration error, not an outage."""


@dataclass(frozen=True)
class AzureImage:
    """The JPEG sent for one frame and how its pixels map back to the frame."""

    jpeg: bytes
    scale_x: float  # frame px per sent px
    scale_y: float

    @property
    def digest(self) -> str:
        """The JPEG's sha256: the key of its cached answer."""
        return hashlib.sha256(self.jpeg).hexdigest()


@dataclass(frozen=True)
class AzureFace:
    """One face as the service reported it, in the sent image's pixels."""

    box: tuple[float, float, float, float]  # left, top, width, height
    landmarks: tuple[float, ...] | None  # x1, y1 .. x5, y5 in FIVE_POINTS order

    def to_json(self) -> dict:
        """The face as the cache file stores it."""
        return {"box": list(self.box), "landmarks": None if self.landmarks is None else list(self.landmarks)}

    @classmethod
    def from_json(cls, data: dict) -> AzureFace:
        """A face read back from the cache file."""
        landmarks = data["landmarks"]
        return cls(tuple(data["box"]), None if landmarks is None else tuple(landmarks))

    def to_detection(self, image: AzureImage) -> Detection:
        """The face in the frame's pixels, as a detection (Azure gives no score: confidence 1)."""
        left, top, width, height = self.box
        landmarks = None
        if self.landmarks is not None:
            landmarks = tuple(value * (image.scale_x if i % 2 == 0 else image.scale_y)
                              for i, value in enumerate(self.landmarks))
        # Azure gives no score: its faces are already past the service's own threshold.
        return Detection(box=(left * image.scale_x, top * image.scale_y, width * image.scale_x, height * image.scale_y),
                         confidence=1.0, landmarks=landmarks, detector="azure")


class CallFailed(Exception):
    """One attempt failed; ``reason`` becomes the frame's ``failed:<reason>`` status."""

    def __init__(self, reason: str, detail: str, *, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class AuthRejected(Exception):
    """The service answered 401/403."""


def prepare_image(image: np.ndarray) -> AzureImage | None:
    """JPEG-encode a BGR frame within the service's limits; None when it is too small to send.

    Frames over 4096 px on a side are downscaled; if the JPEG is still over the byte limit the
    quality drops once, then the image shrinks by the square root of the excess until it fits.
    """
    height, width = image.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    quality = JPEG_QUALITY
    while True:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        if min(size) < MIN_SIDE:
            return None
        sent = image if size == (width, height) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        jpeg = encode_jpeg(sent, quality)
        if len(jpeg) <= MAX_IMAGE_BYTES:
            break
        if quality > LOW_JPEG_QUALITY:
            quality = LOW_JPEG_QUALITY
        else:
            scale *= 0.95 * math.sqrt(MAX_IMAGE_BYTES / len(jpeg))
    if len(jpeg) < MIN_IMAGE_BYTES:
        return None
    return AzureImage(jpeg, width / size[0], height / size[1])


def parse_faces(results: object) -> list[AzureFace]:
    """The SDK's detect results as AzureFace; a response of the wrong shape raises CallFailed."""
    try:
        faces = []
        for result in results:  # type: ignore[union-attr]
            rect = result.face_rectangle
            box = tuple(float(v) for v in (rect.left, rect.top, rect.width, rect.height))
            if box[2] <= 0 or box[3] <= 0:
                raise ValueError(f"empty faceRectangle {box}")
            faces.append(AzureFace(box, _five_points(result.face_landmarks)))  # type: ignore[arg-type]
        return faces
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CallFailed("malformed_response", f"unexpected detect response ({exc})", retryable=False) from exc


def _five_points(landmarks: object) -> tuple[float, ...] | None:
    if landmarks is None:
        return None
    points = [getattr(landmarks, name, None) for name in FIVE_POINTS]
    if any(point is None for point in points):
        return None
    return tuple(float(value) for point in points for value in (point.x, point.y))


def auth_message(status: int | None, detail: str) -> str:
    """What to fix when Azure refuses the credentials: the settings or the Airflow connection."""
    return (f"Azure Face refused the credentials (HTTP {status}: {detail.rstrip('.')}). Fix the key and "
            "endpoint: REALNESS_AZURE_KEY / REALNESS_AZURE_ENDPOINT, or the password / host of the Airflow "
            "connection 'azure_face'.")


class AzureFaceDetector(FaceDetector):
    """Face detector backed by Azure AI Vision Face; one instance lives for one task run."""

    name = "azure"

    def __init__(self, settings: AzureSettings, cache_dir: Path | None = None) -> None:
        if settings.on_auth_error not in AUTH_MODES:
            raise ValueError(f"REALNESS_AZURE_ON_AUTH_ERROR={settings.on_auth_error!r} is not one of {AUTH_MODES}")
        if not settings.enabled:
            raise ValueError("Azure Face needs REALNESS_AZURE_ENDPOINT and REALNESS_AZURE_KEY "
                             "(or the Airflow connection 'azure_face': host = endpoint, password = key)")
        self.settings = settings
        self.cache_dir = cache_dir
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
        self._client = FaceClient(
            endpoint=settings.endpoint.rstrip("/"),  # type: ignore[union-attr]
            credential=AzureKeyCredential(settings.key),  # type: ignore[arg-type]
            retry_policy=RetryPolicy.no_retries(),  # the retry loop below is the only one
            http_logging_policy=HttpLoggingPolicy(logger=HTTP_LOGGER),
        )
        self._counts = dict.fromkeys(
            ("calls", "retries", "failures", "skipped_circuit", "skipped_budget", "cache_hits", "faces"), 0)
        self._consecutive_failures = 0
        self._open_status: str | None = None  # set once the circuit opens: the status later frames get
        self._budget_logged = False

    def stats(self) -> dict[str, int]:
        return dict(self._counts)

    def load(self) -> None:
        """A remote API: nothing to load."""

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        results = [self._detect_frame(frame) for frame in frames]
        self._counts["faces"] += sum(len(result.detections) for result in results)
        return results

    def _detect_frame(self, frame: np.ndarray) -> FrameFaces:
        image = prepare_image(frame)
        if image is None:
            return FrameFaces([], "failed:image_too_small")
        cached = self._cache_read(image)
        if cached is not None:
            self._counts["cache_hits"] += 1
            return FrameFaces([face.to_detection(image) for face in cached], "cached")
        if self._open_status is not None:
            self._counts["skipped_circuit"] += 1
            return FrameFaces([], self._open_status)
        if self._counts["calls"] >= self.settings.call_budget:
            self._counts["skipped_budget"] += 1
            if not self._budget_logged:
                log.warning("Azure Face call budget of %d calls is spent; later frames use MTCNN only",
                            self.settings.call_budget)
                self._budget_logged = True
            return FrameFaces([], "skipped:budget")
        try:
            faces = self._call(image)
        except AuthRejected as exc:
            self._counts["failures"] += 1
            if self.settings.on_auth_error == "fail":
                raise AzureAuthError(str(exc)) from None
            log.error("%s Continuing with MTCNN only (REALNESS_AZURE_ON_AUTH_ERROR=fallback).", exc)
            self._open_status = "failed:auth"
            return FrameFaces([], "failed:auth")
        except CallFailed as exc:
            self._record_failure(exc)
            return FrameFaces([], f"failed:{exc.reason}")
        self._consecutive_failures = 0
        self._cache_write(image, faces)
        return FrameFaces([face.to_detection(image) for face in faces], "ok")

    def _record_failure(self, exc: CallFailed) -> None:
        self._counts["failures"] += 1
        self._consecutive_failures += 1
        log.warning("Azure Face call failed: %s", exc)
        if self._consecutive_failures >= self.settings.circuit_failures:
            self._open_status = "skipped:circuit_open"
            log.warning("Azure Face circuit open after %d consecutive failed calls (last: %s); "
                        "the rest of this run uses MTCNN only", self._consecutive_failures, exc.reason)

    def _call(self, image: AzureImage) -> list[AzureFace]:
        """One detect call: the first attempt plus up to ``max_retries`` retries of transient failures."""
        self._counts["calls"] += 1
        retry = 0
        while True:
            try:
                return self._attempt(image)
            except CallFailed as exc:
                if not exc.retryable or retry >= self.settings.max_retries:
                    raise
                wait = exc.retry_after_s if exc.retry_after_s is not None else self.settings.backoff_s * 2 ** retry
                wait = min(wait, MAX_WAIT_S)
                retry += 1
                log.warning("Azure Face call failed (%s); retry %d/%d in %.2f s",
                            exc, retry, self.settings.max_retries, wait)
                self._counts["retries"] += 1
                time.sleep(wait)

    def _attempt(self, image: AzureImage) -> list[AzureFace]:
        try:
            results = self._client.detect(
                image.jpeg,
                detection_model=DETECTION_MODEL,
                recognition_model=RECOGNITION_MODEL,
                return_face_id=False,
                return_face_landmarks=True,
                error_map=ERROR_MAP,
                connection_timeout=self.settings.timeout_s,
                read_timeout=self.settings.timeout_s,
            )
        except HttpResponseError as exc:
            raise _classify_http(exc) from exc
        except (ServiceRequestTimeoutError, ServiceResponseTimeoutError) as exc:
            raise CallFailed("timeout", str(exc), retryable=True) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise CallFailed("connection", str(exc), retryable=True) from exc
        except DeserializationError as exc:
            raise CallFailed("malformed_response", str(exc), retryable=False) from exc
        except AzureError as exc:
            raise CallFailed("sdk_error", str(exc), retryable=False) from exc
        return parse_faces(results)

    def _cache_path(self, image: AzureImage) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / f"{image.digest}.json"

    def _cache_read(self, image: AzureImage) -> list[AzureFace] | None:
        path = self._cache_path(image)
        if path is None or not path.exists():
            return None
        try:
            entry = json.loads(path.read_text())
            if entry["detection_model"] != DETECTION_MODEL:
                return None
            return [AzureFace.from_json(face) for face in entry["faces"]]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("Ignoring unreadable Azure Face cache entry %s", path)
            return None

    def _cache_write(self, image: AzureImage, faces: list[AzureFace]) -> None:
        """Write-then-rename, so a killed task never leaves a half-written entry."""
        path = self._cache_path(image)
        if path is None:
            return
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"detection_model": DETECTION_MODEL, "faces": [face.to_json() for face in faces]}))
        os.replace(tmp, path)


def _classify_http(exc: HttpResponseError) -> Exception:
    status = exc.status_code
    detail = exc.error.message if exc.error is not None and exc.error.message else (exc.reason or str(exc))
    if status in (401, 403):
        return AuthRejected(auth_message(status, detail))
    if status == 429:
        return CallFailed("throttled", f"HTTP 429: {detail}", retryable=True,
                          retry_after_s=_retry_after(exc))
    if status is not None and (status >= 500 or status == 408):
        return CallFailed(f"http_{status}", detail, retryable=True)
    if isinstance(exc, DecodeError):
        return CallFailed("malformed_response", str(exc).splitlines()[0], retryable=False)
    return CallFailed(f"http_{status}", detail, retryable=False)


def _retry_after(exc: HttpResponseError) -> float | None:
    """Seconds from a Retry-After header (the Face service sends whole seconds); None if absent."""
    value = exc.response.headers.get("Retry-After") if exc.response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
