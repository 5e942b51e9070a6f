"""Self-blended pseudo-fakes, after Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended Images" (CVPR 2022).

A real face is blended with a slightly altered copy of itself. The result carries the generic
traces of face swapping (a blending boundary, a colour and sharpness mismatch, a small
misalignment) without any one generator's fingerprint, which helps the classifier generalise to
unseen manipulation methods. Written from the paper's description; none of the authors' code
(non-commercial licence) is used. Works on decoded crops in numpy/OpenCV; BGR in, BGR out.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from realness_tasks.dataset import FaceSet

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
# Five landmarks (eyes, nose, mouth corners) span only the inner face; spreading them out from
# their centre gives a hull that reaches forehead, cheeks and chin like the paper's 68-point hull.
LANDMARK_SPREAD = (2.0, 2.0)   # (horizontal, vertical) factor


@dataclass(frozen=True)
class SelfBlended:
    """A self-blended face and the blending mask that made it."""

    image: np.ndarray   # uint8, the input's shape
    mask: np.ndarray    # float32 H x W: weight of the altered copy in each pixel (ratio included)


def face_mask(height: int, width: int, landmarks: np.ndarray | None, box: np.ndarray) -> np.ndarray:
    """Binary face region: the hull of spread landmarks, else the ellipse inscribed in the face box.

    ``box`` is the detector's box (x, y, w, h) in crop pixels.
    """
    mask = np.zeros((height, width), np.float32)
    if landmarks is not None:
        points = np.asarray(landmarks, np.float64).reshape(-1, 2)
        centre = points.mean(axis=0)
        spread = centre + (points - centre) * np.array(LANDMARK_SPREAD)
        spread[:, 0] = np.clip(spread[:, 0], 0, width - 1)
        spread[:, 1] = np.clip(spread[:, 1], 0, height - 1)
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(spread).astype(np.int32)), 1.0)
    if mask.sum() < 0.01 * height * width:  # no landmarks, or landmarks too close together to be a face
        mask[:] = 0
        x, y, w, h = (float(v) for v in box)
        centre = (int(round(x + w / 2)), int(round(y + h / 2)))
        cv2.ellipse(mask, centre, (max(1, int(w * 0.45)), max(1, int(h * 0.5))), 0, 0, 360, 1.0, -1)
    return mask


def deform_and_blur(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Elastically deform the mask's outline, then soften it with two Gaussian blurs of random size."""
    h, w = mask.shape
    sigma = max(2.0, min(h, w) * 0.06)
    alpha = min(h, w) * rng.uniform(0.03, 0.08)
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dx *= alpha / (np.abs(dx).max() + 1e-6)
    dy *= alpha / (np.abs(dy).max() + 1e-6)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    deformed = cv2.remap(mask, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    for _ in range(2):
        k = 2 * int(rng.integers(1, max(2, min(h, w) // 12))) + 1
        deformed = cv2.GaussianBlur(deformed, (k, k), 0)
    return np.clip(deformed, 0.0, 1.0)


def alter_copy(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The source copy: colour jitter, a frequency change, and a 3-5 % rescale and shift."""
    out = image.astype(np.float32)
    out += rng.uniform(-20, 20, 3).astype(np.float32)                       # RGB shift
    hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180                  # hue (OpenCV hue is 0..179)
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.85, 1.15), 0, 255)    # saturation
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    contrast, brightness = rng.uniform(0.85, 1.15), rng.uniform(-20, 20)
    out = (out - out.mean()) * contrast + out.mean() + brightness
    out = np.clip(out, 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    if rng.random() < 0.5:                                                  # down- then up-sampling
        factor = rng.uniform(0.35, 0.7)
        small = cv2.resize(out, (max(1, int(w * factor)), max(1, int(h * factor))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    else:                                                                   # sharpening (unsharp mask)
        amount = rng.uniform(0.5, 1.5)
        out = cv2.addWeighted(out, 1 + amount, cv2.GaussianBlur(out, (0, 0), 1.5), -amount, 0)
    sx, sy = 1 + rng.uniform(-0.05, 0.05, 2)
    shift = rng.uniform(-0.04, 0.04, 2) * (w, h)
    matrix = np.array([[sx, 0, (1 - sx) * w / 2 + shift[0]], [0, sy, (1 - sy) * h / 2 + shift[1]]], np.float32)
    return cv2.warpAffine(out, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(image: np.ndarray, landmarks: np.ndarray | None, box: np.ndarray, rng: np.random.Generator,
               ratio: float | None = None) -> SelfBlended:
    """Blend an altered copy of ``image`` into its own face region; outside the mask the image is unchanged."""
    h, w = image.shape[:2]
    source = alter_copy(image, rng)
    ratio = float(rng.choice(BLEND_RATIOS)) if ratio is None else ratio
    mask = deform_and_blur(face_mask(h, w, landmarks, box), rng) * np.float32(ratio)
    weight = mask[..., None]
    blended = source.astype(np.float32) * weight + image.astype(np.float32) * (1 - weight)
    return SelfBlended(np.clip(np.round(blended), 0, 255).astype(np.uint8), mask)


@dataclass(frozen=True)
class PseudoFakeMaker:
    """Makes self-blended FAKE crops from a set of real faces, a new one on every draw.

    Training asks for one per real face per epoch, so the classifier never sees the same
    pseudo-fake twice. ``make(i, draw)`` is deterministic for ``(seed, draw)``: a seeded run
    reproduces its pseudo-fakes. Each is JPEG-encoded like the stored crops; a pseudo-fake without
    JPEG artefacts would teach "no artefacts = fake".
    """

    real: FaceSet
    seed: int
    jpeg_quality: int

    def __len__(self) -> int:
        return len(self.real)

    def make(self, index: int, draw: int) -> bytes:
        """A self-blended fake made from real face ``index``, as JPEG; each ``draw`` gives another, reproducibly."""
        rng = np.random.default_rng([self.seed, draw])
        image = cv2.imdecode(np.frombuffer(self.real.jpegs[index], np.uint8), cv2.IMREAD_COLOR)
        blended = self_blend(image, self.real.landmarks[index], self.real.boxes[index], rng)
        ok, encoded = cv2.imencode(".jpg", blended.image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a self-blended face")
        return encoded.tobytes()
