"""Sample videos made from real face photographs, for the demo, the tests and the benchmarks.

The photographs in ``sample_faces/`` come from PyPI packages (scikit-image's ``astronaut.png``,
public domain; the ``face_recognition`` sdist's test images, MIT). ``faces.json`` holds each
photo's face box as MTCNN finds it. Fakes are made the way face-swap tools make them: another
person's face is colour-matched, warped onto the box and blended in through a feathered mask.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

SAMPLE_DIR = Path(__file__).resolve().parent / "sample_faces"
CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v", ".webm": "VP80"}


@dataclass(frozen=True)
class SamplePhoto:
    """One of the packaged photographs and where its face is."""

    name: str
    image: np.ndarray  # BGR
    face_box: tuple[int, int, int, int]  # x, y, w, h


@dataclass
class SampleVideo:
    """A generated sample video, the frames that show a face, and its label."""

    path: Path
    fps: float
    frame_count: int
    size: tuple[int, int]  # width, height
    face_frames: set[int] = field(default_factory=set)
    label: str | None = None


def sample_photos() -> list[SamplePhoto]:
    """The packaged photographs of real faces, sorted by file name."""
    boxes = json.loads((SAMPLE_DIR / "faces.json").read_text())
    return [SamplePhoto(Path(name).stem, cv2.imread(str(SAMPLE_DIR / name)), tuple(box))
            for name, box in sorted(boxes.items())]


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float, size: tuple[int, int]) -> int:
    """Encode BGR frames of ``size`` (w, h) with a codec matching the extension; returns frames written."""
    fourcc = cv2.VideoWriter_fourcc(*CODECS.get(path.suffix.lower(), "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} video here")
    count = 0
    for frame in frames:
        writer.write(frame)
        count += 1
    writer.release()
    return count


def write_keyframed_video(path: Path, frames: Iterable[np.ndarray], fps: float, size: tuple[int, int],
                          keyframe_every: int) -> int:
    """Encode BGR frames as H.264 (PyAV's libx264, B-frames on) with a keyframe exactly every
    ``keyframe_every`` frames (OpenCV's writers cannot set it); returns frames written."""
    from fractions import Fraction

    import av

    count = 0
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = keyframe_every
        stream.options = {"preset": "veryfast", "sc_threshold": "0", "keyint_min": str(keyframe_every)}
        for frame in frames:
            output.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
            count += 1
        output.mux(stream.encode())
    return count


def background(size: tuple[int, int], seed: int) -> np.ndarray:
    """A faceless, textured background: a colour gradient with a few rectangles."""
    w, h = size
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    img = np.stack([base[c] + 40 * np.sin(xs / w * (c + 1) * 3.0 + ys / h * 2.0) for c in range(3)], axis=-1)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (x0, y0), (x0 + w // 6, y0 + h // 8), colour, -1)
    return img


def place(frame: np.ndarray, photo: np.ndarray, height_fraction: float, offset: tuple[int, int]) -> None:
    """Paste ``photo`` scaled to a fraction of the frame height, centred plus ``offset``, in place."""
    fh, fw = frame.shape[:2]
    scale = height_fraction * fh / photo.shape[0]
    ph, pw = max(1, int(photo.shape[0] * scale)), max(1, int(photo.shape[1] * scale))
    pw, ph = min(pw, fw), min(ph, fh)
    resized = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
    x = int(np.clip((fw - pw) // 2 + offset[0], 0, fw - pw))
    y = int(np.clip((fh - ph) // 2 + offset[1], 0, fh - ph))
    frame[y:y + ph, x:x + pw] = resized


def face_video(path: Path, photo: np.ndarray | None, *, seconds: float = 2.0, fps: float = 10.0,
               size: tuple[int, int] = (640, 360), face_between: tuple[float, float] | None = None,
               height_fraction: float = 0.9, seed: int = 0, label: str | None = None,
               keyframe_every: int | None = None) -> SampleVideo:
    """A video of ``photo`` drifting slowly over a background.

    ``face_between=(start_s, end_s)`` limits the face to that span; other frames show only the
    background, so tests can check that faces are found exactly where they are. ``keyframe_every``
    encodes H.264 with that keyframe interval (``write_keyframed_video``) instead of OpenCV's codec.
    """
    n = int(round(seconds * fps))
    bg = background(size, seed)
    face_frames: set[int] = set()

    def frames() -> Iterable[np.ndarray]:
        for i in range(n):
            frame = bg.copy()
            t = i / fps
            if photo is not None and (face_between is None or face_between[0] <= t < face_between[1]):
                drift = int(12 * np.sin(i / max(n, 1) * 2 * np.pi))
                place(frame, photo, height_fraction, (drift, 0))
                face_frames.add(i)
            yield frame

    written = (write_video(path, frames(), fps, size) if keyframe_every is None
               else write_keyframed_video(path, frames(), fps, size, keyframe_every))
    return SampleVideo(path, fps, written, size, face_frames, label)


def face_swap(target: SamplePhoto, source: SamplePhoto, seed: int = 0,
              colour_cast: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Blend ``source``'s face into ``target``'s face box (a crude face swap, with its blending seam).

    ``colour_cast`` (BGR) is added to the whole face box after blending: the skin-tone mismatch of a
    badly colour-matched swap, a cue a small model learns in a few steps.
    """
    rng = np.random.default_rng(seed)
    out = target.image.copy()
    tx, ty, tw, th = target.face_box
    sx, sy, sw, sh = source.face_box
    face = cv2.resize(source.image[sy:sy + sh, sx:sx + sw], (tw, th), interpolation=cv2.INTER_LINEAR)
    region = out[ty:ty + th, tx:tx + tw].astype(np.float32)
    face = face.astype(np.float32)
    # Reinhard-style colour transfer: match per-channel mean and spread to the target's skin.
    face = (face - face.mean((0, 1))) / (face.std((0, 1)) + 1e-6) * region.std((0, 1)) + region.mean((0, 1))
    mask = np.zeros((th, tw), np.float32)
    cv2.ellipse(mask, (tw // 2, th // 2), (int(tw * 0.42), int(th * 0.47)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), sigmaX=max(1.0, tw * rng.uniform(0.03, 0.06)))[..., None]
    blended = face * mask + region * (1 - mask) + np.array(colour_cast, np.float32)
    out[ty:ty + th, tx:tx + tw] = np.clip(blended, 0, 255).astype(np.uint8)
    return out


CRUDE_SWAP_CAST = (-30, 0, 60)  # warmer, redder skin than the surrounding face


def labelled_set(directory: Path, *, per_class: int = 4, seconds: float = 2.0, fps: float = 8.0,
                 size: tuple[int, int] = (480, 270), extension: str = ".mp4",
                 colour_cast: tuple[int, int, int] = CRUDE_SWAP_CAST) -> list[SampleVideo]:
    """Real videos of each photo and fake videos where another person's face was swapped in.

    Writes a DFDC-style ``metadata.json`` beside the videos and returns the videos.
    """
    directory.mkdir(parents=True, exist_ok=True)
    photos = sample_photos()
    videos: list[SampleVideo] = []
    for i in range(per_class):
        target = photos[i % len(photos)]
        source = photos[(i + 1 + i // len(photos)) % len(photos)]
        videos.append(face_video(directory / f"real_{i:02d}_{target.name}{extension}", target.image,
                                 seconds=seconds, fps=fps, size=size, seed=i, label="REAL"))
        fake = face_swap(target, source, seed=i, colour_cast=colour_cast)
        videos.append(face_video(directory / f"fake_{i:02d}_{target.name}{extension}", fake,
                                 seconds=seconds, fps=fps, size=size, seed=100 + i, label="FAKE"))
    write_metadata(directory, videos)
    return videos


def write_metadata(directory: Path, videos: Sequence[SampleVideo]) -> None:
    """The videos' labels as a DFDC-style metadata.json in ``directory``."""
    metadata = {v.path.name: {"label": v.label, "split": "train"} for v in videos if v.label}
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=1))
