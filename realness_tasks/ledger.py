"""The ingest ledger: one row per source object, saying what became of it and why.

Rows are upserted, so a retried or re-run task updates its row instead of adding one; the
``attempts`` column counts how often an object was processed. ``videos`` holds one row per
distinct content (the video id is the sha256 of the bytes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

from realness_tasks.db import Database


class Status(StrEnum):
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
            attempts = ingest_ledger.attempts + CASE WHEN excluded.status = 'PENDING' THEN 1 ELSE 0 END,
            run_id = excluded.run_id,
            updated_at = excluded.updated_at
        """,
        {"source_uri": entry.source_uri, "source_etag": entry.source_etag, "video_id": entry.video_id,
         "status": entry.status, "reason": entry.reason, "shard_uri": entry.shard_uri,
         "frames_sampled": entry.frames_sampled, "faces": entry.faces, "seconds_covered": entry.seconds_covered,
         "largest_gap_s": entry.largest_gap_s, "decode_path": entry.decode_path, "run_id": entry.run_id,
         "now": _now()},
    )


def processed_sources(db: Database) -> dict[str, str]:
    """source_uri -> etag of every object that reached a final status (PENDING ones are retried)."""
    rows = db.query("SELECT source_uri, source_etag, status FROM ingest_ledger")
    return {r["source_uri"]: r["source_etag"] for r in rows if Status(r["status"]).terminal}


def claim_video(db: Database, video_id: str, source_uri: str, size_bytes: int, label: str | None) -> str:
    """Register content ``video_id``; returns the source that owns it (the first to claim it).

    The primary key makes the claim atomic, so two tasks ingesting the same bytes under different
    keys at the same moment agree on one owner and the other records a DUPLICATE.
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


def upsert_video(db: Database, video: VideoRecord) -> None:
    db.execute(
        """
        INSERT INTO videos (video_id, source_uri, size_bytes, label, width, height, fps, frame_count,
                            duration_s, first_seen_at)
        VALUES (:video_id, :source_uri, :size_bytes, :label, :width, :height, :fps, :frame_count,
                :duration_s, :now)
        ON CONFLICT (video_id) DO UPDATE SET
            label = COALESCE(excluded.label, videos.label),
            width = COALESCE(excluded.width, videos.width),
            height = COALESCE(excluded.height, videos.height),
            fps = COALESCE(excluded.fps, videos.fps),
            frame_count = COALESCE(excluded.frame_count, videos.frame_count),
            duration_s = COALESCE(excluded.duration_s, videos.duration_s)
        """,
        {**video.__dict__, "now": _now()},
    )


def entries(db: Database, run_id: str | None = None) -> list[dict]:
    sql = "SELECT * FROM ingest_ledger" + (" WHERE run_id = :r" if run_id else "") + " ORDER BY source_uri"
    return db.query(sql, {"r": run_id} if run_id else None)


def status_counts(db: Database) -> dict[str, int]:
    return {r["status"]: int(r["n"]) for r in
            db.query("SELECT status, COUNT(*) AS n FROM ingest_ledger GROUP BY status ORDER BY status")}
