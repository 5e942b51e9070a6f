"""Where identity data lives: this module alone writes ``identities`` and ``face_identities``, and
it removes a person's embeddings from the shards (:func:`forget`).

``identities`` holds one row per person (centroid, embedded faces, an operator's name),
``face_identities`` which person each face shows. The identity columns of ``face_scores`` follow a
merge, split or deletion through ``verdicts``, which owns that table, in the same transaction.
Clustering and the identity rule are in ``identities``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realness_tasks import verdicts
from realness_tasks.db import Database
from realness_tasks.shards import read_shard, table_to_bytes
from realness_tasks.storage import ObjectStore

log = logging.getLogger(__name__)

# Serialises concurrent assigners on PostgreSQL (SQLite has one writer anyway).
_ASSIGN_LOCK = 7210427


class UnknownIdentity(LookupError):
    """An identity (or a video's shard) that an operator's command names does not exist; the CLI reports it."""


@dataclass(frozen=True)
class FaceIdentity:
    """One face's identity (a row of ``face_identities``)."""

    video_id: str
    frame_index: int
    face_index: int
    identity_id: int
    embedded: bool              # its own embedding decided it; else it took its nearest embedded face's
    distance: float | None      # to the identity's centroid when assigned; None for a new identity or inherited


def _centroid_text(centroid: np.ndarray) -> str:
    return json.dumps([round(float(x), 6) for x in centroid])


def centroid_of(row: Mapping) -> np.ndarray:
    """The centroid of an ``identities`` row."""
    return np.asarray(json.loads(row["centroid"]), np.float64)


def lock_for_assignment(db: Database, conn: Connection) -> None:
    """Hold the assignment lock until ``conn``'s transaction ends (PostgreSQL; a no-op on SQLite)."""
    if db.dialect == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ASSIGN_LOCK})


def index_rows(db: Database, embedder: str) -> list[dict]:
    """(identity_id, centroid, faces) of the identities of ``embedder``, by id."""
    return db.query("SELECT identity_id, centroid, faces FROM identities WHERE embedder = :e ORDER BY identity_id",
                    {"e": embedder})


def next_identity_id(db: Database) -> int:
    """The id a new identity gets: one above every id used, whatever its embedder."""
    return int(db.query("SELECT COALESCE(MAX(identity_id), 0) AS top FROM identities")[0]["top"]) + 1


def assigned_videos(db: Database, video_ids: Sequence[str]) -> set[str]:
    """Those of ``video_ids`` whose faces have identities."""
    found: set[str] = set()
    for start in range(0, len(video_ids), 500):
        chunk = list(video_ids[start:start + 500])
        marks = ", ".join(f":v{i}" for i in range(len(chunk)))
        found |= {r["video_id"] for r in db.query(f"SELECT DISTINCT video_id FROM face_identities WHERE video_id IN "
                                                  f"({marks})", {f"v{i}": v for i, v in enumerate(chunk)})}
    return found


def assigned_before(conn: Connection, video_id: str) -> dict[tuple[int, int], int]:
    """(frame_index, face_index) -> identity of a video's faces."""
    rows = conn.execute(sa.text("SELECT frame_index, face_index, identity_id FROM face_identities "
                                "WHERE video_id = :v"), {"v": video_id}).all()
    return {(int(r.frame_index), int(r.face_index)): int(r.identity_id) for r in rows}


def add_identity(conn: Connection, identity_id: int, embedder: str, centroid: np.ndarray, faces: int,
                 now: datetime) -> None:
    """A new, unnamed identity."""
    conn.execute(sa.text("INSERT INTO identities (identity_id, name, embedder, centroid, faces, first_seen_at, "
                         "last_seen_at) VALUES (:id, NULL, :embedder, :centroid, :faces, :now, :now)"),
                 {"id": identity_id, "embedder": embedder, "centroid": _centroid_text(centroid), "faces": faces,
                  "now": now})


def set_centroid(conn: Connection, identity_id: int, centroid: np.ndarray, faces: int,
                 seen_at: datetime | None = None) -> None:
    """An identity's new centroid and size; ``seen_at`` moves ``last_seen_at`` when given."""
    seen = ", last_seen_at = :now" if seen_at is not None else ""
    conn.execute(sa.text(f"UPDATE identities SET centroid = :centroid, faces = :faces{seen} WHERE identity_id = :id"),
                 {"id": identity_id, "centroid": _centroid_text(centroid), "faces": faces, "now": seen_at})


def add_faces(conn: Connection, rows: Sequence[FaceIdentity], now: datetime) -> None:
    """Insert the ``face_identities`` rows of newly assigned faces, inside the caller's transaction."""
    if rows:
        conn.execute(sa.text("INSERT INTO face_identities (video_id, frame_index, face_index, identity_id, embedded, "
                             "distance, assigned_at) VALUES (:video_id, :frame_index, :face_index, :identity_id, "
                             ":embedded, :distance, :now)"),
                     [{**row.__dict__, "embedded": int(row.embedded), "now": now} for row in rows])


def move_faces(conn: Connection, gone: int, keep: int, now: datetime) -> None:
    """Everything of identity ``gone`` becomes ``keep``'s; ``gone`` is deleted (its name kept if ``keep`` has none)."""
    conn.execute(sa.text("UPDATE face_identities SET identity_id = :keep WHERE identity_id = :gone"),
                 {"keep": keep, "gone": gone})
    verdicts.move_face_identities(conn, gone, keep)
    conn.execute(sa.text(
        "UPDATE identities SET name = COALESCE(name, (SELECT g.name FROM identities g WHERE g.identity_id = :gone)), "
        "first_seen_at = CASE WHEN first_seen_at <= (SELECT g.first_seen_at FROM identities g WHERE g.identity_id = "
        ":gone) THEN first_seen_at ELSE (SELECT g.first_seen_at FROM identities g WHERE g.identity_id = :gone) END, "
        "last_seen_at = :now WHERE identity_id = :keep"), {"keep": keep, "gone": gone, "now": now})
    conn.execute(sa.text("DELETE FROM identities WHERE identity_id = :gone"), {"gone": gone})


def move_video(conn: Connection, identity_id: int, new_id: int, video_id: str) -> None:
    """One video's faces of ``identity_id`` become ``new_id``'s (an operator's split)."""
    conn.execute(sa.text("UPDATE face_identities SET identity_id = :new WHERE identity_id = :id AND video_id = :v"),
                 {"new": new_id, "id": identity_id, "v": video_id})
    verdicts.move_face_identities(conn, identity_id, new_id, video_id)


def identity_row(db: Database, identity_id: int) -> dict:
    """The ``identities`` row of ``identity_id``; :class:`UnknownIdentity` when there is none."""
    rows = db.query("SELECT * FROM identities WHERE identity_id = :id", {"id": identity_id})
    if not rows:
        raise UnknownIdentity(f"no identity {identity_id}: `realness identities list` shows them")
    return rows[0]


def list_identities(db: Database) -> list[dict]:
    """Every identity with its name, embedded faces, how many videos show it and when it was seen, by id."""
    return db.query("SELECT i.identity_id, i.name, i.faces AS embedded_faces, i.first_seen_at, i.last_seen_at, "
                    "COUNT(DISTINCT f.video_id) AS videos FROM identities i LEFT JOIN face_identities f ON "
                    "f.identity_id = i.identity_id GROUP BY i.identity_id, i.name, i.faces, i.first_seen_at, "
                    "i.last_seen_at ORDER BY i.identity_id")


def rename(db: Database, identity_id: int, name: str | None) -> None:
    """Set an identity's operator-given name (None clears it)."""
    db.execute("UPDATE identities SET name = :name WHERE identity_id = :id", {"name": name, "id": identity_id})


def faces_in_video(db: Database, identity_id: int, video_id: str) -> list[dict]:
    """(frame_index, face_index, embedded) of the identity's faces in one video."""
    return db.query("SELECT frame_index, face_index, embedded FROM face_identities WHERE identity_id = :id AND "
                    "video_id = :v", {"id": identity_id, "v": video_id})


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
        verdicts.unlink_identity(conn, identity_id)
        conn.execute(sa.text("DELETE FROM face_identities WHERE identity_id = :id"), {"id": identity_id})
        conn.execute(sa.text("DELETE FROM identities WHERE identity_id = :id"), {"id": identity_id})
    return int(count)


# --- deleting one person's data -------------------------------------------------------------------


@dataclass(frozen=True)
class Forgotten:
    """What :func:`forget` removed of one person: their face assignments and their embeddings in these shards."""

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
