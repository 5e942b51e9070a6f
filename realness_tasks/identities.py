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
* **The tables** (``identities``, ``face_identities``; this module alone writes them): assignment
  once per face, operator merges, splits, names and deletion (:func:`forget`).
* **The rule** (:class:`IdentityRule`): a face's raw log-odds minus its person's offset, where
  the offset is how far that person's reference faces (videos labelled REAL or under trusted-real
  prefixes, scored by the same model) sit above the reference faces of everyone, shrunk toward
  zero while the reference is small. A person whose real footage the model finds suspicious (a
  soft camera, heavy make-up) thus stops looking fake, and a fake of them stands out against
  their own footage. The face's own video never counts in its reference.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from realness_tasks.db import Database
from realness_tasks.metrics import log_odds
from realness_tasks.shards import read_shard, table_to_bytes
from realness_tasks.storage import ObjectStore

log = logging.getLogger(__name__)


class UnknownIdentity(LookupError):
    pass


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


@dataclass(frozen=True)
class FaceIdentity:
    """One face's identity (a row of ``face_identities``)."""

    video_id: str
    frame_index: int
    face_index: int
    identity_id: int
    embedded: bool              # its own embedding decided it; else it took its nearest embedded face's
    distance: float | None      # to the identity's centroid when assigned; None for a new identity or inherited


def load_index(db: Database, embedder: str) -> IdentityIndex:
    rows = db.query("SELECT identity_id, centroid, faces FROM identities WHERE embedder = :e ORDER BY identity_id",
                    {"e": embedder})
    top = db.query("SELECT COALESCE(MAX(identity_id), 0) AS top FROM identities")[0]["top"]
    return IdentityIndex([int(r["identity_id"]) for r in rows],
                         [np.asarray(json.loads(r["centroid"]), np.float64) for r in rows],
                         [int(r["faces"]) for r in rows], int(top) + 1)


def assigned_videos(db: Database, video_ids: Sequence[str]) -> set[str]:
    if not video_ids:
        return set()
    found: set[str] = set()
    for start in range(0, len(video_ids), 500):
        chunk = list(video_ids[start:start + 500])
        marks = ", ".join(f":v{i}" for i in range(len(chunk)))
        found |= {r["video_id"] for r in db.query(f"SELECT DISTINCT video_id FROM face_identities WHERE video_id IN "
                                                  f"({marks})", {f"v{i}": v for i, v in enumerate(chunk)})}
    return found


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
        if db.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7210427)"))
        known = assigned_videos(db, [v.video_id for v in videos])
        index = load_index(db, embedder)
        before = dict(zip(index.ids, index.sizes, strict=True))
        rows: list[FaceIdentity] = []
        touched: set[int] = set()
        for video in videos:
            if video.video_id in known:
                result[video.video_id] = _assigned_before(conn, video)
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


def _assigned_before(conn, video: VideoFaces) -> np.ndarray:
    """The identities a video's faces were given before (-1 for a face without a row)."""
    rows = conn.execute(sa.text("SELECT frame_index, face_index, identity_id FROM face_identities "
                                "WHERE video_id = :v"), {"v": video.video_id}).all()
    known = {(int(r.frame_index), int(r.face_index)): int(r.identity_id) for r in rows}
    return np.asarray([known.get((int(f), int(i)), -1) for f, i in zip(video.frame_index, video.face_index,
                                                                        strict=True)], np.int64)


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
        params = {"id": identity, "centroid": json.dumps([round(float(x), 6) for x in index.centroids[at]]),
                  "faces": index.sizes[at], "now": now, "embedder": embedder}
        if identity in before:
            conn.execute(sa.text("UPDATE identities SET centroid = :centroid, faces = :faces, last_seen_at = :now "
                                 "WHERE identity_id = :id"), params)
        else:
            conn.execute(sa.text("INSERT INTO identities (identity_id, name, embedder, centroid, faces, "
                                 "first_seen_at, last_seen_at) VALUES (:id, NULL, :embedder, :centroid, :faces, "
                                 ":now, :now)"), params)
    for gone, keep in merges.items():
        _move_faces(conn, gone, keep, now)
    if rows:
        final = [{**row.__dict__, "identity_id": merges.get(row.identity_id, row.identity_id),
                  "embedded": int(row.embedded), "now": now} for row in rows]
        conn.execute(sa.text("INSERT INTO face_identities (video_id, frame_index, face_index, identity_id, embedded, "
                             "distance, assigned_at) VALUES (:video_id, :frame_index, :face_index, :identity_id, "
                             ":embedded, :distance, :now)"), final)


def _move_faces(conn, gone: int, keep: int, now: datetime) -> None:
    """Everything of identity ``gone`` becomes ``keep``'s; ``gone`` is deleted (its name kept if ``keep`` has none)."""
    conn.execute(sa.text("UPDATE face_identities SET identity_id = :keep WHERE identity_id = :gone"),
                 {"keep": keep, "gone": gone})
    conn.execute(sa.text("UPDATE face_scores SET identity_id = :keep WHERE identity_id = :gone"),
                 {"keep": keep, "gone": gone})
    conn.execute(sa.text(
        "UPDATE identities SET name = COALESCE(name, (SELECT g.name FROM identities g WHERE g.identity_id = :gone)), "
        "first_seen_at = CASE WHEN first_seen_at <= (SELECT g.first_seen_at FROM identities g WHERE g.identity_id = "
        ":gone) THEN first_seen_at ELSE (SELECT g.first_seen_at FROM identities g WHERE g.identity_id = :gone) END, "
        "last_seen_at = :now WHERE identity_id = :keep"), {"keep": keep, "gone": gone, "now": now})
    conn.execute(sa.text("DELETE FROM identities WHERE identity_id = :gone"), {"gone": gone})


def identity_row(db: Database, identity_id: int) -> dict:
    rows = db.query("SELECT * FROM identities WHERE identity_id = :id", {"id": identity_id})
    if not rows:
        raise UnknownIdentity(f"no identity {identity_id}: `realness identities list` shows them")
    return rows[0]


def list_identities(db: Database) -> list[dict]:
    return db.query("SELECT i.identity_id, i.name, i.faces AS embedded_faces, i.first_seen_at, i.last_seen_at, "
                    "COUNT(DISTINCT f.video_id) AS videos FROM identities i LEFT JOIN face_identities f ON "
                    "f.identity_id = i.identity_id GROUP BY i.identity_id, i.name, i.faces, i.first_seen_at, "
                    "i.last_seen_at ORDER BY i.identity_id")


def name(db: Database, identity_id: int, new_name: str | None) -> None:
    """An operator's name for an identity (never guessed by the pipeline); None clears it."""
    identity_row(db, identity_id)
    db.execute("UPDATE identities SET name = :name WHERE identity_id = :id",
               {"name": (new_name or "").strip() or None, "id": identity_id})


def merge(db: Database, keep: int, gone: int, now: datetime) -> None:
    """An operator's merge: ``gone``'s faces become ``keep``'s, centroids weighted by size."""
    if keep == gone:
        raise ValueError("cannot merge an identity with itself")
    a, b = identity_row(db, keep), identity_row(db, gone)
    ca, cb = np.asarray(json.loads(a["centroid"])), np.asarray(json.loads(b["centroid"]))
    total = int(a["faces"]) + int(b["faces"])
    centroid = (ca * int(a["faces"]) + cb * int(b["faces"])) / max(total, 1)
    with db.transaction() as conn:
        _move_faces(conn, gone, keep, now)
        conn.execute(sa.text("UPDATE identities SET centroid = :c, faces = :n WHERE identity_id = :id"),
                     {"c": json.dumps([round(float(x), 6) for x in centroid]), "n": total, "id": keep})


def split(db: Database, identity_id: int, video_id: str, embeddings: Mapping[tuple[int, int], np.ndarray],
          now: datetime) -> int:
    """An operator's split: one video's faces of ``identity_id`` become a new identity; returns its id.

    ``embeddings`` maps (frame_index, face_index) to the embeddings of that video's faces (from its
    shard): both centroids are recomputed from them, so the next assignment sees the split.
    """
    row = identity_row(db, identity_id)
    faces = db.query("SELECT frame_index, face_index, embedded FROM face_identities WHERE identity_id = :id AND "
                     "video_id = :v", {"id": identity_id, "v": video_id})
    if not faces:
        raise UnknownIdentity(f"identity {identity_id} has no face in video {video_id}")
    if len(db.query("SELECT DISTINCT video_id FROM face_identities WHERE identity_id = :id", {"id": identity_id})) < 2:
        raise ValueError(f"identity {identity_id} lives in one video only: nothing to split off")
    moved = [embeddings[(r["frame_index"], r["face_index"])] for r in faces
             if r["embedded"] and (r["frame_index"], r["face_index"]) in embeddings]
    if not moved:
        raise ValueError(f"video {video_id} has no embedded face of identity {identity_id} in its shard")
    centroid = np.mean(moved, axis=0)
    old = np.asarray(json.loads(row["centroid"]))
    rest = int(row["faces"]) - len(moved)
    remaining = (old * int(row["faces"]) - centroid * len(moved)) / max(rest, 1)
    new_id = int(db.query("SELECT COALESCE(MAX(identity_id), 0) AS top FROM identities")[0]["top"]) + 1
    with db.transaction() as conn:
        conn.execute(sa.text("INSERT INTO identities (identity_id, name, embedder, centroid, faces, first_seen_at, "
                             "last_seen_at) VALUES (:id, NULL, :embedder, :c, :n, :now, :now)"),
                     {"id": new_id, "embedder": row["embedder"], "c": json.dumps([round(float(x), 6) for x in centroid]),
                      "n": len(moved), "now": now})
        conn.execute(sa.text("UPDATE identities SET centroid = :c, faces = :n WHERE identity_id = :id"),
                     {"c": json.dumps([round(float(x), 6) for x in remaining]), "n": max(rest, 0), "id": identity_id})
        for statement in ("UPDATE face_identities SET identity_id = :new WHERE identity_id = :id AND video_id = :v",
                          "UPDATE face_scores SET identity_id = :new WHERE identity_id = :id AND video_id = :v"):
            conn.execute(sa.text(statement), {"new": new_id, "id": identity_id, "v": video_id})
    return new_id


def identity_faces(db: Database, identity_id: int) -> dict[str, set[tuple[int, int]]]:
    """video id -> (frame_index, face_index) of the identity's faces."""
    out: dict[str, set[tuple[int, int]]] = {}
    for r in db.query("SELECT video_id, frame_index, face_index FROM face_identities WHERE identity_id = :id",
                      {"id": identity_id}):
        out.setdefault(r["video_id"], set()).add((int(r["frame_index"]), int(r["face_index"])))
    return out


def forget_rows(db: Database, identity_id: int) -> int:
    """Delete the identity, its face assignments and its link from face scores; returns faces unlinked."""
    identity_row(db, identity_id)
    count = db.query("SELECT COUNT(*) AS n FROM face_identities WHERE identity_id = :id", {"id": identity_id})[0]["n"]
    with db.transaction() as conn:
        conn.execute(sa.text("UPDATE face_scores SET identity_id = NULL, reference_faces = NULL, p_identity = NULL "
                             "WHERE identity_id = :id"), {"id": identity_id})
        conn.execute(sa.text("DELETE FROM face_identities WHERE identity_id = :id"), {"id": identity_id})
        conn.execute(sa.text("DELETE FROM identities WHERE identity_id = :id"), {"id": identity_id})
    return int(count)


def references(db: Database, model_version: str, trusted_uri_prefixes: Sequence[str],
               extra: Iterable[tuple[int, str, float]] = (), exclude_videos: Iterable[str] = ()
               ) -> dict[int, Reference]:
    """Every identity's reference under ``model_version``: faces in videos labelled REAL or under a
    trusted-real prefix, with the raw log-odds the version gave them (``extra``: (identity, video,
    log-odds) of faces scored in this run, not yet in the table), leaving out ``exclude_videos``
    (the ones the model was fitted on)."""
    excluded = set(exclude_videos)
    trusted = " OR ".join(f"v.source_uri LIKE :t{i} ESCAPE '\\'" for i in range(len(trusted_uri_prefixes)))
    where = "v.label = 'REAL'" + (f" OR {trusted}" if trusted else "")
    rows = db.query(
        "SELECT fs.identity_id, fs.video_id, fs.p_raw, fs.p_fake FROM face_scores fs JOIN videos v ON "
        f"v.video_id = fs.video_id WHERE fs.model_version = :m AND fs.identity_id IS NOT NULL AND ({where})",
        {"m": model_version, **{f"t{i}": _like_prefix(p) for i, p in enumerate(trusted_uri_prefixes)}})
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


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"



# --- deleting one person's data -------------------------------------------------------------------


@dataclass(frozen=True)
class Forgotten:
    identity_id: int
    faces: int                  # face assignments deleted
    shards_rewritten: list[str]  # shard keys whose embeddings of this person were removed


def video_shards(store: ObjectStore, prefixes: Sequence[str], video_ids: Iterable[str]) -> dict[str, list[str]]:
    """video id -> keys of every shard of it under ``prefixes`` (published, staged or quarantined)."""
    wanted = set(video_ids)
    found: dict[str, list[str]] = {}
    for prefix in prefixes:
        for obj in store.list(prefix):
            stem = obj.key.rsplit("/", 1)[-1].removesuffix(".parquet")
            if obj.key.endswith(".parquet") and stem in wanted:
                found.setdefault(stem, []).append(obj.key)
    return found


def shard_embeddings(store: ObjectStore, key: str) -> dict[tuple[int, int], np.ndarray]:
    """(frame_index, face_index) -> embedding of a shard's embedded faces."""
    table = read_shard(store.get_bytes(key))
    if "embedding" not in table.column_names:
        return {}
    return {(int(f), int(i)): np.asarray(e, np.float64)
            for f, i, e in zip(table.column("frame_index").to_pylist(), table.column("face_index").to_pylist(),
                               table.column("embedding").to_pylist(), strict=True) if e is not None}


def forget(db: Database, store: ObjectStore, shard_prefixes: Sequence[str], identity_id: int) -> Forgotten:
    """Delete one person's biometric data: their embeddings in every shard (rewritten in place, the
    face crops kept), their face assignments, their identity row and the identity columns of their
    face scores. The shards are rewritten first, so an interrupted run can simply be repeated."""
    faces = identity_faces(db, identity_id)
    rewritten = []
    for video_id, keys in sorted(video_shards(store, shard_prefixes, faces).items()):
        for key in sorted(keys):
            table = read_shard(store.get_bytes(key))
            if "embedding" not in table.column_names:
                continue
            frames, indices = table.column("frame_index").to_pylist(), table.column("face_index").to_pylist()
            embeddings = table.column("embedding").to_pylist()
            cleared = [None if (f, i) in faces[video_id] else e
                       for f, i, e in zip(frames, indices, embeddings, strict=True)]
            if cleared == embeddings:
                continue
            at = table.column_names.index("embedding")
            table = table.set_column(at, table.schema.field("embedding"),
                                     pa.array(cleared, type=table.schema.field("embedding").type))
            store.put_bytes(key, table_to_bytes(table))
            rewritten.append(key)
    count = forget_rows(db, identity_id)
    log.info("identity %d forgotten: %d face assignments, embeddings removed from %d shard(s)", identity_id, count,
             len(rewritten))
    return Forgotten(identity_id, count, rewritten)
