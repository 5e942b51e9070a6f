"""The ingest ledger: one row per source object, saying what became of it and why.

This module alone writes ``ingest_ledger``, ``videos`` and ``runs``.

Rows are upserted, so a retried or re-run task updates its row instead of adding one; the
``attempts`` column counts how often an object was processed. ``videos`` holds one row per
distinct content (the video id is the sha256 of the bytes).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realness_tasks.db import Database


class Status(StrEnum):
    """What became of a source object (the ledger's ``status``); every status but PENDING and STAGED is final."""

    PENDING = "PENDING"            # being processed (a crash leaves it here; the next run retries it)
    STAGED = "STAGED"              # shard written to staging, waiting for validation
    PUBLISHED = "PUBLISHED"        # validated shard under the faces prefix
    NO_FACE = "NO_FACE"            # readable video, no face found in the sampled frames
    DUPLICATE = "DUPLICATE"        # same bytes as a video already ingested under another key
    EMPTY = "EMPTY"                # zero-byte object
    NOT_VIDEO = "NOT_VIDEO"        # content is not a supported container
    UNREADABLE = "UNREADABLE"      # container recognised but no frame decodes (corrupt, truncated)
    TOO_LARGE = "TOO_LARGE"        # frame size over the configured limit
    UNSAFE_KEY = "UNSAFE_KEY"      # object key or symbolic link that would escape the store root (or a refused link)
    QUARANTINED = "QUARANTINED"    # shard failed validation; kept under the quarantine prefix
    SIDECAR = "SIDECAR"            # a metadata.json read for labels (the reason says how many)
    BAD_SIDECAR = "BAD_SIDECAR"    # a metadata.json that could not be used; its videos go on unlabelled
    SIDECAR_GONE = "SIDECAR_GONE"  # a metadata.json no longer listed; the labels it gave stay

    @property
    def terminal(self) -> bool:
        return self not in (Status.PENDING, Status.STAGED)

    @property
    def video(self) -> bool:
        """False for rows about label sidecars, which are not videos (no verdict, no shard)."""
        return self not in (Status.SIDECAR, Status.BAD_SIDECAR, Status.SIDECAR_GONE)


@dataclass(frozen=True)
class LedgerEntry:
    """One ledger row, and what ingest hands from task to task about an object (it fits XCom).

    ``staged_key``, ``detector_stats`` and ``stage_seconds`` travel with it but are not stored: the row's ``shard_uri``
    holds the staged shard's URI while the status is STAGED.
    """

    source_uri: str
    source_etag: str
    status: str                 # a Status value (kept a plain str so the record serialises as is)
    run_id: str | None = None
    video_id: str | None = None
    reason: str | None = None
    shard_uri: str | None = None
    frames_sampled: int = 0
    faces: int = 0
    seconds_covered: float | None = None  # from the first sampled frame to the end of the last (frames.Coverage)
    largest_gap_s: float | None = None    # longest stretch between looks, the video's start and end included
    decode_path: str | None = None        # how the sampled frames were decoded: "keyframes" or "sequential"
    staged_key: str | None = None
    detector_stats: dict[str, int] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # where the time went (stage_timings.STAGES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", str(Status(self.status)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LedgerEntry:
        return cls(**data)


@dataclass(frozen=True)
class VideoRecord:
    """A ``videos`` row as a writer offers it (None: unknown); :func:`save_videos` decides what a known row keeps."""

    video_id: str
    source_uri: str
    size_bytes: int
    label: str | None
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    duration_s: float | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def record(db: Database, entry: LedgerEntry) -> None:
    """Upsert the ledger row of ``entry.source_uri``; ``attempts`` grows when a new run touches it."""
    db.execute(
        """
        INSERT INTO ingest_ledger (source_uri, source_etag, video_id, status, reason, shard_uri,
                                   frames_sampled, faces, seconds_covered, largest_gap_s, decode_path, run_id,
                                   attempts, updated_at)
        VALUES (:source_uri, :source_etag, :video_id, :status, :reason, :shard_uri,
                :frames_sampled, :faces, :seconds_covered, :largest_gap_s, :decode_path, :run_id, 1, :now)
        ON CONFLICT (source_uri) DO UPDATE SET
            source_etag = excluded.source_etag,
            video_id = CASE WHEN excluded.source_etag = ingest_ledger.source_etag
                            THEN COALESCE(excluded.video_id, ingest_ledger.video_id) ELSE excluded.video_id END,
            status = excluded.status,
            reason = excluded.reason,
            shard_uri = excluded.shard_uri,
            frames_sampled = excluded.frames_sampled,
            faces = excluded.faces,
            seconds_covered = excluded.seconds_covered,
            largest_gap_s = excluded.largest_gap_s,
            decode_path = excluded.decode_path,
            attempts = ingest_ledger.attempts + CASE WHEN excluded.status = :pending THEN 1 ELSE 0 END,
            run_id = excluded.run_id,
            updated_at = excluded.updated_at
        """,
        {"source_uri": entry.source_uri, "source_etag": entry.source_etag, "video_id": entry.video_id,
         "status": entry.status, "reason": entry.reason, "shard_uri": entry.shard_uri,
         "frames_sampled": entry.frames_sampled, "faces": entry.faces, "seconds_covered": entry.seconds_covered,
         "largest_gap_s": entry.largest_gap_s, "decode_path": entry.decode_path, "run_id": entry.run_id,
         "now": _now(), "pending": str(Status.PENDING)},
    )


def processed_sources(db: Database) -> dict[str, str]:
    """source_uri -> etag of every object that reached a final status (PENDING ones are retried)."""
    rows = db.query("SELECT source_uri, source_etag, status FROM ingest_ledger")
    return {r["source_uri"]: r["source_etag"] for r in rows if Status(r["status"]).terminal}


def claim_video(db: Database, video_id: str, source_uri: str, size_bytes: int, label: str | None) -> str:
    """Register content ``video_id``; returns the source that owns it (the first to claim it).

    The primary key makes the claim atomic, so two tasks ingesting the same bytes under different
    keys at the same moment agree on one owner and the other records a DUPLICATE. A claim never
    changes a row that exists (:func:`save_videos` does).
    """
    db.execute(
        """
        INSERT INTO videos (video_id, source_uri, size_bytes, label, first_seen_at)
        VALUES (:video_id, :source_uri, :size_bytes, :label, :now)
        ON CONFLICT (video_id) DO NOTHING
        """,
        {"video_id": video_id, "source_uri": source_uri, "size_bytes": size_bytes, "label": label, "now": _now()},
    )
    return db.query("SELECT source_uri FROM videos WHERE video_id = :v", {"v": video_id})[0]["source_uri"]


# The label rule, for a row that exists; ``{offered}`` is the label a writer brings (NULL: none).
_LABEL_RULE = """
    CASE WHEN EXISTS (SELECT 1 FROM labels WHERE labels.video_id = videos.video_id)
         THEN (SELECT video_labels.label FROM video_labels WHERE video_labels.video_id = videos.video_id)
         ELSE COALESCE({offered}, videos.label) END"""

_SAVE_VIDEO = sa.text(f"""
    INSERT INTO videos (video_id, source_uri, size_bytes, label, width, height, fps, frame_count,
                        duration_s, first_seen_at)
    VALUES (:video_id, :source_uri, :size_bytes, :label, :width, :height, :fps, :frame_count, :duration_s, :now)
    ON CONFLICT (video_id) DO UPDATE SET
        source_uri = CASE WHEN videos.source_uri = '' THEN excluded.source_uri ELSE videos.source_uri END,
        size_bytes = CASE WHEN videos.size_bytes > 0 THEN videos.size_bytes ELSE excluded.size_bytes END,
        label = {_LABEL_RULE.format(offered="excluded.label")},
        width = COALESCE(excluded.width, videos.width),
        height = COALESCE(excluded.height, videos.height),
        fps = COALESCE(excluded.fps, videos.fps),
        frame_count = COALESCE(excluded.frame_count, videos.frame_count),
        duration_s = COALESCE(excluded.duration_s, videos.duration_s)
""")


def save_videos(conn: Connection, videos: Sequence[VideoRecord]) -> None:
    """Insert or complete ``videos`` rows, inside the caller's transaction; every writer of the table goes here.

    The rule for a row that exists: its label is the effective label of the ``labels`` table
    (``video_labels``, NULL once every source withdrew it) when that table knows the video, else the
    newest label offered, and a known label is never overwritten by NULL. ``source_uri`` stays the
    owner's (the first claim, :func:`claim_video`) and ``size_bytes`` never falls back to 0 ("unknown",
    what scoring offers for a shard from elsewhere); the measurements keep their value when one is
    offered as NULL.
    """
    if videos:
        conn.execute(_SAVE_VIDEO, [{**asdict(video), "now": _now()} for video in videos])


def upsert_video(db: Database, video: VideoRecord) -> None:
    """:func:`save_videos` for one video, in a transaction of its own."""
    with db.transaction() as conn:
        save_videos(conn, [video])


def apply_labels(conn: Connection, video_ids: Iterable[str]) -> None:
    """Bring ``videos.label`` of ``video_ids`` to the rule of :func:`save_videos` after the ``labels`` table changed."""
    statement = sa.text(f"UPDATE videos SET label = {_LABEL_RULE.format(offered='NULL')} WHERE video_id = :v")
    for video_id in sorted(set(video_ids)):
        conn.execute(statement, {"v": video_id})


def ledger_rows(db: Database) -> dict[str, dict]:
    """source_uri -> (source_etag, status, reason, video_id) of every ledger row, for discovery."""
    return {r["source_uri"]: r for r in db.query("SELECT source_uri, source_etag, status, reason, video_id "
                                                 "FROM ingest_ledger")}


def video_ids_with_status(db: Database, statuses: Iterable[Status]) -> set[str]:
    """The video ids of the ledger rows in one of ``statuses``."""
    wanted = _status_params(statuses)
    return {r["video_id"] for r in db.query(f"SELECT DISTINCT video_id FROM ingest_ledger WHERE status IN "
                                            f"({', '.join(':' + k for k in wanted)}) AND video_id IS NOT NULL",
                                            wanted)}


def entries_with_status(db: Database, statuses: Iterable[Status]) -> list[dict]:
    """(source_uri, video_id, status, reason) of the rows in one of ``statuses``, least recently updated first."""
    wanted = _status_params(statuses)
    return db.query(f"SELECT source_uri, video_id, status, reason FROM ingest_ledger WHERE status IN "
                    f"({', '.join(':' + k for k in wanted)}) ORDER BY updated_at, source_uri", wanted)


def _status_params(statuses: Iterable[Status]) -> dict[str, str]:
    params = {f"status{i}": str(Status(s)) for i, s in enumerate(statuses)}
    if not params:
        raise ValueError("no status to select")
    return params


def record_run(db: Database, *, run_id: str, dag_id: str, started_at: datetime, summary: Mapping[str, Any],
               status: str = "success") -> None:
    """Upsert the ``runs`` row of a finished run with its summary (a retried run rewrites it)."""
    db.execute(
        """
        INSERT INTO runs (run_id, dag_id, started_at, finished_at, status, summary)
        VALUES (:run_id, :dag_id, :started, :finished, :status, :summary)
        ON CONFLICT (run_id) DO UPDATE SET finished_at = excluded.finished_at, status = excluded.status,
            summary = excluded.summary
        """,
        {"run_id": run_id, "dag_id": dag_id, "started": started_at.replace(tzinfo=None), "finished": _now(),
         "status": status, "summary": json.dumps(summary)},
    )


def entries(db: Database, run_id: str | None = None) -> list[dict]:
    """Every ledger row, or only those ``run_id`` touched, by source URI."""
    sql = "SELECT * FROM ingest_ledger" + (" WHERE run_id = :r" if run_id else "") + " ORDER BY source_uri"
    return db.query(sql, {"r": run_id} if run_id else None)


def status_counts(db: Database) -> dict[str, int]:
    """How many ledger rows have each status, for ``realness status``."""
    return {r["status"]: int(r["n"]) for r in
            db.query("SELECT status, COUNT(*) AS n FROM ingest_ledger GROUP BY status ORDER BY status")}
