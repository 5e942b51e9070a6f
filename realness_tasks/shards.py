"""Parquet face shards: the schema, and writing and reading them.

One shard per video, at ``<faces_prefix>date=YYYY-MM-DD/<video_id>.parquet`` (Hive partitioning
by the date of the run that published it; publishing a video again removes its older shard). Each row is one face crop; ``docs/shards.md`` documents
the columns. The schema is explicit so that a shard that drifts from it fails validation.
"""

from __future__ import annotations

import io
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from realness_tasks.storage import ObjectStore, StoredObject

SHARD_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),       # sha256 of the video file
    pa.field("source_uri", pa.string(), nullable=False),
    pa.field("frame_index", pa.int32(), nullable=False),     # index in the decoded stream
    pa.field("timestamp_s", pa.float64(), nullable=False),
    pa.field("face_index", pa.int16(), nullable=False),      # 0 = dominant face of the frame
    pa.field("detector", pa.string(), nullable=False),       # mtcnn | azure | both
    pa.field("confidence", pa.float32(), nullable=False),    # detection confidence in [0, 1]
    pa.field("box_x", pa.int32(), nullable=False),           # box in original-frame pixels
    pa.field("box_y", pa.int32(), nullable=False),
    pa.field("box_w", pa.int32(), nullable=False),
    pa.field("box_h", pa.int32(), nullable=False),
    pa.field("frame_width", pa.int32(), nullable=False),
    pa.field("frame_height", pa.int32(), nullable=False),
    pa.field("landmarks", pa.list_(pa.float32())),           # x1, y1, ..., x5, y5 (eyes, nose, mouth corners)
    pa.field("crop_jpeg", pa.binary(), nullable=False),
    pa.field("crop_width", pa.int32(), nullable=False),
    pa.field("crop_height", pa.int32(), nullable=False),
    pa.field("crop_margin", pa.float64(), nullable=False),   # the margin the crop was cut with (REALNESS_CROP_MARGIN)
    pa.field("label", pa.string()),                          # FAKE | REAL from metadata, null when unknown
    pa.field("azure_status", pa.string()),                   # null when Azure is off; else ok / skipped / failed reason
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("created_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("embedding", pa.list_(pa.float32())),           # face-recognition embedding (REALNESS_IDENTITY_ENABLED), else null
    pa.field("track_id", pa.int32()),                        # the face's track in the video (realness_tasks.tracks)
])


@dataclass(frozen=True)
class FaceRow:
    """One face crop as stored in a shard (field names and order follow ``SHARD_SCHEMA``)."""

    video_id: str
    source_uri: str
    frame_index: int
    timestamp_s: float
    face_index: int
    detector: str
    confidence: float
    box_x: int
    box_y: int
    box_w: int
    box_h: int
    frame_width: int
    frame_height: int
    landmarks: list[float] | None
    crop_jpeg: bytes
    crop_width: int
    crop_height: int
    crop_margin: float
    label: str | None
    azure_status: str | None
    run_id: str
    created_at: datetime = field(default_factory=lambda: datetime.now().astimezone())
    embedding: list[float] | None = None
    track_id: int | None = None


if [f.name for f in fields(FaceRow)] != SHARD_SCHEMA.names:
    raise ImportError("FaceRow and SHARD_SCHEMA disagree")


def shard_key(faces_prefix: str, run_date: str, video_id: str) -> str:
    """Where a video's shard of one run date lives under ``faces_prefix``."""
    return f"{faces_prefix}date={run_date}/{video_id}.parquet"


def shard_video_id(key: str) -> str:
    """The video id a shard's key names."""
    return posixpath.basename(key).removesuffix(".parquet")


def current_shards(store: ObjectStore, faces_prefix: str) -> dict[str, StoredObject]:
    """video id -> its newest shard under ``faces_prefix`` (the latest date= partition).

    Every reader takes this one shard per video: an older shard left beside it (published before
    superseded shards were removed, or by a run that died between publishing and removing) would
    count the video's faces twice.
    """
    newest: dict[str, StoredObject] = {}
    for obj in store.list(faces_prefix):
        if obj.key.endswith(".parquet"):
            video_id = shard_video_id(obj.key)
            if video_id not in newest or obj.key > newest[video_id].key:  # date=YYYY-MM-DD sorts by date
                newest[video_id] = obj
    return newest


def rows_to_table(rows: Sequence[FaceRow]) -> pa.Table:
    """Face rows as an Arrow table of the shard schema."""
    return pa.Table.from_pylist([asdict(r) for r in rows], schema=SHARD_SCHEMA)


# Crops are JPEG already: compressing them again gains nothing, the metadata columns are small.
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": ["video_id", "source_uri", "detector",
                                                                             "label", "azure_status", "run_id"]}
# Faces a ShardWriter holds before writing them as a row group: about 6 MB of crops.
ROWS_PER_GROUP = 512


def table_to_bytes(table: pa.Table) -> bytes:
    """A shard table as Parquet bytes."""
    sink = io.BytesIO()
    pq.write_table(table, sink, **PARQUET_OPTIONS)
    return sink.getvalue()


class ShardWriter:
    """A shard written to a local file as its rows come, ``ROWS_PER_GROUP`` rows per row group, so
    the faces of a long video are never all in memory at once."""

    def __init__(self, path: Path, rows_per_group: int = ROWS_PER_GROUP):
        self.path = path
        self.rows_per_group = rows_per_group
        self.rows = 0
        self._pending: list[FaceRow] = []
        self._writer = pq.ParquetWriter(path, SHARD_SCHEMA, **PARQUET_OPTIONS)

    def write(self, row: FaceRow) -> None:
        """Add one row; a full row group goes to the file."""
        self._pending.append(row)
        self.rows += 1
        if len(self._pending) >= self.rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(rows_to_table(self._pending))
            self._pending = []

    def close(self) -> None:
        """Write the rows still held and the file's footer."""
        self._flush()
        self._writer.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_shard(data: bytes) -> pa.Table:
    """A shard's Parquet bytes as an Arrow table."""
    return pq.read_table(io.BytesIO(data))


def concat(tables: Iterable[pa.Table]) -> pa.Table:
    """Several shard tables as one, in the shard schema's columns and types."""
    return pa.concat_tables([t.select(SHARD_SCHEMA.names).cast(SHARD_SCHEMA) for t in tables])
