"""A local HTTP server that speaks the Azure AI Vision Face ``detect`` wire format.

It checks each request the way the service does (API path and version, query parameters, the
``Ocp-Apim-Subscription-Key`` header, content type, image bytes and dimensions) and answers
violations with the service's status codes and ``{"error": {"code", "message"}}`` bodies. Valid
requests get the next scripted behaviour (``ok``, ``throttled``, ``server_error``, ``slow``,
``malformed``, ``unauthorized``); with nothing scripted it finds faces itself with OpenCV's Haar
cascade, so other tests can use it as a plausible stand-in for the real service.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

API_VERSIONS = ("v1.0", "v1.1-preview.1", "v1.2-preview.1", "v1.2")
DETECTION_MODELS = ("detection_01", "detection_02", "detection_03")
RECOGNITION_MODELS = ("recognition_01", "recognition_02", "recognition_03", "recognition_04")
MAX_BYTES = 6 * 1024 * 1024
MIN_BYTES = 1024
MIN_SIDE, MAX_SIDE = 36, 4096

# The 27 landmarks the service returns, as (x, y) fractions of the face rectangle.
LANDMARKS = {
    "pupilLeft": (0.32, 0.38), "pupilRight": (0.68, 0.38), "noseTip": (0.50, 0.60),
    "mouthLeft": (0.36, 0.80), "mouthRight": (0.64, 0.80),
    "eyebrowLeftOuter": (0.18, 0.28), "eyebrowLeftInner": (0.42, 0.27),
    "eyeLeftOuter": (0.24, 0.38), "eyeLeftTop": (0.32, 0.35), "eyeLeftBottom": (0.32, 0.41),
    "eyeLeftInner": (0.40, 0.38), "eyebrowRightInner": (0.58, 0.27), "eyebrowRightOuter": (0.82, 0.28),
    "eyeRightInner": (0.60, 0.38), "eyeRightTop": (0.68, 0.35), "eyeRightBottom": (0.68, 0.41),
    "eyeRightOuter": (0.76, 0.38), "noseRootLeft": (0.45, 0.40), "noseRootRight": (0.55, 0.40),
    "noseLeftAlarTop": (0.43, 0.55), "noseRightAlarTop": (0.57, 0.55),
    "noseLeftAlarOutTip": (0.41, 0.62), "noseRightAlarOutTip": (0.59, 0.62),
    "upperLipTop": (0.50, 0.74), "upperLipBottom": (0.50, 0.78),
    "underLipTop": (0.50, 0.82), "underLipBottom": (0.50, 0.87),
}


@dataclass(frozen=True)
class Face:
    """A scripted face as fractions of the received image (left, top, width, height)."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Behaviour:
    kind: str  # ok | throttled | server_error | slow | malformed | unauthorized
    faces: tuple[Face, ...] = ()
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0


def ok(*faces: Face) -> Behaviour:
    return Behaviour("ok", faces=faces)


def throttled(retry_after: str = "1") -> Behaviour:
    return Behaviour("throttled", status=429, retry_after=retry_after)


def server_error(status: int = 500) -> Behaviour:
    return Behaviour("server_error", status=status)


def slow(delay_s: float) -> Behaviour:
    """Answers correctly, but only after ``delay_s`` (longer than the client's timeout)."""
    return Behaviour("slow", delay_s=delay_s)


def malformed() -> Behaviour:
    return Behaviour("malformed")


def unauthorized() -> Behaviour:
    return Behaviour("unauthorized", status=401)


@dataclass
class ReceivedRequest:
    """What reached the server, for assertions about what the SDK sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body_bytes: int
    body_sha256: str
    image_size: tuple[int, int] | None  # width, height, when the body decoded
    status: int = 0
    received_at: float = field(default_factory=time.monotonic)


def _error(status: int, code: str, message: str) -> tuple[int, dict, dict[str, str]]:
    return status, {"error": {"code": code, "message": message}}, {}


class FakeFaceService:
    """Runs in a thread on 127.0.0.1 (ephemeral port) until ``close()``."""

    def __init__(self, key: str = "test-key") -> None:
        self.key = key
        self.script: deque[Behaviour] = deque()
        self.requests: list[ReceivedRequest] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-azure-face", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def push(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self.script.extend(behaviours)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self) -> Behaviour | None:
        with self._lock:
            return self.script.popleft() if self.script else None

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR) if body else None
                received = ReceivedRequest(
                    method="POST", path=url.path, query=parse_qs(url.query),
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest(),
                    image_size=None if image is None else (image.shape[1], image.shape[0]))
                service._record(received)
                status, payload, headers = service._answer(received, body, image)
                received.status = status
                self._send(status, payload, headers)

            def _send(self, status: int, payload: object, headers: dict[str, str]) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        return Handler

    def _answer(self, request: ReceivedRequest, body: bytes,
                image: np.ndarray | None) -> tuple[int, object, dict[str, str]]:
        if request.headers.get("ocp-apim-subscription-key") != self.key:
            return _error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint. "
                          "Make sure to provide a valid key for an active subscription and use a correct "
                          "regional API endpoint for your resource.")
        invalid = self._validate(request, body, image)
        if invalid is not None:
            return invalid
        behaviour = self._next() or Behaviour("auto")
        if behaviour.kind == "throttled":
            status, payload, _ = _error(429, "429", "Rate limit is exceeded. Try again later.")
            return status, payload, {"Retry-After": behaviour.retry_after or "1"}
        if behaviour.kind == "server_error":
            return _error(behaviour.status, "InternalServerError", "An internal server error occurred.")
        if behaviour.kind == "unauthorized":
            return _error(401, "401", "Access denied due to invalid subscription key or wrong API endpoint.")
        if behaviour.kind == "malformed":
            return 200, b'[{"faceRectangle": {"top": 1, "left"', {}
        if behaviour.kind == "slow":
            time.sleep(behaviour.delay_s)
        assert image is not None
        height, width = image.shape[:2]
        if behaviour.kind == "ok":
            boxes = [(f.left * width, f.top * height, f.width * width, f.height * height) for f in behaviour.faces]
        else:
            boxes = haar_faces(image)
        landmarks = request.query.get("returnFaceLandmarks") == ["true"]
        return 200, [_face_json(box, landmarks) for box in boxes], {}

    def _validate(self, request: ReceivedRequest, body: bytes,
                  image: np.ndarray | None) -> tuple[int, object, dict[str, str]] | None:
        parts = request.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "face" or parts[1] not in API_VERSIONS or parts[2] != "detect":
            return _error(404, "404", "Resource not found")
        query = {name: values[-1] for name, values in request.query.items()}
        if query.get("detectionModel", "detection_01") not in DETECTION_MODELS:
            return _error(400, "BadArgument", "Invalid argument detectionModel.")
        if query.get("recognitionModel", "recognition_01") not in RECOGNITION_MODELS:
            return _error(400, "BadArgument", "Invalid argument recognitionModel.")
        if query.get("returnFaceId", "true") != "false":  # face ids need Limited Access approval
            return _error(403, "InvalidRequest", "Feature is not supported, missing approval for one or more "
                          "of the following features: Identification,Verification.")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/octet-stream":
            return _error(415, "BadArgument", "Invalid Media Type.")
        if len(body) < MIN_BYTES:
            return _error(400, "InvalidImageSize", "Image size is too small.")
        if len(body) > MAX_BYTES:
            return _error(400, "InvalidImageSize", "Image size is too big.")
        if image is None:
            return _error(400, "InvalidImage", "Decoding error, image format unsupported.")
        height, width = image.shape[:2]
        if min(width, height) < MIN_SIDE or max(width, height) > MAX_SIDE:
            return _error(400, "InvalidImageSize", f"Image dimensions {width}x{height} are outside "
                          f"{MIN_SIDE}x{MIN_SIDE} to {MAX_SIDE}x{MAX_SIDE}.")
        return None


def haar_faces(image: np.ndarray) -> list[tuple[float, float, float, float]]:
    """Faces found by OpenCV's frontal-face Haar cascade, largest first (as the service ranks them)."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(MIN_SIDE, MIN_SIDE))
    return sorted((tuple(map(float, box)) for box in found), key=lambda b: b[2] * b[3], reverse=True)


def _face_json(box: tuple[float, float, float, float], landmarks: bool) -> dict:
    left, top, width, height = (round(v) for v in box)
    face: dict = {"faceRectangle": {"top": top, "left": left, "width": width, "height": height}}
    if landmarks:
        face["faceLandmarks"] = {name: {"x": round(left + fx * width, 1), "y": round(top + fy * height, 1)}
                                 for name, (fx, fy) in LANDMARKS.items()}
    return face
