"""Faces per second of Keras ``predict`` and both scoring engines (fp32 and int8 TFLite), side by side.

Speed: the classifier is the production architecture (``realness_tasks.model.build_classifier``:
the pretrained EfficientNet-Lite0 default, or ``--backbone efficientnet_b0`` with random weights,
which cost the same as trained ones, + the dense head); outputs are spread over (0, 1). The
engines score the same batches, their passes interleaved so that load from other processes hits
them alike; each figure is the best of ``--repeats`` passes. The last columns are the largest
probability difference between Keras and each engine on these (uniform noise) inputs; the int8
export is calibrated on the same kind of noise, so that column says nothing about quality. Crop
decoding, which scoring does before the engine, is timed apart: ``decode_crops`` eagerly and
traced as scoring runs it.

Quality: ``--model-version V`` instead scores a registered model's own held-out faces (the test
videos its manifest.json lists, read from the store and database the REALNESS_* variables name)
with Keras and both engines, and prints each engine's largest difference from Keras and its face
and video AUC. The int8 file comes from the version folder, or is exported (calibrated on the
version's training faces) when the version predates int8 exports.

    python -m bench.bench_inference                      # 224 px, batches 1, 8, 32, 2 engine threads
    python -m bench.bench_inference --faces 128 --batch-sizes 1 16 --threads 4
    REALNESS_STORE_URI=... REALNESS_DATABASE_URL=... python -m bench.bench_inference --model-version 20250301T...
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from realness_tasks.settings import BACKBONES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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


def speed(args) -> None:
    """The speed table: Keras predict, the fp32 and the int8 engine on the same inputs."""
    import cv2
    import tensorflow as tf

    from realness_tasks.inference import ENGINE_FILES, TFLiteScorer, export_tflite
    from realness_tasks.model import build_classifier, crop_decoder, decode_crops
    from realness_tasks.settings import TrainingSettings

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as weights_cache:  # B0 random (no ImageNet file here): same cost per face
        settings = TrainingSettings(backbone=args.backbone, image_size=args.image_size, seed=0,
                                    random_init=args.backbone == "efficientnet_b0")
        classifier, origin = build_classifier(settings, Path(weights_cache))
    model = spread_outputs(classifier, rng)
    calibration = rng.uniform(0, 255, (64, args.image_size, args.image_size, 3)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        export_s, sizes, engines = {}, {}, {"predict": lambda b: model.predict(b, batch_size=len(b), verbose=0)}
        for engine, name in ENGINE_FILES.items():
            started = time.perf_counter()
            export_tflite(model, Path(tmp) / name, engine, calibration if engine == "int8" else None)
            export_s[engine], sizes[engine] = time.perf_counter() - started, (Path(tmp) / name).stat().st_size
            engines[engine] = TFLiteScorer(Path(tmp) / name, threads=args.threads).predict

        print(f"{origin.name} classifier ({origin.weights[:40]}), {args.image_size} px; TensorFlow {tf.__version__}, "
              f"{os.cpu_count()} CPUs, engines on {args.threads} threads; "
              + ", ".join(f"{e} export {export_s[e]:.1f} s, {sizes[e] / 1e6:.1f} MB" for e in ENGINE_FILES))
        print(f"{'batch':>5} | {'Keras predict':>13} | {'fp32 TFLite':>11} | {'int8 TFLite':>11} | "
              f"{'int8/fp32':>9} | {'fp32 |diff|':>11} | {'int8 |diff|':>11}")
        print("-" * 92)
        for batch_size in args.batch_sizes:
            count = -(-args.faces // batch_size) * batch_size
            images = rng.uniform(0, 255, (count, args.image_size, args.image_size, 3)).astype(np.float32)
            rates = faces_per_second(engines, images, batch_size, args.repeats)
            (keras_rate, keras_out), (fp32_rate, fp32_out), (int8_rate, int8_out) = rates.values()
            print(f"{batch_size:>5} | {keras_rate:>9.1f} f/s | {fp32_rate:>7.1f} f/s | {int8_rate:>7.1f} f/s | "
                  f"{int8_rate / fp32_rate:>8.2f}x | {np.max(np.abs(keras_out - fp32_out)):>11.2e} | "
                  f"{np.max(np.abs(keras_out - int8_out)):>11.2e}")

    crop = rng.integers(0, 255, (args.image_size, args.image_size, 3), dtype=np.uint8)
    jpegs = [cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()] * 64
    decoders = {"eager": lambda b: decode_crops(b, args.image_size).numpy(), "traced": crop_decoder(args.image_size)}
    decoded = faces_per_second(decoders, jpegs, 64, args.repeats)
    print(f"decode_crops, JPEG -> {args.image_size} px float32, batches of 64: "
          + ", ".join(f"{name} {rate:.0f} faces/s" for name, (rate, _) in decoded.items()))


def quality(version: str, threads: int) -> None:
    """Each engine against Keras on a registered model's held-out test faces."""
    import json

    import keras

    from realness_tasks import dataset as ds
    from realness_tasks import labels
    from realness_tasks import registry
    from realness_tasks.config import RealnessConfig
    from realness_tasks.db import Database
    from realness_tasks.inference import ENGINE_FILES, TFLiteScorer, export_tflite, score_crops
    from realness_tasks.model import predict_probabilities
    from realness_tasks.storage import open_store
    from realness_tasks.version_folder import calibration_faces, engine_measurement

    cfg = RealnessConfig.from_env()
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    db = Database(cfg.resolved_database_url)
    try:
        manifest = json.loads(store.get_bytes(registry.artefact_key(cfg, version, "manifest.json")))
        metrics = json.loads(store.get_bytes(registry.artefact_key(cfg, version, "metrics.json")))
        faces = ds.read_faces(cfg, store, manifest["shards"], labels.for_training(db)).faces
    finally:
        db.dispose()
    split = {name: set(part["videos"]) for name, part in manifest["splits"].items()}
    test, train = (faces.take([i for i, v in enumerate(faces.video_ids) if v in split[name]]) for name in ("test", "train"))
    with tempfile.TemporaryDirectory() as tmp:
        model = keras.models.load_model(registry.fetch_artefact(cfg, store, version, "model.keras", Path(tmp)),
                                        compile=False)
        size = model.inputs[0].shape[1]
        keras_scores = np.array(predict_probabilities(model, test.jpegs, size))
        available = set(metrics.get("engines") or registry.FP32_ONLY)  # a version before int8 has model.tflite
        print(f"model {version}, {size} px: {len(test)} held-out faces in {len(split['test'])} videos, "
              f"threshold {metrics['threshold']:.4f}")
        print(f"{'engine':>6} | {'MB':>5} | {'max |diff| vs Keras':>19} | {'face AUC':>8} | {'video AUC':>9} | "
              f"{'Keras video AUC':>15}")
        print("-" * 78)
        for engine, name in ENGINE_FILES.items():
            if engine in available:
                path = registry.fetch_artefact(cfg, store, version, name, Path(tmp))
            else:
                path = Path(tmp) / name
                export_tflite(model, path, engine, calibration_faces(train, size, manifest["seed"]))
            scores = score_crops(TFLiteScorer(path, threads=threads), test.jpegs)
            m = engine_measurement(test, keras_scores, scores, metrics["threshold"], cfg.scoring)
            print(f"{engine:>6} | {path.stat().st_size / 1e6:>5.1f} | {m['max_abs_difference']:>19.2e} | "
                  f"{m['face_auc']:>8.4f} | {m['video_auc']:>9.4f} | {m['keras_video_auc']:>15.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--faces", type=int, default=64, help="faces per pass (rounded up to a whole batch)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=2, help="TFLite engine threads")
    parser.add_argument("--backbone", default="efficientnet_lite0", choices=BACKBONES)
    parser.add_argument("--repeats", type=int, default=3, help="passes per measurement; the best counts")
    parser.add_argument("--model-version", help="measure this registered model's engines on its held-out faces "
                                                "instead of timing (store and database from REALNESS_*)")
    args = parser.parse_args()
    if args.model_version:
        quality(args.model_version, args.threads)
    else:
        speed(args)


if __name__ == "__main__":
    main()
