"""Identities: faces of the same person across the archive, and judging a face against that person's real footage.

Three parts, each used by scoring and the CLI:

* **Clustering** (:class:`IdentityIndex`, :func:`group_video`): a video's embedded faces are first
  grouped among themselves, then each group joins the archive identity whose centroid lies within
  ``match_distance`` (dlib's descriptor: the same person within about 0.6 pairwise; a centroid is
  steadier, so the default is 0.45) or founds a new one. Identities whose centroids come within
  ``merge_distance`` (0.40) of each other are merged; a merged centroid is a mean that moves toward
  the average face, so merging at the joining distance chained ten people into one identity on the
  real clips (``docs/identity-benchmark.md``). Faces without their own embedding (ingest embeds the faces of
  a few frames per video) take the identity of the nearest embedded face of the same video
  (:func:`nearest_embedded`).
* **The tables** (``identities``, ``face_identities``, written by ``identity_store`` alone): assignment
  once per face, operator merges, splits and names; deleting a person is ``identity_store.forget``.
* **The rule** (:class:`IdentityRule`): a face's raw log-odds minus its person's offset, where
  the offset is how far that person's reference faces (videos labelled REAL or under trusted-real
  prefixes, scored by the same model) sit above the reference faces of everyone, shrunk toward
  zero while the reference is small. A person whose real footage the model finds suspicious (a
  soft camera, heavy make-up) thus stops looking fake, and a fake of them stands out against
  their own footage. The face's own video never counts in its reference.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from realness_tasks import identity_store, queries
from realness_tasks.db import Database
# The operator's lookups are part of this module's interface (the CLI's ``identities`` commands).
from realness_tasks.identity_store import FaceIdentity, UnknownIdentity, identity_row, list_identities  # noqa: F401
from realness_tasks.metrics import log_odds

log = logging.getLogger(__name__)


# --- clustering ---------------------------------------------------------------------------------


def group_video(embeddings: np.ndarray, match_distance: float) -> np.ndarray:
    """Group one video's face embeddings: each joins the nearest group centroid within ``match_distance``
    or starts a group. Returns a group number per row (0, 1, ...), in order of first appearance."""
    groups: list[int] = []
    sums: list[np.ndarray] = []
    counts: list[int] = []
    for vector in np.asarray(embeddings, np.float64):
        if sums:
            centroids = np.stack(sums) / np.asarray(counts)[:, None]
            distances = np.linalg.norm(centroids - vector, axis=1)
            best = int(np.argmin(distances))
            if distances[best] <= match_distance:
                sums[best] = sums[best] + vector
                counts[best] += 1
                groups.append(best)
                continue
        sums.append(vector.copy())
        counts.append(1)
        groups.append(len(sums) - 1)
    return np.asarray(groups, np.int64)


@dataclass
class IdentityIndex:
    """The archive's identities as centroids (mean embedding) and sizes (embedded faces)."""

    ids: list[int] = field(default_factory=list)
    centroids: list[np.ndarray] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    next_id: int = 1

    def nearest(self, vector: np.ndarray) -> tuple[int | None, float]:
        if not self.ids:
            return None, float("inf")
        distances = np.linalg.norm(np.stack(self.centroids) - vector, axis=1)
        best = int(np.argmin(distances))
        return self.ids[best], float(distances[best])

    def add(self, vector: np.ndarray, count: int, match_distance: float) -> tuple[int, float | None]:
        """Put ``count`` faces whose mean embedding is ``vector`` into the nearest identity within
        ``match_distance``, or a new one; returns (identity, distance to it or None when new)."""
        identity, distance = self.nearest(vector)
        if identity is not None and distance <= match_distance:
            at = self.ids.index(identity)
            total = self.sizes[at] + count
            self.centroids[at] = (self.centroids[at] * self.sizes[at] + vector * count) / total
            self.sizes[at] = total
            return identity, distance
        identity = self.next_id
        self.next_id += 1
        self.ids.append(identity)
        self.centroids.append(np.asarray(vector, np.float64).copy())
        self.sizes.append(count)
        return identity, None

    def absorb(self, keep: int, gone: int) -> None:
        """Merge identity ``gone`` into ``keep`` (size-weighted centroid)."""
        a, b = self.ids.index(keep), self.ids.index(gone)
        total = self.sizes[a] + self.sizes[b]
        self.centroids[a] = (self.centroids[a] * self.sizes[a] + self.centroids[b] * self.sizes[b]) / max(total, 1)
        self.sizes[a] = total
        for column in (self.ids, self.centroids, self.sizes):
            del column[b]

    def close_pairs(self, match_distance: float) -> list[tuple[int, int]]:
        """Identities that met: (larger, smaller) pairs whose centroids lie within ``match_distance``, closest first."""
        if len(self.ids) < 2:
            return []
        c = np.stack(self.centroids)
        distances = np.linalg.norm(c[:, None, :] - c[None, :, :], axis=-1)
        pairs = []
        for i, j in zip(*np.nonzero(np.triu(distances <= match_distance, k=1)), strict=True):
            big, small = (i, j) if self.sizes[i] >= self.sizes[j] else (j, i)
            pairs.append((float(distances[i, j]), self.ids[big], self.ids[small]))
        return [(big, small) for _, big, small in sorted(pairs)]


def nearest_embedded(timestamps: np.ndarray, boxes: np.ndarray, embedded: np.ndarray) -> np.ndarray:
    """For each face, the row of the embedded face of the same video it most likely shows.

    Cost = seconds apart + 2 x the distance between box centres in box sizes: the same place a
    moment ago is the same person far more often than not. ``boxes`` are (x, y, w, h) rows,
    ``embedded`` a boolean mask; embedded faces map to themselves.
    """
    rows = np.flatnonzero(embedded)
    if rows.size == 0:
        raise ValueError("no embedded face to take an identity from")
    boxes = np.asarray(boxes, np.float64)
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    size = np.maximum(boxes[:, 2:].max(axis=1), 1.0)
    apart = np.abs(np.asarray(timestamps, np.float64)[:, None] - np.asarray(timestamps, np.float64)[rows][None, :])
    moved = np.linalg.norm(centres[:, None, :] - centres[rows][None, :, :], axis=-1) / size[:, None]
    best = rows[np.argmin(apart + 2.0 * moved, axis=1)]
    best[embedded] = np.flatnonzero(embedded)
    return best


# --- the rule -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One identity's reference under one model: its reference faces' raw log-odds, by video."""

    identity_id: int
    sums: Mapping[str, float]       # video id -> sum of its reference faces' log-odds
    counts: Mapping[str, int]       # video id -> number of its reference faces

    def excluding(self, video_id: str) -> tuple[float, int, int]:
        """(sum, faces, videos) of the reference without ``video_id``."""
        keep = [v for v in self.counts if v != video_id]
        return (float(sum(self.sums[v] for v in keep)), int(sum(self.counts[v] for v in keep)), len(keep))


@dataclass(frozen=True)
class IdentityRule:
    """z' = z - n / (n + shrinkage_faces) x (reference mean - population mean), with n >= min_reference_faces."""

    shrinkage_faces: float
    min_reference_faces: int

    def offsets(self, video_id: str, identities: np.ndarray, references: Mapping[int, Reference],
                population_mean: float) -> tuple[np.ndarray, np.ndarray]:
        """Per face: the log-odds offset to subtract (0 without a reference) and the reference faces used (0: none)."""
        offsets = np.zeros(len(identities), np.float64)
        used = np.zeros(len(identities), np.int64)
        for identity in {int(i) for i in identities if i is not None and i >= 0}:
            reference = references.get(identity)
            if reference is None:
                continue
            total, n, _ = reference.excluding(video_id)
            if n < self.min_reference_faces:
                continue
            mine = identities == identity
            offsets[mine] = n / (n + self.shrinkage_faces) * (total / n - population_mean)
            used[mine] = n
        return offsets, used

    def to_json(self) -> dict[str, float]:
        return {"shrinkage_faces": self.shrinkage_faces, "min_reference_faces": self.min_reference_faces}


def population_mean(references: Mapping[int, Reference]) -> float | None:
    """Mean log-odds over every identity's reference faces (None when there are none)."""
    total = sum(sum(r.sums.values()) for r in references.values())
    count = sum(sum(r.counts.values()) for r in references.values())
    return total / count if count else None


# --- the tables ---------------------------------------------------------------------------------


def load_index(db: Database, embedder: str) -> IdentityIndex:
    """The ``embedder``'s identities from the table, as the index new faces are matched against."""
    rows = identity_store.index_rows(db, embedder)
    return IdentityIndex([int(r["identity_id"]) for r in rows], [identity_store.centroid_of(r) for r in rows],
                         [int(r["faces"]) for r in rows], identity_store.next_identity_id(db))


@dataclass(frozen=True)
class VideoFaces:
    """What clustering needs of one video's faces (from its shard)."""

    video_id: str
    frame_index: np.ndarray
    face_index: np.ndarray
    timestamps: np.ndarray
    boxes: np.ndarray                   # (x, y, w, h) rows
    embeddings: list[np.ndarray | None]


def assign(db: Database, videos: Iterable[VideoFaces], *, embedder: str, match_distance: float,
           merge_distance: float, now: datetime) -> dict[str, np.ndarray]:
    """Give every face of ``videos`` an identity, once: videos assigned before keep theirs.

    Returns video id -> identity per face (-1 for a video with no embedded face). Runs in one
    transaction, serialised on PostgreSQL, so concurrent scorers cannot found the same person twice.
    """
    videos = list(videos)
    result: dict[str, np.ndarray] = {}
    with db.transaction() as conn:
        identity_store.lock_for_assignment(db, conn)
        known = identity_store.assigned_videos(db, [v.video_id for v in videos])
        index = load_index(db, embedder)
        before = dict(zip(index.ids, index.sizes, strict=True))
        rows: list[FaceIdentity] = []
        touched: set[int] = set()
        for video in videos:
            if video.video_id in known:
                before_faces = identity_store.assigned_before(conn, video.video_id)
                result[video.video_id] = np.asarray([before_faces.get((int(f), int(i)), -1) for f, i in zip(
                    video.frame_index, video.face_index, strict=True)], np.int64)
                continue
            embedded = np.asarray([e is not None for e in video.embeddings], bool)
            if not embedded.any():
                result[video.video_id] = np.full(len(video.embeddings), -1, np.int64)
                continue
            vectors = np.stack([e for e in video.embeddings if e is not None]).astype(np.float64)
            groups = group_video(vectors, match_distance)
            identity_of_row = np.full(len(video.embeddings), -1, np.int64)
            distance_of_row: dict[int, float | None] = {}
            embedded_rows = np.flatnonzero(embedded)
            for group in np.unique(groups):
                members = embedded_rows[groups == group]
                identity, distance = index.add(vectors[groups == group].mean(axis=0), len(members), match_distance)
                identity_of_row[members] = identity
                touched.add(identity)
                for row in members:
                    distance_of_row[int(row)] = distance
            source = nearest_embedded(video.timestamps, video.boxes, embedded)
            identity_of_row = identity_of_row[source]
            result[video.video_id] = identity_of_row
            rows.extend(FaceIdentity(video.video_id, int(video.frame_index[i]), int(video.face_index[i]),
                                     int(identity_of_row[i]), bool(embedded[i]),
                                     distance_of_row.get(i) if embedded[i] else None)
                        for i in range(len(identity_of_row)))
        merges = _merge_met(index, merge_distance) if merge_distance > 0 else {}
        for gone, keep in merges.items():
            for faces in result.values():
                faces[faces == gone] = keep
        _write_assignment(conn, index, before, touched, rows, merges, embedder, now)
    if merges:
        log.info("identities merged as they met: %s", ", ".join(f"{g} -> {k}" for g, k in sorted(merges.items())))
    return result


def _merge_met(index: IdentityIndex, merge_distance: float) -> dict[int, int]:
    """Merge identities whose centroids came within ``merge_distance``; returns gone -> kept."""
    merged: dict[int, int] = {}
    while pairs := index.close_pairs(merge_distance):
        keep, gone = pairs[0]
        index.absorb(keep, gone)
        merged = {g: (keep if k == gone else k) for g, k in merged.items()}
        merged[gone] = keep
    return merged


def _write_assignment(conn, index: IdentityIndex, before: Mapping[int, int], touched: set[int],
                      rows: Sequence[FaceIdentity], merges: Mapping[int, int], embedder: str, now: datetime) -> None:
    """Identity rows first (a kept identity may be new), then merged identities' faces and names move to them."""
    for identity in sorted(touched | set(merges.values())):
        if identity in merges or identity not in index.ids:
            continue
        at = index.ids.index(identity)
        if identity in before:
            identity_store.set_centroid(conn, identity, index.centroids[at], index.sizes[at], seen_at=now)
        else:
            identity_store.add_identity(conn, identity, embedder, index.centroids[at], index.sizes[at], now)
    for gone, keep in merges.items():
        identity_store.move_faces(conn, gone, keep, now)
    identity_store.add_faces(conn, [replace(row, identity_id=merges.get(row.identity_id, row.identity_id))
                                    for row in rows], now)


def name(db: Database, identity_id: int, new_name: str | None) -> None:
    """An operator's name for an identity (never guessed by the pipeline); None clears it."""
    identity_row(db, identity_id)
    identity_store.rename(db, identity_id, (new_name or "").strip() or None)


def merge(db: Database, keep: int, gone: int, now: datetime) -> None:
    """An operator's merge: ``gone``'s faces become ``keep``'s, centroids weighted by size."""
    if keep == gone:
        raise ValueError("cannot merge an identity with itself")
    a, b = identity_row(db, keep), identity_row(db, gone)
    total = int(a["faces"]) + int(b["faces"])
    centroid = (identity_store.centroid_of(a) * int(a["faces"]) + identity_store.centroid_of(b) * int(b["faces"])
                ) / max(total, 1)
    with db.transaction() as conn:
        identity_store.move_faces(conn, gone, keep, now)
        identity_store.set_centroid(conn, keep, centroid, total)


def split(db: Database, identity_id: int, video_id: str, embeddings: Mapping[tuple[int, int], np.ndarray],
          now: datetime) -> int:
    """An operator's split: one video's faces of ``identity_id`` become a new identity; returns its id.

    ``embeddings`` maps (frame_index, face_index) to the embeddings of that video's faces (from its
    shard): both centroids are recomputed from them, so the next assignment sees the split.
    """
    row = identity_row(db, identity_id)
    faces = identity_store.faces_in_video(db, identity_id, video_id)
    if not faces:
        raise UnknownIdentity(f"identity {identity_id} has no face in video {video_id}")
    if len(identity_store.identity_faces(db, identity_id)) < 2:
        raise ValueError(f"identity {identity_id} lives in one video only: nothing to split off")
    moved = [embeddings[(r["frame_index"], r["face_index"])] for r in faces
             if r["embedded"] and (r["frame_index"], r["face_index"]) in embeddings]
    if not moved:
        raise ValueError(f"video {video_id} has no embedded face of identity {identity_id} in its shard")
    centroid = np.mean(moved, axis=0)
    rest = int(row["faces"]) - len(moved)
    remaining = (identity_store.centroid_of(row) * int(row["faces"]) - centroid * len(moved)) / max(rest, 1)
    new_id = identity_store.next_identity_id(db)
    with db.transaction() as conn:
        identity_store.add_identity(conn, new_id, row["embedder"], centroid, len(moved), now)
        identity_store.set_centroid(conn, identity_id, remaining, max(rest, 0))
        identity_store.move_video(conn, identity_id, new_id, video_id)
    return new_id


def references(db: Database, model_version: str, trusted_uri_prefixes: Sequence[str],
               extra: Iterable[tuple[int, str, float]] = (), exclude_videos: Iterable[str] = ()
               ) -> dict[int, Reference]:
    """Every identity's reference under ``model_version``: faces in videos labelled REAL or under a
    trusted-real prefix, with the raw log-odds the version gave them (``extra``: (identity, video,
    log-odds) of faces scored in this run, not yet in the table), leaving out ``exclude_videos``
    (the ones the model was fitted on)."""
    excluded = set(exclude_videos)
    rows = queries.reference_face_scores(db, model_version, trusted_uri_prefixes)
    sums: dict[int, dict[str, float]] = {}
    counts: dict[int, dict[str, int]] = {}

    def add(identity: int, video_id: str, z: float) -> None:
        sums.setdefault(identity, {}).setdefault(video_id, 0.0)
        counts.setdefault(identity, {}).setdefault(video_id, 0)
        sums[identity][video_id] += z
        counts[identity][video_id] += 1

    for r in rows:
        if r["video_id"] in excluded:
            continue
        p = r["p_raw"] if r["p_raw"] is not None else r["p_fake"]
        add(int(r["identity_id"]), r["video_id"], float(log_odds(np.asarray([p]))[0]))
    for identity, video_id, z in extra:
        if video_id not in excluded:
            add(int(identity), video_id, float(z))
    return {i: Reference(i, sums[i], counts[i]) for i in sums}
