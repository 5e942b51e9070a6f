"""Seconds per sampled frame of ingest (decode, detect, crop + JPEG, Parquet) and the recall cost of downscaling.

For each resolution it writes face videos from the sample photos (30 fps, faces of 80 to 240 px
where the frame is tall enough), samples one frame per second the way ingest does (every frame
grabbed, the sampled ones retrieved), then runs MTCNN twice: on frames downscaled to
``detect_max_side`` (the configured path) and on full-resolution frames. Recall is the share of
full-resolution faces of at least ``--min-face`` px (box height) that the downscaled path also
finds (IoU >= 0.5).

    python -m bench.bench_ingest [--frames 16] [--resolutions 640x360,1280x720,1920x1080] [--ext .mp4]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2

from realness_tasks import samples
from realness_tasks.settings import CropSettings, DetectionSettings, SamplingSettings
from realness_tasks.faces import (
    FrameFaces,
    MtcnnDetector,
    crop_face,
    dominant_faces,
    encode_jpeg,
    iou,
)
from realness_tasks.frames import Frame, FrameSampler, probe_video
from realness_tasks.shards import FaceRow, rows_to_table, table_to_bytes

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

FPS = 30.0
FACE_HEIGHTS = (80, 110, 160, 240)  # px at full resolution, from the recall threshold up (where the frame allows)
MAX_HEIGHT_FRACTION = 0.95
MATCH_IOU = 0.5


@dataclass
class Timing:
    detect_s: float = 0.0
    crop_s: float = 0.0
    parquet_s: float = 0.0
    faces: int = 0


def make_videos(directory: Path, size: tuple[int, int], frames_wanted: int, ext: str) -> list[Path]:
    """One video per sample photo, its face scaled to one of ``FACE_HEIGHTS`` (capped by the frame height).

    One sampled frame per second; ``frames_wanted`` sampled frames over all the videos.
    """
    photos = sorted(samples.sample_photos(), key=lambda p: p.face_box[3])  # the biggest faces get the biggest sizes
    per_video = max(1, -(-frames_wanted // len(photos)))
    paths = []
    for i, (photo, face_height) in enumerate(zip(photos, FACE_HEIGHTS)):
        fraction = min(MAX_HEIGHT_FRACTION, face_height * photo.image.shape[0] / (photo.face_box[3] * size[1]))
        path = directory / f"{size[1]}p_{photo.name}{ext}"
        samples.face_video(path, photo.image, seconds=per_video, fps=FPS, size=size, height_fraction=fraction, seed=i)
        paths.append(path)
    return paths


def decode(paths: list[Path], sampling: SamplingSettings, frames_wanted: int) -> tuple[list[Frame], float]:
    frames: list[Frame] = []
    started = time.perf_counter()
    for path in paths:
        frames.extend(FrameSampler(path, probe_video(path, sampling), sampling))
    return frames[:frames_wanted], time.perf_counter() - started


def run_detector(detector: MtcnnDetector, frames: list[Frame], crop: CropSettings) -> tuple[list[FrameFaces], Timing]:
    timing = Timing()
    detector.detect([f.image for f in frames[:detector.settings.batch_size]])  # warm-up: first use of each input shape
    found: list[FrameFaces] = []
    started = time.perf_counter()
    for start in range(0, len(frames), detector.settings.batch_size):
        found.extend(detector.detect([f.image for f in frames[start:start + detector.settings.batch_size]]))
    timing.detect_s = time.perf_counter() - started

    started = time.perf_counter()
    crops = []
    for frame, faces in zip(frames, found):
        for face_index, face in enumerate(dominant_faces(faces.detections, detector.settings.max_faces_per_frame)):
            jpeg = encode_jpeg(crop_face(frame.image, face.box, crop), crop.jpeg_quality)
            crops.append((frame, face_index, face, jpeg))
    timing.crop_s = time.perf_counter() - started
    timing.faces = len(crops)

    started = time.perf_counter()
    rows = [FaceRow(video_id="bench", source_uri="file:///bench.mp4", frame_index=frame.index,
                    timestamp_s=frame.timestamp_s, face_index=face_index, detector=face.detector,
                    confidence=face.confidence, box_x=int(face.box[0]), box_y=int(face.box[1]),
                    box_w=int(face.box[2]), box_h=int(face.box[3]), frame_width=frame.image.shape[1],
                    frame_height=frame.image.shape[0], landmarks=list(face.landmarks) if face.landmarks else None,
                    crop_jpeg=jpeg, crop_width=crop.size, crop_height=crop.size, crop_margin=crop.margin, label=None,
                    azure_status=None, run_id="bench")
            for frame, face_index, face, jpeg in crops]
    table_to_bytes(rows_to_table(rows))
    timing.parquet_s = time.perf_counter() - started
    return found, timing


def recall(reference: list[FrameFaces], candidate: list[FrameFaces], min_face: int) -> tuple[int, int]:
    """(reference faces of at least ``min_face`` px found by the candidate, all such reference faces)."""
    hits = total = 0
    for ref, cand in zip(reference, candidate):
        for face in ref.detections:
            if face.box[3] < min_face:
                continue
            total += 1
            hits += any(iou(face.box, other.box) >= MATCH_IOU for other in cand.detections)
    return hits, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="sampled frames per resolution")
    parser.add_argument("--resolutions", default="640x360,1280x720,1920x1080")
    parser.add_argument("--ext", default=".mp4", choices=sorted(samples.CODECS),
                        help="container of the generated videos (its codec: realness_tasks.samples.CODECS)")
    parser.add_argument("--min-face", type=int, default=80,
                        help="smallest face (box height, full-resolution px) counted in recall")
    args = parser.parse_args()

    detection = DetectionSettings()
    sampling = SamplingSettings(every_seconds=1.0)
    crop = CropSettings()
    downscaled = MtcnnDetector(detection)
    full = MtcnnDetector(replace(detection, detect_max_side=1_000_000))
    table_to_bytes(rows_to_table([]))  # warm-up: pyarrow's first write loads its codecs

    print(f"# ingest cost per sampled frame ({platform.machine()}, {os.cpu_count()} cores, OpenCV {cv2.__version__}, "
          f"{args.ext} {samples.CODECS[args.ext]} {FPS:.0f} fps, one frame per second sampled)\n")
    print(f"detect_max_side={detection.detect_max_side}, min_face_size={detection.min_face_size}, "
          f"batch_size={detection.batch_size}, crop {crop.size}px q{crop.jpeg_quality}\n")
    print("| resolution | detection | frames | decode s/frame | detect s/frame | crop+JPEG s/frame | Parquet s/frame "
          f"| total s/frame | faces | recall (faces >= {args.min_face} px) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for resolution in args.resolutions.split(","):
            width, height = (int(v) for v in resolution.split("x"))
            paths = make_videos(Path(tmp), (width, height), args.frames, args.ext)
            frames, decode_s = decode(paths, sampling, args.frames)
            n = len(frames)
            results = {}
            for label, detector in (("downscaled", downscaled), ("full-res", full)):
                results[label] = run_detector(detector, frames, crop)
            for label, (found, timing) in results.items():
                hits, total = recall(results["full-res"][0], found, args.min_face)
                total_s = decode_s + timing.detect_s + timing.crop_s + timing.parquet_s
                shown = f"{hits}/{total} = {hits / total:.0%}" if total else "no such faces"
                shown = "reference" if label == "full-res" else shown
                name = f"{label} ({detection.detect_max_side})" if label == "downscaled" else label
                print(f"| {height}p | {name} | {n} | {decode_s / n:.3f} | {timing.detect_s / n:.3f} | "
                      f"{timing.crop_s / n:.4f} | {timing.parquet_s / n:.4f} | **{total_s / n:.3f}** | "
                      f"{timing.faces} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
