"""Scoring: every validated face shard not yet judged by the champion gets face scores and a verdict.

:func:`run_scoring` is the whole step (the DAG calls it): find the shards under the faces prefix
whose video has no face scores for the model version, decode their crops with the same
``decode_crops`` as training, run them through the TFLite engine in batches that span videos,
aggregate each video (``realness_tasks.verdicts``), add NO_FACE / ERROR verdicts for what ingest
could not turn into faces, publish everything in one transaction and export the run's verdicts as
Parquet. Work is keyed by (video, model version): a re-run finds nothing new and changes no row,
and a new champion re-judges every video under its own version. What scores a face (the engine,
the foundation head, the detector's fusion and calibration) comes from ``realness_tasks.scorers``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from realness_tasks import identities, ledger, registry, verdicts
from realness_tasks.config import RealnessConfig
from realness_tasks.crops import crop_decoder
from realness_tasks.db import Database
from realness_tasks.crash_points import checkpoint
from realness_tasks.inference import TFLiteScorer
from realness_tasks.ledger import Status
from realness_tasks.registry import ModelVersion
from realness_tasks.resources import run_resources
from realness_tasks.scorers import (FoundationScorer, face_log_odds, face_probabilities, foundation_scorer,
                                    load_scorer, probabilities)
from realness_tasks.shards import current_shards, read_shard, shard_video_id
from realness_tasks.storage import ObjectStore
from realness_tasks.workspace import scratch_dir

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

SCORED, NO_CHAMPION = "SCORED", "NO_CHAMPION"
# Ledger statuses that end without faces to score (every other final status but these is a failure).
NOT_FAILURES = {Status.PUBLISHED, Status.NO_FACE, Status.DUPLICATE}
FAILURE_STATUSES = sorted(str(s) for s in Status if s.terminal and s.video and s not in NOT_FAILURES)


@dataclass(frozen=True)
class ScoringOutcome:
    """What one scoring run did; small enough to travel through XCom."""

    run_id: str
    run_date: str
    status: str                         # SCORED, or NO_CHAMPION when there is no model to score with
    message: str
    model_version: str | None = None
    shards_scored: int = 0
    faces_scored: int = 0
    videos_already_scored: int = 0      # shards skipped: the version has judged them before
    verdicts: dict[str, int] = field(default_factory=dict)   # verdict -> videos decided in this run
    verdicts_uri: str | None = None     # the run's Parquet export, None when it decided nothing

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ShardVideo:
    """One video's faces from its shard, with their probabilities once scored."""

    key: str
    video_id: str
    source_uri: str
    label: str | None
    frame_width: int | None
    frame_height: int | None
    frame_index: np.ndarray
    face_index: np.ndarray
    p_fake: np.ndarray                  # EfficientNet's probability (the engine's output)
    timestamps: np.ndarray
    boxes: np.ndarray                   # (x, y, w, h) per face, frame pixels
    embeddings: list[np.ndarray | None]  # face-recognition embedding per face (None: not embedded)
    track_ids: list[int | None]         # face track per face (None: a shard written before tracks)
    head_logits: np.ndarray | None = None   # the foundation head's logit per face, when the model fuses it

    @classmethod
    def from_table(cls, key: str, table: pa.Table) -> ShardVideo:
        def first(column: str) -> Any:
            return table.column(column)[0].as_py() if table.num_rows else None

        def optional(column: str) -> list[Any]:
            return table.column(column).to_pylist() if column in table.column_names else [None] * table.num_rows

        embeddings = optional("embedding")
        boxes = np.stack([table.column(c).to_numpy() for c in ("box_x", "box_y", "box_w", "box_h")], axis=1) \
            if table.num_rows else np.zeros((0, 4))
        return cls(key, first("video_id") or shard_video_id(key), first("source_uri") or "", first("label"),
                   first("frame_width"), first("frame_height"),
                   table.column("frame_index").to_numpy(), table.column("face_index").to_numpy(),
                   np.full(table.num_rows, np.nan, dtype=np.float32), table.column("timestamp_s").to_numpy(),
                   boxes, [None if e is None else np.asarray(e, np.float32) for e in embeddings],
                   optional("track_id"))

    def identity_faces(self) -> identities.VideoFaces:
        return identities.VideoFaces(self.video_id, self.frame_index, self.face_index, self.timestamps, self.boxes,
                                     self.embeddings)


def newest_shards(cfg: RealnessConfig, store: ObjectStore) -> dict[str, str]:
    """video id -> key of its newest shard under the faces prefix."""
    return {video_id: obj.key for video_id, obj in current_shards(store, cfg.faces_prefix).items()}


def pending_shards(cfg: RealnessConfig, store: ObjectStore, db: Database, version: str) -> tuple[list[str], int]:
    """Shard keys to score for ``version`` (the newest shard per video) and how many are already scored."""
    newest = newest_shards(cfg, store)
    scored = verdicts.scored_videos(db, version)
    pending = sorted(key for video_id, key in newest.items() if video_id not in scored)
    return pending, len(newest) - len(pending)


class _Batcher:
    """Collects decoded faces across videos and runs the engine ``batch_size`` faces at a time."""

    def __init__(self, scorer: TFLiteScorer, batch_size: int):
        self.scorer = scorer
        self.batch_size = batch_size
        self.images: list[np.ndarray] = []
        self.owners: list[tuple[ShardVideo, int]] = []

    def add(self, video: ShardVideo, images: np.ndarray) -> None:
        self.images.append(images)
        self.owners.extend((video, row) for row in range(len(images)))
        while len(self.owners) >= self.batch_size:
            self._run(self.batch_size)

    def finish(self) -> None:
        if self.owners:
            self._run(len(self.owners))

    def _run(self, count: int) -> None:
        queued = np.concatenate(self.images) if len(self.images) > 1 else self.images[0]
        self.images = [queued[count:]] if len(queued) > count else []
        for (video, row), p in zip(self.owners[:count], self.scorer.predict(queued[:count]), strict=True):
            video.p_fake[row] = p
        del self.owners[:count]


def crop_margin_problem(table: pa.Table, model: ModelVersion) -> str | None:
    """Why ``model`` must not score the shard's crops (they were cut with another margin), or None."""
    if model.crop_margin is None:
        return None   # registered before margins were kept: run_scoring has warned that nothing is checked
    found = set(table.column("crop_margin").to_pylist()) if "crop_margin" in table.column_names else {None}
    if found <= {model.crop_margin}:
        return None
    margins = ", ".join(str(m) for m in sorted(found - {None}))
    cut = f"with crop margin {margins}" if margins else "with no recorded margin"
    return (f"crops cut {cut}, model {model.version} was trained on crops cut with {model.crop_margin}: "
            f"re-ingest the video with REALNESS_CROP_MARGIN={model.crop_margin} (reprocess), or train a model "
            f"on crops cut like these")


def score_shards(store: ObjectStore, keys: Sequence[str], scorer: TFLiteScorer, model: ModelVersion,
                 batch_size: int, progress: Progress | None = None, foundation: FoundationScorer | None = None
                 ) -> tuple[list[ShardVideo], list[verdicts.VideoVerdict]]:
    """Score every face of the shards; shards or crops that cannot be read, or were cut with another
    crop margin than ``model``'s, become ERROR verdicts. With ``foundation``, each face also gets the
    model's foundation-head logit (features from the cache, encoded when missing)."""
    import tensorflow as tf

    decode = crop_decoder(scorer.image_size)
    scored: list[ShardVideo] = []
    errors: list[verdicts.VideoVerdict] = []
    batcher = _Batcher(scorer, batch_size)
    for number, key in enumerate(keys, 1):
        try:
            table = read_shard(store.get_bytes(key))
            video = ShardVideo.from_table(key, table)
            if problem := crop_margin_problem(table, model):
                log.warning("not scoring %s: %s", key, problem)
                errors.append(verdicts.unscored(video.video_id, video.source_uri or None, verdicts.ERROR, problem))
                continue
            jpegs = table.column("crop_jpeg").to_pylist()
            images = decode(jpegs) if table.num_rows else np.empty((0, *scorer.face_shape), np.float32)
            if foundation is not None:
                video.head_logits = foundation.logits(video.video_id, jpegs)
        except (pa.ArrowException, tf.errors.InvalidArgumentError, ValueError) as exc:
            log.warning("cannot score %s: %s", key, exc)
            errors.append(verdicts.unscored(shard_video_id(key), None, verdicts.ERROR,
                                            f"unreadable shard {key}: {str(exc).splitlines()[0][:200]}"))
            continue
        scored.append(video)
        batcher.add(video, images)
        if progress:
            progress(f"[{number}/{len(keys)}] {video.video_id[:12]}: {len(images)} faces")
    batcher.finish()
    return scored, errors


def ledger_verdicts(db: Database, version: str, skip: set[str]) -> list[verdicts.VideoVerdict]:
    """NO_FACE and ERROR verdicts for ledger entries that never became a shard, unless already decided.

    An entry without a video id (ingest never read its bytes) is keyed by the hash of its URI. When
    several entries share a video, the most recently updated one speaks for it.
    """
    rows = ledger.entries_with_status(db, [Status.NO_FACE, *FAILURE_STATUSES])
    decided = verdicts.decided_videos(db, version)
    latest: dict[str, verdicts.VideoVerdict] = {}
    for row in rows:
        video_id = row["video_id"] or "source:" + hashlib.sha256(row["source_uri"].encode()).hexdigest()
        if row["status"] == Status.NO_FACE:
            latest[video_id] = verdicts.unscored(video_id, row["source_uri"], verdicts.NO_FACE, row["reason"])
        else:
            reason = f"{row['status']}: {row['reason']}" if row["reason"] else row["status"]
            latest[video_id] = verdicts.unscored(video_id, row["source_uri"], verdicts.ERROR, reason)
    return [v for video_id, v in sorted(latest.items()) if video_id not in decided and video_id not in skip]


@dataclass(frozen=True)
class IdentityJudging:
    """What judging faces against their person's reference needs in one run (see ``identities``)."""

    rule: identities.IdentityRule
    identities: dict[str, np.ndarray]           # video id -> identity per face (-1: none)
    references: dict[int, identities.Reference]
    population_mean: float | None               # None: no reference face anywhere yet

    def judge(self, video: ShardVideo, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(identity per face, reference faces used per face, identity-relative log-odds or None)."""
        ids = self.identities.get(video.video_id, np.full(len(z), -1, np.int64))
        if self.population_mean is None:
            return ids, np.zeros(len(z), np.int64), None
        offsets, used = self.rule.offsets(video.video_id, ids, self.references, self.population_mean)
        return ids, used, (z - offsets) if used.any() else None


def identity_judging(cfg: RealnessConfig, store: ObjectStore, db: Database, videos: Sequence[ShardVideo],
                     model: ModelVersion) -> IdentityJudging | None:
    """Assign the run's faces to identities and gather every identity's reference under ``model``;
    None when ``REALNESS_IDENTITY_ENABLED`` is off."""
    if not cfg.identity.enabled:
        return None
    from realness_tasks.dataset import trusted_real_uris
    from realness_tasks.embeddings import EMBEDDER_NAME

    assigned = identities.assign(db, [v.identity_faces() for v in videos], embedder=EMBEDDER_NAME,
                                 match_distance=cfg.identity.match_distance,
                                 merge_distance=cfg.identity.merge_distance, now=registry.utc_now())
    trusted = trusted_real_uris(cfg, store)
    # The model's own training videos score lower than unseen footage of the same people: as references
    # they would make every other person look suspicious by comparison.
    fitted_on = registry.trained_videos(cfg, store, model.version)
    in_run = []
    for video in videos:
        if video.video_id in fitted_on:
            continue
        if video.label == verdicts.REAL or (trusted and video.source_uri.startswith(trusted)):
            z_faces = face_log_odds(video.p_fake, video.head_logits, model)
            in_run += [(int(i), video.video_id, float(z))
                       for i, z in zip(assigned[video.video_id], z_faces, strict=True) if i >= 0]
    references = identities.references(db, model.version, trusted, in_run, exclude_videos=fitted_on)
    rule = identities.IdentityRule(cfg.identity.shrinkage_faces, cfg.identity.min_reference_faces)
    log.info("identities: %d faces in %d videos assigned; %d identities have reference faces (%d training videos "
             "of model %s left out of the references)", sum(len(a) for a in assigned.values()), len(assigned),
             len(references), len(fitted_on), model.version)
    return IdentityJudging(rule, assigned, references, identities.population_mean(references))


def judge(videos: Sequence[ShardVideo], model: ModelVersion, cfg: RealnessConfig,
          identity: IdentityJudging | None = None) -> tuple[list[verdicts.FaceScore], list[verdicts.VideoVerdict]]:
    """Face labels and video verdicts from scored shards; with ``identity``, faces whose person has a
    reference are labelled by their identity-relative score and the verdict's reason names the reference."""
    faces: list[verdicts.FaceScore] = []
    decided: list[verdicts.VideoVerdict] = []
    for video in videos:
        p_fake, p_raw = face_probabilities(video.p_fake, video.head_logits, model)
        n = len(p_fake)
        raw = p_raw if p_raw is not None else [None] * n
        ids, used, relative = (identity.judge(video, face_log_odds(video.p_fake, video.head_logits, model))
                               if identity is not None else (np.full(n, -1), np.zeros(n, np.int64), None))
        p_identity = probabilities(relative, model) if relative is not None else np.full(n, np.nan)
        video_faces = [verdicts.face_score(video.video_id, video.frame_index[i], video.face_index[i], p_fake[i],
                                           model.threshold, raw[i], identity_id=int(ids[i]) if ids[i] >= 0 else None,
                                           reference_faces=int(used[i]) if used[i] else None,
                                           p_identity=float(p_identity[i]) if used[i] else None,
                                           track_id=video.track_ids[i], timestamp_s=float(video.timestamps[i]))
                       for i in range(n)]
        faces.extend(video_faces)
        verdict = verdicts.aggregate(video.video_id, video.source_uri, video_faces, model.threshold, cfg.scoring)
        if used.any():
            judged = sorted({(int(i), int(u)) for i, u in zip(ids, used, strict=True) if u})
            verdict = replace(verdict, reason=f"{verdict.reason}; judged against " + ", ".join(
                f"identity {i} ({u} reference faces)" for i, u in judged))
        decided.append(verdict)
    return faces, decided


def run_scoring(cfg: RealnessConfig, run_id: str, run_date: str, *, model: ModelVersion | None = None,
                progress: Progress | None = None) -> ScoringOutcome:
    """Score what the model has not judged yet, publish the verdicts and export them; see the module doc.

    ``model`` None means the current champion; with no champion, nothing is scored and the
    outcome says so.
    """
    with run_resources(cfg) as run:
        store, db = run.store, run.db
        model = model or registry.champion(cfg, store, db)
        if model is None:
            message = (f"no champion model in {store.uri_for(registry.pointer_key(cfg))}: nothing scored; "
                       "train and promote a model first")
            log.warning(message)
            return ScoringOutcome(run_id, run_date, NO_CHAMPION, message)
        keys, already = pending_shards(cfg, store, db, model.version)
        if model.crop_margin is None:
            log.warning("model %s does not record the crop margin it was trained on (registered before margins "
                        "were kept): its shards are scored whatever margin they were cut with", model.version)
        log.info("model %s: %d shards to score, %d already scored", model.version, len(keys), already)
        scored: list[ShardVideo] = []
        errors: list[verdicts.VideoVerdict] = []
        if keys:
            with scratch_dir(cfg.home, "realness-model") as workdir:
                scorer = load_scorer(cfg, model, Path(workdir))
                scored, errors = score_shards(store, keys, scorer, model, cfg.scoring.batch_size, progress,
                                              foundation_scorer(cfg, store, model))
        faces, decided = judge(scored, model, cfg, identity_judging(cfg, store, db, scored, model))
        decided += errors
        decided += ledger_verdicts(db, model.version, skip={shard_video_id(k) for k in keys}
                                   | {v.video_id for v in decided})
        videos = [verdicts.VideoRow(v.video_id, v.source_uri, v.label, v.frame_width, v.frame_height)
                  for v in scored if v.source_uri]
        verdicts.publish(db, model_version=model.version, run_id=run_id, run_date=run_date,
                         decided_at=registry.utc_now(), videos=videos, faces=faces, verdicts=decided)
        checkpoint("score.committed")
        # This run's export, and any an earlier run committed but died (or was refused) before writing.
        owed = verdicts.export_pending(db, store, cfg.verdicts_prefix)
        mine = store.uri_for(verdicts.export_key(cfg.verdicts_prefix, run_date, run_id))
        uri = mine if mine in owed else verdicts.export_run(db, store, cfg.verdicts_prefix, run_id, run_date)
        if earlier := [u for u in owed if u != mine]:
            log.warning("wrote %d verdict export(s) that earlier runs left unwritten: %s", len(earlier), earlier)
        counts = dict(Counter(v.verdict for v in decided))
        message = (f"model {model.version}: {len(faces)} faces in {len(scored)} shards scored, "
                   f"{len(decided)} verdicts {counts or ''}, {already} videos already scored")
        log.info(message)
        return ScoringOutcome(run_id, run_date, SCORED, message, model.version, len(scored), len(faces), already,
                              counts, uri)
