"""The labelled training set: validated face shards read from the object store, split by video.

Only shards under ``faces_prefix`` have passed validation, so only those are read. A face's label
is its video's label in the ``labels`` table (``realness_tasks/labels.py``: a late or corrected
sidecar lands there without re-ingesting), else the label written into the shard at ingest; rows
left without a label are skipped. Faces of one video are strongly correlated, so the split assigns whole videos:
no video has faces in two splits. A video's split follows from a hash of (seed, video_id), which
keeps it in the same split as the data set grows; so a later model's test videos were never in an
earlier model's training split, and models trained on different days compare fairly on them.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.faces import crop_box
from realness_tasks.shards import SHARD_SCHEMA, current_shards
from realness_tasks.storage import ObjectStore

log = logging.getLogger(__name__)

LABELS = {"REAL": 0, "FAKE": 1}
LABEL_NAMES = {v: k for k, v in LABELS.items()}
SPLITS = ("train", "val", "test")
# Fractions of the split groups (a video without a group is one); the rest trains. val/test each get
# a video of a class present in at least MIN_GROUPS_PER_CLASS groups, however the hash falls.
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
MIN_GROUPS_PER_CLASS = 3
COLUMNS = ["video_id", "source_uri", "face_index", "label", "crop_jpeg", "landmarks", "box_x", "box_y", "box_w", "box_h",
           "frame_width", "frame_height", "crop_width", "crop_margin"]


class NotEnoughData(ValueError):
    """The labelled faces cannot make a train/val/test split with both classes in each."""


@dataclass(frozen=True)
class FaceSet:
    """Labelled face crops in memory, still JPEG-compressed (about 10-20 kB a face at 224 px)."""

    jpegs: list[bytes]
    labels: np.ndarray                  # int32, 1 = FAKE
    video_ids: np.ndarray               # str
    boxes: np.ndarray                   # float32 [n, 4]: the detector's box x, y, w, h in crop pixels
    landmarks: list[np.ndarray | None]  # 5 x 2 points in crop pixels, or None
    face_index: np.ndarray              # int16, 0 = the frame's dominant face (the person track verdicts use)

    def __len__(self) -> int:
        return len(self.jpegs)

    def take(self, indices: Sequence[int] | np.ndarray) -> FaceSet:
        """The faces at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.int64)
        return FaceSet([self.jpegs[i] for i in idx], self.labels[idx], self.video_ids[idx], self.boxes[idx],
                       [self.landmarks[i] for i in idx], self.face_index[idx])

    def class_counts(self) -> dict[str, int]:
        """Faces per label name (REAL, FAKE), zero for a label with none."""
        counts = Counter(int(y) for y in self.labels)
        return {name: counts.get(value, 0) for name, value in LABELS.items()}



@dataclass(frozen=True)
class LabelledDataset:
    """The labelled faces split by video (or group) into train, validation and test, with their manifest."""

    train: FaceSet
    val: FaceSet
    test: FaceSet
    manifest: dict
    listed_at: datetime   # when the shards were listed: the data cut-off

    @property
    def total_faces(self) -> int:
        """Faces in all three splits."""
        return len(self.train) + len(self.val) + len(self.test)


def split_of(unit: str, seed: int) -> str:
    """The split a group (or a video without one) falls in by its hash alone (before the small-set rule)."""
    u = hash_fraction(unit, seed)
    return "test" if u < TEST_FRACTION else "val" if u < TEST_FRACTION + VAL_FRACTION else "train"


def hash_fraction(unit: str, seed: int) -> float:
    """A stable number in [0, 1) for ``unit`` and ``seed``: the same split on every run and machine."""
    digest = hashlib.sha256(f"{seed}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def split_unit(video_id: str, groups: Mapping[str, str]) -> tuple[str, str]:
    """What the split assigns as a whole: the video's group, or the video itself when it has none."""
    return ("group", groups[video_id]) if video_id in groups else ("video", video_id)


def split_videos(video_labels: Mapping[str, int], seed: int, groups: Mapping[str, str] | None = None
                 ) -> dict[str, list[str]]:
    """Assign each video to train/val/test; the videos of one group (``groups``: video -> group) go together.

    A group's split follows from a hash of (seed, group), a video without a group is a group of its
    own (hashed by its id), so the split is deterministic for a seed, independent of the order videos
    are given in, and stable as the data set grows; each split gets about its fraction of each class.
    Small-set rule: a class present in at least MIN_GROUPS_PER_CLASS groups gets a video in each
    split, any other class in train. A split lacking a class takes, from the split holding the most
    groups of that class (train on a tie), its lowest-hash group of that class that can leave: one
    whose split keeps every class it needs without it. A group may hold both classes (a person's real
    video and the fakes made from it), so a move can take a class from its split: train is served
    first, and may take a group that cannot leave when no other holds the class; val and test, served
    after, take only groups that can leave, so no move undoes another. Where no group can leave, the
    split stays without that class (``load_dataset`` then says so).
    """
    groups = groups or {}
    members: dict[tuple[str, str], list[str]] = {}
    for video in video_labels:
        members.setdefault(split_unit(video, groups), []).append(video)
    classes = {unit: {video_labels[v] for v in videos} for unit, videos in members.items()}
    order = {unit: (hash_fraction(unit[1], seed), unit) for unit in members}
    placed = {unit: split_of(unit[1], seed) for unit in members}
    count = Counter((placed[unit], label) for unit in members for label in classes[unit])  # groups per split, class
    groups_of_class = Counter(label for unit in members for label in classes[unit])

    def needs(split: str, label: int) -> bool:
        return split == "train" or groups_of_class[label] >= MIN_GROUPS_PER_CLASS

    def can_leave(unit: tuple[str, str]) -> bool:
        return all(count[placed[unit], label] > 1 or not needs(placed[unit], label) for label in classes[unit])

    # Train first, where every class is needed: a class's first train group may come from anywhere
    # (a group that can leave its split preferred); val and test then move only groups that can leave.
    for name, label in [("train", label) for label in sorted(groups_of_class)] + [
            (name, label) for label in sorted(groups_of_class) for name in SPLITS[1:]]:
        if not needs(name, label) or count[name, label]:
            continue
        movable = [u for u in members if label in classes[u] and placed[u] != name
                   and (name == "train" or can_leave(u))]
        if not movable:
            continue
        unit = min(movable, key=lambda u: (not can_leave(u), -count[placed[u], label], placed[u] != "train",
                                           SPLITS.index(placed[u]), order[u]))
        for held in classes[unit]:
            count[placed[unit], held] -= 1
            count[name, held] += 1
        placed[unit] = name
    return {name: sorted(v for unit, videos in members.items() if placed[unit] == name for v in videos)
            for name in SPLITS}


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Keras ``class_weight``: each class contributes equally to the loss (n / (2 * n_class))."""
    counts = np.bincount(labels.astype(np.int64), minlength=2)
    if (counts == 0).any():
        raise NotEnoughData(f"training split lacks a class: {dict(zip(LABELS, counts.tolist()))}")
    return {c: float(len(labels) / (2 * counts[c])) for c in (0, 1)}


def to_crop_pixels(points: np.ndarray, box: tuple[float, float, float, float], frame_size: tuple[int, int],
                   crop_size: int, margin: float) -> np.ndarray:
    """Map frame-pixel points (``[k, 2]``) into a crop made by ``faces.crop_face`` from that box and frame."""
    x0, y0, x1, y1 = crop_box((frame_size[1], frame_size[0]), box, margin)
    width, height = x1 - x0, y1 - y0
    scale = crop_size / max(width, height)
    new_w, new_h = min(crop_size, max(1, round(width * scale))), min(crop_size, max(1, round(height * scale)))
    offset = np.array([(crop_size - new_w) // 2, (crop_size - new_h) // 2], np.float64)
    return (np.asarray(points, np.float64) - (x0, y0)) * (new_w / width, new_h / height) + offset


def list_shards(cfg: RealnessConfig, store: ObjectStore) -> list[dict]:
    """The newest validated shard of each video, as ``{"key", "etag", "size"}`` records for the manifest."""
    return [{"key": o.key, "etag": o.etag, "size": o.size}
            for o in sorted(current_shards(store, cfg.faces_prefix).values(), key=lambda o: o.key)]


class FacesRead(NamedTuple):
    """The usable labelled faces of some shards, and how many rows were left out and why."""

    faces: FaceSet
    without_label: int        # rows with no usable label
    other_crop_margin: int    # labelled rows cut with another margin than the configured one, or none recorded


def trusted_real_uris(cfg: RealnessConfig, store: ObjectStore) -> tuple[str, ...]:
    """Source URI prefixes of the landing prefixes ``REALNESS_TRAINING_TRUSTED_REAL_PREFIXES`` declares real.

    A prefix is read under the landing prefix (``archive/`` and ``landing/archive/`` name the same one).
    """
    out = []
    for prefix in (p.strip().lstrip("/") for p in cfg.training.trusted_real_prefixes.split(",")):
        if prefix:
            key = prefix if prefix.startswith(cfg.landing_prefix) else cfg.landing_prefix + prefix
            out.append(store.uri_for(key if key.endswith("/") else key + "/"))
    return tuple(out)


def apply_trusted_real(table: pa.Table, trusted: Sequence[str]) -> pa.Table:
    """Rows without a label whose video lies under a trusted-real prefix take the label REAL."""
    if not trusted:
        return table
    under = pc.fill_null(pc.or_kleene(*(pc.starts_with(table["source_uri"], t) for t in trusted))
                         if len(trusted) > 1 else pc.starts_with(table["source_uri"], trusted[0]), False)
    take = pc.and_(pc.is_null(table["label"]), under)
    taken = _count(take)
    if taken:
        log.info("%d unlabelled faces under trusted-real prefixes train as REAL", taken)
    index = table.schema.get_field_index("label")
    return table.set_column(index, table.schema.field("label"), pc.if_else(take, "REAL", table["label"]))


def read_faces(cfg: RealnessConfig, store: ObjectStore, shards: Sequence[dict],
               labels: Mapping[str, str | None] | None = None) -> FacesRead:
    """Read the labelled rows of ``shards`` that were cut with the configured crop margin.

    ``labels`` (video_id -> label, None for a withdrawn one) overrides the shards' own label column for
    the videos it names; see :func:`realness_tasks.labels.for_training`. Unlabelled videos under a
    trusted-real prefix (:func:`trusted_real_uris`) count as REAL. Rows cut with another margin are
    left out (and logged): a model must see crops cut one way, the way scoring will see them.
    """
    fs, base = store.pyarrow_filesystem()
    paths = [f"{base}/{shard['key']}" for shard in shards]
    if not paths:
        return FacesRead(FaceSet([], np.zeros(0, np.int32), np.array([], dtype=str), np.zeros((0, 4), np.float32),
                                 [], np.zeros(0, np.int16)), 0, 0)
    # The explicit schema reads a shard without a crop_margin column with a null margin.
    table = pads.dataset(paths, schema=SHARD_SCHEMA, filesystem=fs, format="parquet").to_table(columns=COLUMNS)
    if labels:
        table = apply_labels(table, labels)
    table = apply_trusted_real(table, trusted_real_uris(cfg, store))
    known = _known_label(table)
    without_label = table.num_rows - _count(known)
    table = table.filter(known)
    same_margin = pc.fill_null(pc.equal(table["crop_margin"], cfg.crop.margin), False)
    other_margin = table.num_rows - _count(same_margin)
    if other_margin:
        margins = Counter(table.filter(pc.invert(same_margin))["crop_margin"].to_pylist())
        log.warning("%d labelled faces were cut with another crop margin than REALNESS_CROP_MARGIN=%s (faces per "
                    "margin, None = not recorded: %s): left out of training; re-ingest their videos with "
                    "--reprocess to use them", other_margin, cfg.crop.margin, dict(margins))
        table = table.filter(same_margin)
    cols = table.to_pydict()
    boxes, landmarks = [], []
    for i in range(table.num_rows):
        box = (cols["box_x"][i], cols["box_y"][i], cols["box_w"][i], cols["box_h"][i])
        geometry = (box, (cols["frame_width"][i], cols["frame_height"][i]), cols["crop_width"][i],
                    cols["crop_margin"][i])
        corners = to_crop_pixels([box[:2], (box[0] + box[2], box[1] + box[3])], *geometry)
        boxes.append([*corners[0], *(corners[1] - corners[0])])
        points = cols["landmarks"][i]
        landmarks.append(to_crop_pixels(np.reshape(points, (5, 2)), *geometry).astype(np.float32)
                         if points is not None and len(points) == 10 else None)
    faces = FaceSet(cols["crop_jpeg"], np.array([LABELS[x] for x in cols["label"]], dtype=np.int32),
                    np.array(cols["video_id"], dtype=str), np.array(boxes, np.float32).reshape(-1, 4), landmarks,
                    np.array(cols["face_index"], dtype=np.int16))
    return FacesRead(faces, without_label, other_margin)


def _count(mask: pa.ChunkedArray) -> int:
    return int(pc.sum(pc.cast(mask, "int64")).as_py() or 0)


def apply_labels(table: pa.Table, labels: Mapping[str, str | None]) -> pa.Table:
    """``table`` with its label column replaced, for the videos ``labels`` names, by their label there."""
    shard_labels = table.column("label").to_pylist()
    merged = [labels[v] if v in labels else old for v, old in zip(table.column("video_id").to_pylist(), shard_labels)]
    changed = sum(1 for a, b in zip(merged, shard_labels) if a != b)
    if changed:
        log.info("labels table: %d face rows take a label other than their shard's", changed)
    index = table.schema.get_field_index("label")
    return table.set_column(index, table.schema.field("label"), pa.array(merged, table.schema.field("label").type))


def video_labels(faces: FaceSet) -> dict[str, int]:
    """Each video's label (a video's rows share it; should they not, the majority decides)."""
    votes: dict[str, Counter] = {}
    for video, label in zip(faces.video_ids, faces.labels):
        votes.setdefault(str(video), Counter())[int(label)] += 1
    mixed = [v for v, c in votes.items() if len(c) > 1]
    if mixed:
        log.warning("%d videos have faces with both labels; using each one's majority label", len(mixed))
    return {v: c.most_common(1)[0][0] for v, c in votes.items()}


def load_dataset(cfg: RealnessConfig, store: ObjectStore, listed_at: datetime, db: Database | None = None
                 ) -> LabelledDataset:
    """Read every validated labelled face and split it; ``listed_at`` is recorded as the data cut-off.

    Labels come from the ``labels`` table of ``db`` (opened from ``cfg`` when not given) and, for
    videos it does not know, from the shards.
    """
    from realness_tasks import labels

    shards = list_shards(cfg, store)
    own = db is None
    db = db or Database(cfg.resolved_database_url)
    try:
        table_labels = labels.for_training(db)
        table_groups = labels.split_groups(db)
    finally:
        if own:
            db.dispose()
    faces, skipped, other_margin = read_faces(cfg, store, shards, table_labels)
    labels_by_video = video_labels(faces)
    groups = {v: table_groups[v] for v in labels_by_video if v in table_groups}
    assignment = split_videos(labels_by_video, cfg.training.seed, groups)
    index = {v: name for name, videos in assignment.items() for v in videos}
    parts = {name: faces.take([i for i, v in enumerate(faces.video_ids) if index[str(v)] == name])
             for name in SPLITS}
    # With no labelled fake at all, training makes its fakes (self-blended) and the held-out splits
    # need only real videos: the model can be trained, but not promoted without an operator.
    labelled_fakes = any(label == LABELS["FAKE"] for label in labels_by_video.values())
    for name, part in parts.items():
        missing = [c for c, n in part.class_counts().items() if n == 0 and (labelled_fakes or c == "REAL")]
        if missing:
            left_out = (f"; {other_margin} labelled faces were left out for another crop margin than "
                        f"REALNESS_CROP_MARGIN={cfg.crop.margin} (or none recorded): re-ingest their videos "
                        "with reprocess to use them" if other_margin else "")
            raise NotEnoughData(f"the {name} split has no {'/'.join(missing)} faces: "
                                + not_enough_reason(labels_by_video, groups) + left_out)
    manifest = {
        "listed_at": listed_at.isoformat(), "faces_prefix": cfg.faces_prefix, "seed": cfg.training.seed,
        "shards": list(shards), "faces_total": len(faces), "rows_without_label": skipped,
        "crop_margin": cfg.crop.margin, "faces_other_crop_margin": other_margin,
        "labels_from_table": sum(1 for v in set(faces.video_ids.tolist()) if v in table_labels),
        "grouped": bool(groups), "videos_with_group": len(groups), "labelled_fakes": labelled_fakes,
        "splits": {name: {"faces": part.class_counts(), "videos": assignment[name],
                          "videos_per_class": dict(Counter(LABEL_NAMES[labels_by_video[v]] for v in assignment[name])),
                          "groups": len({split_unit(v, groups) for v in assignment[name]})}
                   for name, part in parts.items()},
    }
    log.info("dataset: %d labelled faces from %d shards; train %s, val %s, test %s", len(faces), len(shards),
             parts["train"].class_counts(), parts["val"].class_counts(), parts["test"].class_counts())
    return LabelledDataset(parts["train"], parts["val"], parts["test"], manifest, listed_at)


def not_enough_reason(labels_by_video: Mapping[str, int], groups: Mapping[str, str]) -> str:
    """What a split lacking a class needs: videos of each class, and with groups, groups of each class."""
    def by_class(counts: Counter) -> dict[str, int]:   # REAL, FAKE: the same order whatever the data's
        return {name: counts[name] for name in LABELS}

    videos = by_class(Counter(LABEL_NAMES[y] for y in labels_by_video.values()))
    text = f"need at least {MIN_GROUPS_PER_CLASS} labelled videos of each class, have {videos}"
    if not groups:
        return text
    units = {(split_unit(v, groups), y) for v, y in labels_by_video.items()}
    per_class = by_class(Counter(LABEL_NAMES[y] for _, y in units))
    return (f"{text}; videos that share a split group (a person, a source video) always go to the same split, "
            f"so each class needs at least {MIN_GROUPS_PER_CLASS} groups, and enough that one can move to the "
            f"split lacking it without leaving its own split without a class: have {per_class} groups "
            f"({len(groups)} of the videos are grouped)")


def count_labelled(store: ObjectStore, keys: Sequence[str], labels: Mapping[str, str | None] | None = None) -> int:
    """Rows with a REAL/FAKE label in the shards ``keys`` (reads the label column, and video_id with ``labels``).

    ``labels`` (see :func:`read_faces`) overrides the shards' labels for the videos it names.
    """
    if not keys:
        return 0
    fs, base = store.pyarrow_filesystem()
    columns = ["video_id", "label"] if labels else ["label"]
    table = pads.dataset([f"{base}/{k}" for k in keys], filesystem=fs, format="parquet").to_table(columns=columns)
    if labels:
        table = apply_labels(table, labels)
    return _count(_known_label(table))


def _known_label(table: pa.Table) -> pa.ChunkedArray:
    """True for rows labelled REAL or FAKE; null and unknown labels are False."""
    return pc.fill_null(pc.is_in(table["label"], value_set=pa.array(list(LABELS), table.schema.field("label").type)),
                        False)
