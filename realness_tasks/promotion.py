"""Publishing a trained model: the champion comparison, the version's registration, and an operator's approval.

``publish`` compares the new model with the champion on the same test videos, writes the version
folder and registers it; the registry promotes it only when its held-out video AUC reaches the
configured floor and it beats the champion. Without labelled fakes a model is registered and never
promoted until an operator approves it (``approve_version``).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from realness_tasks import dataset as ds
from realness_tasks import registry
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.detector import Detector
from realness_tasks.fitting import FoundationBranch, Progress, describe_backbone
from realness_tasks.held_out import Evaluation
from realness_tasks.metrics import THRESHOLD_RULE, video_metrics
from realness_tasks.model import Backbone, predict_probabilities
from realness_tasks.resources import run_resources
from realness_tasks.storage import ObjectStore, StorageUnavailable
from realness_tasks.version_folder import write_version_folder
from realness_tasks.workspace import scratch_dir

if TYPE_CHECKING:
    import keras


class ChampionUnavailable(RuntimeError):
    """The champion could not be loaded to compare a new model with: nothing is promoted blindly."""


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training run registered, and whether it was promoted and why."""

    version: str
    promoted: bool
    reason: str
    metrics: dict                 # test-split metrics of the new model (per face; per video under "video")
    backbone: str                 # e.g. "efficientnet_lite0 (imagenet:...)" or "... (random)"
    artefacts: dict[str, str]     # file name -> URI in the version folder


def publish(cfg: RealnessConfig, store: ObjectStore, db: Database, run_id: str, model: keras.Model,
            data: ds.LabelledDataset, manifest: dict, history: dict[str, list], evaluation: Evaluation,
            backbone: Backbone, branch: FoundationBranch | None, report: Progress) -> TrainingOutcome:
    """Compare with the champion, write the version folder and register it (promoting it if it won)."""
    foundation_record = branch.record if branch is not None else None
    with scratch_dir(cfg.home, "realness-train") as tmp:
        workdir = Path(tmp)
        decision = (compare_with_champion(cfg, store, data.test, evaluation, branch, workdir, report)
                    if data.manifest["labelled_fakes"] else no_labelled_fakes_decision(cfg, store, evaluation))
        created_at = registry.utc_now()
        config_record = {"training": asdict(cfg.training), "crop": asdict(cfg.crop), "code_version": code_version(),
                         "run_id": run_id, "backbone": asdict(backbone)}
        version = registry.new_version(created_at, json.dumps([run_id, config_record, manifest["shards"]],
                                                              sort_keys=True, default=str))
        metrics_file = {"version": version, "test": evaluation.test, "threshold": evaluation.threshold,
                        "threshold_rule": THRESHOLD_RULE, "detector": evaluation.detector.to_json(),
                        "fusion": evaluation.fusion, "foundation": foundation_record,
                        "validation": evaluation.validation, "history": history,
                        "backbone": asdict(backbone), "comparison": {"reason": decision.reason, **decision.comparison}}
        folder = workdir / version
        folder.mkdir()
        write_version_folder(folder, model, data, evaluation, {"metrics.json": metrics_file, "manifest.json": manifest,
                                                               "training_config.json": config_record}, history,
                             cfg)
        record = registry.ModelRecord(
            version=version, created_at=created_at, run_id=run_id,
            uri=store.uri_for(registry.version_prefix(cfg, version)), image_size=cfg.training.image_size,
            threshold=evaluation.threshold, metrics=evaluation.test, dataset_faces=data.total_faces,
            data_cutoff=data.listed_at, reason=decision.reason, backbone=backbone.name,
            backbone_weights=backbone.weights, crop_margin=cfg.crop.margin,
            engines={name: engine["file"] for name, engine in metrics_file["engines"].items()},
            detector=evaluation.detector.to_json())
        registered, reason = registry.register(cfg, store, db, record, folder, decision)
    report(f"model {version} {'promoted' if registered.promoted else 'registered, not promoted'}: {reason}")
    return TrainingOutcome(version, registered.promoted, reason, evaluation.test, describe_backbone(backbone),
                           {name: store.uri_for(registry.artefact_key(cfg, version, name))
                            for name in record.files()})


def compare_with_champion(cfg: RealnessConfig, store: ObjectStore, test: ds.FaceSet, evaluation: Evaluation,
                          branch: FoundationBranch | None, workdir: Path, report: Progress
                          ) -> registry.PromotionDecision:
    """Apply the promotion floor, then score the champion on the candidate's test videos and compare per video.

    Test videos that the champion trained or validated on are left out of the comparison when
    enough remain (both classes), so the champion is not judged on faces it has seen. A champion
    that cannot be loaded stops the run (:class:`ChampionUnavailable`): a model is never promoted
    without the comparison. A champion trained at another crop margin is still compared (it
    usually loses, rightly: scoring refuses new shards cut at the new margin), and the reason says so.
    """
    import keras

    floor = cfg.training.min_video_auc
    current = registry.read_pointer(cfg, store)
    if current is None or not registry.meets_floor(evaluation.test["video"], floor):
        return registry.decide(evaluation.test["video"], floor, current.version if current else None, None)
    try:
        seen_manifest = json.loads(store.get_bytes(registry.artefact_key(cfg, current.version, "manifest.json")))
        seen = set(seen_manifest["splits"]["train"]["videos"]) | set(seen_manifest["splits"]["val"]["videos"])
        champion_model = keras.models.load_model(
            registry.fetch_artefact(cfg, store, current.version, "model.keras", workdir / "champion"), compile=False)
    except StorageUnavailable:
        raise
    except Exception as exc:  # a missing file, a Keras version that cannot read it, a corrupt manifest...
        raise ChampionUnavailable(
            f"champion {current.version} could not be loaded to compare the new model with "
            f"({type(exc).__name__}: {exc}). Nothing was registered. Repair or replace "
            f"{store.uri_for(registry.version_prefix(cfg, current.version))}, or point "
            f"{store.uri_for(registry.pointer_key(cfg))} at a loadable version, then retrain.") from exc
    keep = np.array([i for i, v in enumerate(test.video_ids) if v not in seen], dtype=np.int64)
    note = ""
    if len(keep) < len(test):
        if len(set(test.labels[keep].tolist())) == 2:
            note = f" (the {len(set(test.video_ids[keep].tolist()))} test videos the champion never trained on)"
        else:
            keep, note = np.arange(len(test)), " (the champion trained on some of these videos)"
    if current.crop_margin is not None and current.crop_margin != cfg.crop.margin:
        note += (f"; the champion was trained on crops cut with margin {current.crop_margin:g} and these faces are "
                 f"cut with {cfg.crop.margin:g} (REALNESS_CROP_MARGIN), so it is compared on crops it would refuse "
                 f"to score")
    subset = test.take(keep)
    report(f"scoring champion {current.version} on {len(subset)} test faces")
    champion_scores = champion_p_fake(current, np.array(predict_probabilities(champion_model, subset.jpegs,
                                                                             current.image_size)),
                                      branch, keep)
    champion_result = video_metrics(subset, champion_scores, current.threshold, cfg.scoring)
    candidate_result = video_metrics(subset, evaluation.test_scores[keep], evaluation.threshold, cfg.scoring)
    return registry.decide(candidate_result, floor, current.version, champion_result, note)


def champion_p_fake(current: registry.ModelRecord, efficientnet: np.ndarray, branch: FoundationBranch | None,
                    keep: np.ndarray) -> np.ndarray:
    """The champion's own p_fake of the test faces ``keep``: its EfficientNet, fused and calibrated its way."""
    if not current.detector:
        return efficientnet   # a champion without a detector record: its EfficientNet probabilities are its p_fake
    detector = Detector.from_json(current.detector)
    if not detector.needs_features:
        return detector.calibrated(detector.fused(efficientnet, None))
    if branch is None or branch.record["encoder"] != detector.head.encoder:
        raise ChampionUnavailable(
            f"champion {current.version} fuses a foundation head on {detector.head.encoder} features, and this run "
            f"has {branch.record['encoder'] if branch else 'no foundation encoder (REALNESS_FOUNDATION_ENCODER=none)'}"
            f": the two cannot be compared on the same faces. Nothing was registered.")
    return detector.calibrated(detector.fused(efficientnet, detector.head.logits(branch.test_features[keep])))


def no_labelled_fakes_decision(cfg: RealnessConfig, store: ObjectStore, evaluation: Evaluation
                               ) -> registry.PromotionDecision:
    """Register without promoting: the gate needs labelled held-out videos, and there are no labelled fakes."""
    current = registry.read_pointer(cfg, store)
    return registry.PromotionDecision(
        False, f"no labelled fake video: trained on real faces and self-blended copies of them, measured on "
               f"self-blended copies of the held-out real videos only (video AUC "
               f"{evaluation.test['video']['auc']:.4f}), which cannot gate a promotion; an operator may promote "
               f"it: realness approve VERSION --reason TEXT (or the realness_train DAG's approve_version)",
        current.version if current else None)


def approve_version(cfg: RealnessConfig, version: str, reason: str) -> dict[str, Any]:
    """An operator's promotion of ``version`` (the training DAG's ``approve_version``), as the DAG's outcome."""
    with run_resources(cfg) as run:
        store, db = run.store, run.db
        model = registry.approve(cfg, store, db, version, reason)
        reason = registry.read_pointer(cfg, store).reason
    return {"version": model.version, "promoted": True, "reason": reason, "metrics": model.metrics,
            "backbone": "approved by an operator"}


def code_version() -> str:
    """``git describe`` of the checkout this code runs from, else the installed package's version."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("realness")
        except PackageNotFoundError:
            return "unknown"
