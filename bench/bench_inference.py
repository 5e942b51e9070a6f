"""Faces per second of Keras ``predict`` against the TFLite engine, on the same faces, side by side.

The classifier is the production architecture (``realness_tasks.model.build_classifier``: the
pretrained EfficientNet-Lite0 default, or ``--backbone efficientnet_b0`` with random weights, which
cost the same as trained ones, + the dense head); outputs are spread over (0, 1). The
engines score the same batches, their passes interleaved so that load from other processes hits
them alike; each figure is the best of ``--repeats`` passes. The last column is the largest
probability difference between Keras and TFLite. Crop decoding, which scoring does before the
engine, is timed apart: ``decode_crops`` eagerly and traced as scoring runs it.

    python bench/bench_inference.py                      # 224 px, batches 1, 8, 32, 64, 2 engine threads
    python bench/bench_inference.py --faces 128 --batch-sizes 1 16 --threads 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from realness_tasks.config import BACKBONES  # noqa: E402


def faces_per_second(engines: dict[str, Callable], inputs, batch_size: int, repeats: int
                     ) -> dict[str, tuple[float, np.ndarray]]:
    """Per engine: best rate over ``repeats`` interleaved passes (after a warm-up batch), and its outputs."""
    best = {name: float("inf") for name in engines}
    outputs: dict[str, np.ndarray] = {}
    for score in engines.values():
        score(inputs[:batch_size])
    for _ in range(repeats):
        for name, score in engines.items():
            started = time.perf_counter()
            outputs[name] = np.concatenate([score(inputs[i:i + batch_size]).reshape(-1)
                                            for i in range(0, len(inputs), batch_size)])
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: (len(inputs) / best[name], outputs[name]) for name in engines}


def spread_outputs(model, rng: np.random.Generator):
    """Rescale the last layer so random-weight outputs spread over (0, 1) instead of sitting at 0.5.

    Otherwise both engines print 0.5 for every face and the difference column proves nothing.
    """
    import keras

    size = model.inputs[0].shape[1]
    features = np.asarray(keras.Model(model.input, model.get_layer("dense_128").output)(
        rng.uniform(0, 255, (16, size, size, 3)).astype(np.float32)))
    head = model.get_layer("fake_probability")
    weights = rng.normal(size=head.get_weights()[0].shape)
    weights *= 2.0 / (features @ weights).std()
    head.set_weights([weights.astype(np.float32), np.array([-float((features @ weights).mean())], np.float32)])
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--faces", type=int, default=64, help="faces per pass (rounded up to a whole batch)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--threads", type=int, default=2, help="TFLite engine threads")
    parser.add_argument("--backbone", default="efficientnet_lite0", choices=BACKBONES)
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement; the best counts")
    args = parser.parse_args()

    import cv2
    import tensorflow as tf

    from realness_tasks.config import TrainingSettings
    from realness_tasks.inference import TFLiteScorer, export_tflite
    from realness_tasks.model import build_classifier, decode_crops
    from realness_tasks.scoring import crop_decoder

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as weights_cache:  # B0 random (no ImageNet file here): same cost per face
        settings = TrainingSettings(backbone=args.backbone, image_size=args.image_size, seed=0,
                                    random_init=args.backbone == "efficientnet_b0")
        classifier, origin = build_classifier(settings, Path(weights_cache))
    model = spread_outputs(classifier, rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        started = time.perf_counter()
        export_tflite(model, path)
        export_s = time.perf_counter() - started
        engine = TFLiteScorer(path, threads=args.threads)
        engines = {"predict": lambda b: model.predict(b, batch_size=len(b), verbose=0),
                   "call": lambda b: np.asarray(model(b, training=False)),
                   "tflite": engine.predict}

        print(f"{origin.name} classifier ({origin.weights[:40]}), {args.image_size} px; TensorFlow {tf.__version__}, "
              f"{os.cpu_count()} CPUs, TFLite {args.threads} threads; TFLite export took {export_s:.1f} s")
        print(f"{'batch':>5} | {'Keras predict':>13} | {'Keras call':>11} | {'TFLite':>10} | "
              f"{'vs predict':>10} | {'max |diff|':>10}")
        print("-" * 76)
        for batch_size in args.batch_sizes:
            count = -(-args.faces // batch_size) * batch_size
            images = rng.uniform(0, 255, (count, args.image_size, args.image_size, 3)).astype(np.float32)
            rates = faces_per_second(engines, images, batch_size, args.repeats)
            (keras_rate, keras_out), (call_rate, _), (tflite_rate, tflite_out) = rates.values()
            print(f"{batch_size:>5} | {keras_rate:>9.1f} f/s | {call_rate:>7.1f} f/s | {tflite_rate:>6.1f} f/s | "
                  f"{tflite_rate / keras_rate:>9.1f}x | {np.max(np.abs(keras_out - tflite_out)):>10.2e}")

    crop = rng.integers(0, 255, (args.image_size, args.image_size, 3), dtype=np.uint8)
    jpegs = [cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()] * 64
    decoders = {"eager": lambda b: decode_crops(b, args.image_size).numpy(), "traced": crop_decoder(args.image_size)}
    decoded = faces_per_second(decoders, jpegs, 64, args.repeats)
    print(f"decode_crops, JPEG -> {args.image_size} px float32, batches of 64: "
          + ", ".join(f"{name} {rate:.0f} faces/s" for name, (rate, _) in decoded.items()))


if __name__ == "__main__":
    main()
