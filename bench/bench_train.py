"""Training throughput (images per second) of the classifier, frozen-backbone and fine-tuning phases.

Runs the real training input pipeline (``augment.pipeline``: decode_crops, augmentation, batching)
and ``model.fit`` on face crops cut from the sample photos, for a few steps per phase after one
warm-up epoch (which traces and compiles the step). The input pipeline alone is timed too, to
show whether decoding and augmentation keep up with the model. Backbones: the pretrained
EfficientNet-Lite0 default, and EfficientNetB0 (random weights when Keras' ImageNet file is not
cached: the same cost per step).

    python -m bench.bench_train                          # both backbones, 224 and 128 px, batch 32, 8 timed steps
    python -m bench.bench_train --sizes 224 --batch 16 --steps 4
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from realness_tasks.settings import BACKBONES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def crops(count: int) -> list[bytes]:
    """``count`` 224 px JPEG face crops: the sample photos' faces with small shifts."""
    from realness_tasks import samples
    from realness_tasks.faces import crop_face, encode_jpeg
    from realness_tasks.settings import CropSettings

    rng = np.random.default_rng(0)
    photos = samples.sample_photos()
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        x, y, w, h = photo.face_box
        box = (x + int(rng.integers(-6, 7)), y + int(rng.integers(-6, 7)), w, h)
        out.append(encode_jpeg(crop_face(photo.image, box, CropSettings()), 92))
    return out


def pipeline_rate(data, batches: int, batch_size: int) -> float:
    iterator = iter(data)
    next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * batch_size / (time.perf_counter() - started)


def fit_rate(model, data, steps: int, batch_size: int, class_weight: dict) -> float:
    """Images per second of ``fit`` over ``steps`` steps, after a one-step warm-up epoch that compiles."""
    model.fit(data, epochs=1, steps_per_epoch=1, class_weight=class_weight, shuffle=False, verbose=0)
    started = time.perf_counter()
    model.fit(data, epochs=1, steps_per_epoch=steps, class_weight=class_weight, shuffle=False, verbose=0)
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 128])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per phase")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    args = parser.parse_args()

    import tensorflow as tf

    from realness_tasks.augment import pipeline
    from realness_tasks.dataset import class_weights
    from realness_tasks.model import (BACKBONE_NAME, BackboneUnavailable, build_classifier, calibrate_batchnorm,
                                      compile_classifier, decode_crops, set_backbone_trainable)
    from realness_tasks.settings import TrainingSettings

    jpegs = crops(args.batch * 4)
    labels = np.arange(len(jpegs)) % 2
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, TensorFlow {tf.__version__}, "
          f"batch {args.batch}, {args.steps} timed steps per phase")
    print("| backbone | weights | size | input pipeline img/s | frozen backbone img/s | fine-tuning img/s |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as cache:
        for backbone, size in ((b, s) for b in args.backbones for s in args.sizes):
            data = pipeline(jpegs, labels, size, args.batch, train=True, seed=0)
            settings = TrainingSettings(backbone=backbone, image_size=size, seed=0)
            try:
                model, origin = build_classifier(settings, Path(cache))
            except BackboneUnavailable:
                model, origin = build_classifier(replace(settings, random_init=True), Path(cache))
                calibrate_batchnorm(model.get_layer(BACKBONE_NAME), [decode_crops(jpegs[:args.batch], size)])
            rates = [pipeline_rate(data, args.steps, args.batch)]
            for trainable, learning_rate in ((False, 1e-3), (True, 1e-4)):
                set_backbone_trainable(model, trainable)
                compile_classifier(model, learning_rate)
                rates.append(fit_rate(model, data, args.steps, args.batch, class_weights(labels)))
            print(f"| {backbone} | {origin.weights.split(' ')[0]} | {size} | " + " | ".join(f"{r:.1f}" for r in rates)
                  + " |", flush=True)


if __name__ == "__main__":
    main()
