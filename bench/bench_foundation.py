"""Faces per second of the foundation branch (CLIP ViT-B/16 int8 on ONNX Runtime), beside the EfficientNet engine.

Scoring a face with the default model costs the TFLite EfficientNet engine plus, for a face whose
features are not yet kept, one CLIP encoder call (JPEG decode, 224 px, ONNX Runtime). This times
both on 224 px JPEG crops of the sample photographs (``realness_tasks.samples``), the encoder one
face per call as the code runs it, and the engine in its default batch; each figure is the best of
``--repeats`` passes. A face whose features are already kept (a rescore by a new champion) costs the
engine and a Parquet read only.

    python -m bench.bench_foundation                 # 2 threads, 64 faces, 3 passes
    python -m bench.bench_foundation --threads 1 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def sample_jpegs(count: int) -> list[bytes]:
    """``count`` 224 px face crops of the sample photographs, each a little moved so no two are equal."""
    import numpy as np

    from realness_tasks.faces import crop_face, encode_jpeg
    from realness_tasks.samples import sample_photos
    from realness_tasks.settings import CropSettings

    photos = sample_photos()
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        x, y, w, h = photo.face_box
        dx, dy = (int(v) for v in rng.integers(-6, 7, 2))
        out.append(encode_jpeg(crop_face(photo.image, (x + dx, y + dy, w, h), CropSettings()), 92))
    return out


def best_rate(run, faces: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return faces / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import keras

    from realness_tasks.foundation import load_encoder
    from realness_tasks.inference import TFLiteScorer, export_tflite, score_crops
    from realness_tasks.model import build_classifier
    from realness_tasks.settings import TrainingSettings

    jpegs = sample_jpegs(args.faces)
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = build_classifier(TrainingSettings(), Path(tmp) / "weights")
        engine_file = Path(tmp) / "model.tflite"
        export_tflite(model, engine_file)
        keras.backend.clear_session()
        print(f"{args.faces} faces of 224 px, best of {args.repeats} passes, load average {os.getloadavg()[0]:.1f}")
        print("| threads | EfficientNet engine (fp32, batch 8) faces/s | CLIP encoder faces/s | both, per new face |")
        print("|---:|---:|---:|---:|")
        for threads in args.threads:
            engine = TFLiteScorer(engine_file, threads=threads)
            encoder = load_encoder(None, threads)
            engine_rate = best_rate(lambda: score_crops(engine, jpegs), len(jpegs), args.repeats)
            encoder_rate = best_rate(lambda: encoder.embed_jpegs(jpegs), len(jpegs), args.repeats)
            both = 1 / (1 / engine_rate + 1 / encoder_rate)
            print(f"| {threads} | {engine_rate:.1f} | {encoder_rate:.1f} | {both:.1f} |")


if __name__ == "__main__":
    main()
