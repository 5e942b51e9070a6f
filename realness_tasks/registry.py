"""The model registry: versioned model folders in the object store and the champion pointer.

Every trained model gets a folder ``<models_prefix><version>/`` holding the model, its TFLite
exports (one file per scoring engine, named in the record), metrics, dataset manifest, training configuration and plots. ``<models_prefix>champion.json``
names the model that scoring uses; it is replaced with one PUT, so readers see the old champion
or the new one, never a mix. The store is the source of truth; the ``model_versions`` table
mirrors it for queries and dashboards, and :func:`champion` repairs the mirror if a crash left
it behind the pointer. This module alone writes ``model_versions``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database, as_utc
from realness_tasks.inference import ENGINE_FILES
from realness_tasks.settings import ConfigurationError
from realness_tasks.storage import ObjectStore

log = logging.getLogger(__name__)

POINTER_NAME = "champion.json"
RECORD_NAME = "record.json"   # each version's registry record, which an operator's approval promotes
# Every version's files besides its engine files, which its record names (ModelRecord.files).
ARTEFACTS = ("model.keras", "metrics.json", "manifest.json", "training_config.json",
             "roc.png", "confusion_matrix.png", "training_curves.png", "calibration.png")
# What a version registered before int8 exports has: model.tflite alone.
FP32_ONLY = {"fp32": ENGINE_FILES["fp32"]}
# Two AUCs (or F1s) closer than this are a tie: float noise must not decide a promotion.
TIE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class ModelVersion:
    """A registered model as scoring sees it: where it lives, its input size and decision threshold."""

    version: str
    uri: str              # the version folder, e.g. s3://bucket/root/models/<version>/
    image_size: int
    threshold: float      # fake probability at or above which a face is called FAKE
    metrics: dict
    promoted: bool
    engines: dict[str, str] = field(default_factory=lambda: dict(FP32_ONLY))  # engine -> file in the folder
    crop_margin: float | None = None   # the margin of the crops it was trained on (None: registered before it was kept)
    detector: dict | None = None       # realness_tasks.detector.Detector as JSON (None: EfficientNet's raw probability)


@dataclass(frozen=True)
class ModelRecord:
    """Everything the registry stores about one version (the pointer and the table row)."""

    version: str
    created_at: datetime          # UTC, naive (as every timestamp in the database)
    run_id: str
    uri: str
    image_size: int
    threshold: float
    metrics: dict
    dataset_faces: int
    data_cutoff: datetime         # when the training shards were listed: later faces are "new"
    reason: str
    promoted_at: datetime | None = None
    backbone: str | None = None           # efficientnet_lite0 | efficientnet_b0 (None: registered before it was kept)
    backbone_weights: str | None = None   # "imagenet:<file> sha256:<hex>" or "random"
    engines: dict[str, str] | None = None  # scoring engine -> its file in the folder (None: registered before int8)
    crop_margin: float | None = None       # its training crops' margin (None: registered before it was kept)
    detector: dict | None = None           # fusion and calibration (Detector.to_json); None: registered before them

    def model_version(self, promoted: bool) -> ModelVersion:
        return ModelVersion(self.version, self.uri, self.image_size, self.threshold, self.metrics, promoted,
                            dict(self.engines or FP32_ONLY), self.crop_margin, self.detector)

    def files(self) -> tuple[str, ...]:
        """The files of the version folder: the common artefacts and each engine's file."""
        return (*ARTEFACTS, *(self.engines or FP32_ONLY).values())

    def to_json(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        for name in ("created_at", "data_cutoff", "promoted_at"):
            out[name] = out[name].isoformat() if out[name] else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelRecord:
        values = {k: data.get(k) for k in cls.__dataclass_fields__}
        for name in ("created_at", "data_cutoff", "promoted_at"):
            values[name] = as_utc(values[name])
        return cls(**values)


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a candidate becomes champion, and why; ``comparison``: both models' metrics when they were compared."""

    promote: bool
    reason: str
    champion_version: str | None          # the champion the candidate was compared with
    comparison: dict = field(default_factory=dict)


def utc_now() -> datetime:
    """Now as a naive UTC datetime, the form every timestamp in the database and the records has."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def pointer_key(cfg: RealnessConfig) -> str:
    """The store key of the champion pointer that scoring reads."""
    return f"{cfg.models_prefix}{POINTER_NAME}"


def version_prefix(cfg: RealnessConfig, version: str) -> str:
    """The store folder of one model version."""
    return f"{cfg.models_prefix}{version}/"


def new_version(created_at: datetime, fingerprint: str) -> str:
    """``<UTC timestamp>-<short hash>``: sorts by time, and the hash keeps same-second runs apart."""
    digest = hashlib.sha256(f"{created_at.isoformat()}|{fingerprint}".encode()).hexdigest()[:8]
    return f"{created_at:%Y%m%dT%H%M%SZ}-{digest}"


class InvalidPointer(ConfigurationError):
    """``champion.json`` is not a model record (edited by hand, or broken in a copy); scoring cannot guess."""


# What scoring and promotion read from the pointer, with the type each must have.
POINTER_FIELDS = {"version": str, "uri": str, "image_size": int, "threshold": (int, float), "metrics": dict}


def read_pointer(cfg: RealnessConfig, store: ObjectStore) -> ModelRecord | None:
    """The champion's record, None before any promotion; :class:`InvalidPointer` when it cannot be read."""
    key = pointer_key(cfg)
    try:
        data = store.get_bytes(key)
    except KeyError:
        return None
    try:
        return ModelRecord.from_json(_checked_pointer(json.loads(data)))
    except (ValueError, TypeError) as exc:  # not JSON, not UTF-8, a field missing or of the wrong type, a bad date
        raise InvalidPointer(f"{store.uri_for(key)} is not a valid champion pointer ({str(exc)[:200]}): restore it "
                             f"from the champion's {version_prefix(cfg, '<version>')}{RECORD_NAME}, or promote a "
                             "version with realness approve") from None


def _checked_pointer(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise TypeError(f"a JSON {type(data).__name__}, not an object")
    for name, kind in POINTER_FIELDS.items():
        if not isinstance(data.get(name), kind) or data[name] in ("", None):
            raise TypeError(f"{name} missing or not a {getattr(kind, '__name__', 'number')}")
    return data


def champion(cfg: RealnessConfig, store: ObjectStore, db: Database | None) -> ModelVersion | None:
    """The model scoring should use, or None before any model was promoted.

    Reads the pointer in the store; with ``db``, also brings the table's mirror up to date.
    """
    record = read_pointer(cfg, store)
    if record is None:
        return None
    if db is not None:
        mirror_promotion(db, record)
    return record.model_version(promoted=True)


def artefact_key(cfg: RealnessConfig, version: str, name: str) -> str:
    """The store key of file ``name`` in a version's folder."""
    return version_prefix(cfg, version) + name


def trained_videos(cfg: RealnessConfig, store: ObjectStore, version: str) -> frozenset[str]:
    """The video ids ``version`` was fitted on (its manifest's train split); empty for a version
    registered without a manifest (a test champion, a hand-registered model)."""
    try:
        manifest = json.loads(store.get_bytes(artefact_key(cfg, version, "manifest.json")))
    except KeyError:
        return frozenset()
    return frozenset(manifest.get("splits", {}).get("train", {}).get("videos", []))


def fetch_artefact(cfg: RealnessConfig, store: ObjectStore, version: str, name: str, dest_dir: Path) -> Path:
    """Download one file of a version folder (``model.keras``, ``model.tflite``...) into ``dest_dir``."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / name
    store.download(artefact_key(cfg, version, name), path)
    return path


def beats(candidate: dict, incumbent: dict) -> bool:
    """Higher ROC AUC wins; equal AUC is settled by higher F1 of the FAKE class; a full tie keeps the incumbent."""
    c_auc, i_auc = _number(candidate.get("auc")), _number(incumbent.get("auc"))
    if abs(c_auc - i_auc) > TIE_TOLERANCE:
        return c_auc > i_auc
    return _number(candidate.get("f1_fake")) - _number(incumbent.get("f1_fake")) > TIE_TOLERANCE


def _number(value: Any) -> float:
    """Metrics as comparable numbers: a missing or NaN metric loses to any real one."""
    return -math.inf if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def meets_floor(video_metrics: dict, floor: float) -> bool:
    """Whether a model's held-out video AUC reaches the promotion floor (a missing AUC does not)."""
    return _number(video_metrics.get("auc")) >= floor


def decide(candidate: dict, floor: float, incumbent_version: str | None, incumbent_on_same_data: dict | None,
           comparison_note: str = "") -> PromotionDecision:
    """Promote a model whose held-out video AUC reaches ``floor`` and that beats the champion on the same videos.

    ``candidate`` and ``incumbent_on_same_data`` are video-level metrics (analysts read per-video
    verdicts). Below the floor nothing is compared: the first model too is refused.
    """
    if not meets_floor(candidate, floor):
        return PromotionDecision(False, f"held-out video AUC {_fmt(candidate.get('auc'))} over "
                                        f"{candidate.get('videos', '?')} videos is below the promotion floor "
                                        f"{floor:.2f} (REALNESS_TRAINING_MIN_VIDEO_AUC)", incumbent_version)
    if incumbent_version is None:
        return PromotionDecision(True, f"no champion yet; held-out video AUC {_fmt(candidate.get('auc'))} reaches "
                                       f"the floor {floor:.2f}", None)
    if incumbent_on_same_data is None:
        raise ValueError(f"champion {incumbent_version} has no metrics to compare with")
    comparison = {"champion": incumbent_version, "champion_metrics": incumbent_on_same_data,
                  "candidate_metrics": {k: candidate.get(k) for k in ("auc", "f1_fake", "videos")}}
    summary = (f"video AUC {_fmt(candidate.get('auc'))} / F1 {_fmt(candidate.get('f1_fake'))} vs champion "
               f"{incumbent_version} video AUC {_fmt(incumbent_on_same_data.get('auc'))} / "
               f"F1 {_fmt(incumbent_on_same_data.get('f1_fake'))} on the same "
               f"{candidate.get('videos', '?')} test videos{comparison_note}")
    if beats(candidate, incumbent_on_same_data):
        return PromotionDecision(True, f"beats champion: {summary}", incumbent_version, comparison)
    return PromotionDecision(False, f"does not beat champion: {summary}", incumbent_version, comparison)


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"


def register(cfg: RealnessConfig, store: ObjectStore, db: Database, record: ModelRecord, local_dir: Path,
             decision: PromotionDecision) -> tuple[ModelVersion, str]:
    """Upload the version folder, record the row, and move the champion pointer if the decision says so.

    The pointer moves last, after every artefact is in place, so a champion is always complete.
    If another run promoted a model after this one was compared, this one is not promoted.
    Returns the registered version and the reason recorded for (not) promoting it.
    """
    prefix = version_prefix(cfg, record.version)
    missing = [name for name in record.files() if not (local_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"version {record.version} lacks {missing} in {local_dir}")
    for name in record.files():
        store.upload(local_dir / name, prefix + name)
    store.put_bytes(prefix + RECORD_NAME, json.dumps({**record.to_json(), "reason": decision.reason}, indent=1).encode())
    if decision.promote:
        current = read_pointer(cfg, store)
        current_version = current.version if current else None
        if current_version != decision.champion_version:
            decision = PromotionDecision(False, f"champion changed to {current_version} while this model trained "
                                                f"(compared with {decision.champion_version}); not promoted",
                                         decision.champion_version, decision.comparison)
    insert_row(db, record, decision.reason)
    if not decision.promote:
        log.info("model %s registered, not promoted: %s", record.version, decision.reason)
        return record.model_version(promoted=False), decision.reason
    promoted = ModelRecord(**{**record.__dict__, "reason": decision.reason, "promoted_at": utc_now()})
    store.put_bytes(pointer_key(cfg), json.dumps(promoted.to_json(), indent=1).encode())
    mirror_promotion(db, promoted)
    log.info("model %s promoted to champion: %s", record.version, decision.reason)
    return promoted.model_version(promoted=True), decision.reason


class UnknownVersion(LookupError):
    """No registered version of that name (or one registered before records were kept in its folder)."""


def approve(cfg: RealnessConfig, store: ObjectStore, db: Database, version: str, reason: str) -> ModelVersion:
    """Promote a registered version on an operator's word, recording why (the gate's reason is kept beside it).

    For a model the gate could not judge (no labelled held-out fakes) or an operator's rollback.
    """
    if not reason.strip():
        raise ValueError("an approval needs a reason (who approved it and on what evidence)")
    try:
        record = ModelRecord.from_json(json.loads(store.get_bytes(version_prefix(cfg, version) + RECORD_NAME)))
    except KeyError:
        raise UnknownVersion(f"no registered version {version} with a {RECORD_NAME} in "
                             f"{store.uri_for(version_prefix(cfg, version))}") from None
    promoted = ModelRecord(**{**record.__dict__, "promoted_at": utc_now(),
                              "reason": f"approved by an operator: {reason.strip()} (the gate said: {record.reason})"})
    store.put_bytes(pointer_key(cfg), json.dumps(promoted.to_json(), indent=1).encode())
    mirror_promotion(db, promoted)
    log.info("model %s promoted by an operator: %s", version, promoted.reason)
    return promoted.model_version(promoted=True)


def _row(record: ModelRecord, reason: str) -> dict[str, Any]:
    m = record.metrics
    video = m.get("video") or {}
    return {"version": record.version, "created_at": record.created_at, "run_id": record.run_id,
            "uri": record.uri, "image_size": record.image_size, "threshold": record.threshold,
            "accuracy": m.get("accuracy"), "precision_fake": m.get("precision_fake"),
            "recall_fake": m.get("recall_fake"), "f1_fake": m.get("f1_fake"), "auc": m.get("auc"),
            "confusion": json.dumps(m.get("confusion")), "dataset_faces": record.dataset_faces,
            "data_cutoff": record.data_cutoff, "reason": reason, "backbone": record.backbone,
            "backbone_weights": record.backbone_weights, "video_auc": _finite(video.get("auc")),
            "video_f1_fake": _finite(video.get("f1_fake")), "test_videos": video.get("videos"),
            "crop_margin": record.crop_margin, "detector": describe_detector(record.detector)}


def describe_detector(detector: dict | None) -> str | None:
    """The ``model_versions.detector`` column: the fusion and calibration, without the head's 512 weights."""
    if not detector:
        return None
    head = detector.get("head") or {}
    return json.dumps({"efficientnet_weight": detector["efficientnet_weight"], "encoder": head.get("encoder"),
                       "raw_threshold": detector["raw_threshold"], "temperature": detector["temperature"]},
                      sort_keys=True)


def _finite(value: Any) -> float | None:
    """NaN (an AUC without both classes) is stored as NULL, which both engines compare sanely."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


_INSERT = sa.text(
    "INSERT INTO model_versions (version, created_at, run_id, uri, image_size, threshold, accuracy, precision_fake, "
    "recall_fake, f1_fake, auc, confusion, dataset_faces, data_cutoff, promoted, promoted_at, reason, backbone, "
    "backbone_weights, video_auc, video_f1_fake, test_videos, crop_margin, detector) VALUES "
    "(:version, :created_at, :run_id, :uri, :image_size, :threshold, :accuracy, :precision_fake, :recall_fake, "
    ":f1_fake, :auc, :confusion, :dataset_faces, :data_cutoff, 0, NULL, :reason, :backbone, :backbone_weights, "
    ":video_auc, :video_f1_fake, :test_videos, :crop_margin, :detector)")


def insert_row(db: Database, record: ModelRecord, reason: str) -> None:
    """Add a newly registered version's ``model_versions`` row, not promoted (:func:`mirror_promotion` marks that)."""
    with db.transaction() as conn:
        conn.execute(_INSERT, _row(record, reason))


def mirror_promotion(db: Database, record: ModelRecord) -> None:
    """Make the table agree with the pointer: the row exists, is marked promoted, with the pointer's time.

    The time matters: ``latest_verdicts`` follows the most recent ``promoted_at``, so a pointer moved
    back to an older version (a rollback) must refresh it.
    """
    rows = db.query("SELECT promoted, promoted_at FROM model_versions WHERE version = :v", {"v": record.version})
    if rows and rows[0]["promoted"] and (record.promoted_at is None
                                         or as_utc(rows[0]["promoted_at"]) == as_utc(record.promoted_at)):
        return
    with db.transaction() as conn:
        if not rows:
            conn.execute(_INSERT, _row(record, record.reason))
        conn.execute(sa.text("UPDATE model_versions SET promoted = 1, promoted_at = :at, reason = :reason "
                             "WHERE version = :v"),
                     {"at": record.promoted_at or utc_now(), "reason": record.reason, "v": record.version})


def last_data_cutoff(db: Database) -> datetime | None:
    """When the newest registered model's training data was listed (None before the first model)."""
    rows = db.query("SELECT MAX(data_cutoff) AS cutoff FROM model_versions")
    return as_utc(rows[0]["cutoff"]) if rows else None

