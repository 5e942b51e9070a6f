"""From face scores to one verdict per video, and publishing them.

The aggregation is the "confident strategy" of the DFDC winner (Selim Seferbekov, Deepfake
Detection Challenge 2020), adapted to a model's stored threshold; ``docs/scoring.md`` explains
the rule with examples. :func:`publish` writes a run's videos, face scores and verdicts in one
transaction, as upserts keyed by (video, model version), so a re-run rewrites the same rows.

This module alone writes ``face_scores``, ``verdicts``, ``segments`` and ``verdict_exports``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from realness_tasks import ledger
from realness_tasks.db import Database, as_utc
from realness_tasks.settings import ScoringSettings
from realness_tasks.storage import ObjectStore

FAKE, REAL, UNCERTAIN, NO_FACE, ERROR = "FAKE", "REAL", "UNCERTAIN", "NO_FACE", "ERROR"


@dataclass(frozen=True)
class FaceScore:
    """One scored face crop."""

    video_id: str
    frame_index: int
    face_index: int
    p_fake: float
    label: str          # FAKE when p_fake >= the model's threshold
    confidence: float   # probability of ``label``: p_fake for FAKE, 1 - p_fake for REAL
    p_raw: float | None = None   # the model's score before calibration (None: the model has no calibration)
    identity_id: int | None = None       # the person the face shows (REALNESS_IDENTITY_ENABLED), else None
    reference_faces: int | None = None   # reference faces of that identity it was judged against (None: none)
    p_identity: float | None = None      # p_fake relative to that reference; label and verdict use it when set
    track_id: int | None = None          # the face's track (shard column track_id); None: a shard without tracks
    timestamp_s: float | None = None     # where in the video; None: unknown (no segment can be timed)

    @property
    def p_judged(self) -> float:
        """The probability the label and the verdict use: identity-relative when the face had a reference."""
        return self.p_fake if self.p_identity is None else self.p_identity


@dataclass(frozen=True)
class Segment:
    """A run of consecutive faces of one track at or above the threshold (table ``segments``)."""

    track_id: int                # the track, or the face_index group of a shard without tracks
    start_s: float               # first face of the run
    end_s: float                 # last face of the run
    faces: int
    p_fake: float                # mean judged p_fake of the run's faces
    verdict: str                 # FAKE when sustained (segment rule), else UNCERTAIN

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s

    def describe(self) -> str:
        return (f"track {self.track_id} fake from {self.start_s:.1f} s to {self.end_s:.1f} s "
                f"({self.faces} faces, mean {self.p_fake:.2f})")


@dataclass(frozen=True)
class VideoVerdict:
    """One video's verdict under one model version, as :func:`publish` stores it in ``verdicts``."""

    video_id: str
    source_uri: str | None
    verdict: str                 # FAKE | REAL | UNCERTAIN | NO_FACE | ERROR
    p_fake: float | None         # the aggregated video score; None for NO_FACE and ERROR
    faces_scored: int
    fake_faces: int              # faces at or above the threshold
    reason: str | None           # which rule decided, or why there is no score
    segments: tuple[Segment, ...] = ()   # runs of fake faces per track, in time order


@dataclass(frozen=True)
class VideoRow:
    """What scoring knows about a video from its shard, to make sure ``videos`` has it."""

    video_id: str
    source_uri: str
    label: str | None
    width: int | None
    height: int | None


def face_score(video_id: str, frame_index: int, face_index: int, p_fake: float, threshold: float,
               p_raw: float | None = None, *, identity_id: int | None = None, reference_faces: int | None = None,
               p_identity: float | None = None, track_id: int | None = None,
               timestamp_s: float | None = None) -> FaceScore:
    """A scored face, labelled by ``p_identity`` when it was judged against a reference, else by ``p_fake``."""
    judged = p_fake if p_identity is None else p_identity
    fake = judged >= threshold
    return FaceScore(video_id, int(frame_index), int(face_index), float(p_fake), FAKE if fake else REAL,
                     float(judged if fake else 1.0 - judged), None if p_raw is None else float(p_raw),
                     identity_id, reference_faces, None if p_identity is None else float(p_identity),
                     None if track_id is None else int(track_id),
                     None if timestamp_s is None else float(timestamp_s))


def confident_score(p_fake: np.ndarray, threshold: float, settings: ScoringSettings) -> tuple[float, str]:
    """One person's score over their faces, and the rule that produced it.

    With n faces: if more than max(n / 2.5, ``min_confident_fakes``) are confidently fake, the
    mean of those; else if more than 90 % are confidently real, the mean of those; else the mean
    of all. A few strongly manipulated frames thus outweigh many unremarkable ones, as face swaps
    often fail only in some frames. "Confidently fake" is at or above
    max(``confident_fake``, threshold) and "confidently real" at or below
    min(``confident_real``, threshold), so neither can contradict the model's own threshold.
    """
    n = len(p_fake)
    fake_cut = max(settings.confident_fake, threshold)
    real_cut = min(settings.confident_real, threshold)
    confident_fakes = p_fake[p_fake >= fake_cut]
    if len(confident_fakes) > max(n / 2.5, settings.min_confident_fakes):
        return float(confident_fakes.mean()), f"{len(confident_fakes)} of {n} faces >= {fake_cut:.2f}"
    confident_reals = p_fake[p_fake <= real_cut]
    if len(confident_reals) > 0.9 * n:
        return float(confident_reals.mean()), f"{len(confident_reals)} of {n} faces <= {real_cut:.2f}"
    return float(p_fake.mean()), f"mean of all {n} faces"


def classify(score: float, threshold: float, uncertain_band: float) -> str:
    """FAKE at or above the threshold, REAL below it, UNCERTAIN inside the band around it.

    The band is ``uncertain_band`` wide on each side at threshold 0.5 and shrinks in proportion to
    the room left on that side, so a threshold near 0 or 1 does not swallow the confident scores:
    at threshold 0.9 and band 0.1 the band is [0.72, 0.92).
    """
    below = uncertain_band * threshold / 0.5
    above = uncertain_band * (1.0 - threshold) / 0.5
    if threshold - below < score < threshold + above:
        return UNCERTAIN
    return FAKE if score >= threshold else REAL


def person_key(face: FaceScore) -> int:
    """The group a face is judged in: its track, or its ``face_index`` in a shard without tracks."""
    return face.face_index if face.track_id is None else face.track_id


def fake_runs(faces: Sequence[FaceScore], threshold: float, settings: ScoringSettings) -> list[Segment]:
    """Every run of two or more consecutive timed faces of one person at or above ``threshold``.

    A run is FAKE (sustained) with at least ``segment_min_faces`` faces spanning at least
    ``segment_min_seconds``; else UNCERTAIN. Faces without a time make no run.
    """
    by_person: dict[int, list[FaceScore]] = {}
    for face in sorted((f for f in faces if f.timestamp_s is not None), key=lambda f: (f.timestamp_s, f.frame_index)):
        by_person.setdefault(person_key(face), []).append(face)
    runs: list[Segment] = []
    for person, timeline in sorted(by_person.items()):
        run: list[FaceScore] = []
        for face in [*timeline, None]:
            if face is not None and face.p_judged >= threshold:
                run.append(face)
                continue
            if len(run) >= 2:
                start, end = run[0].timestamp_s, run[-1].timestamp_s
                sustained = len(run) >= settings.segment_min_faces and end - start >= settings.segment_min_seconds
                runs.append(Segment(person, start, end, len(run), float(np.mean([f.p_judged for f in run])),
                                    FAKE if sustained else UNCERTAIN))
            run = []
    return sorted(runs, key=lambda r: (r.start_s, r.track_id))


def aggregate(video_id: str, source_uri: str | None, faces: Sequence[FaceScore], threshold: float,
              settings: ScoringSettings) -> VideoVerdict:
    """The verdict of one video from its scored faces.

    Faces are grouped per person: by track (``track_id``), or by ``face_index`` (0 = the frame's
    dominant face, 1 = the next...) in shards without tracks. Each group is scored with
    :func:`confident_score`, and the video takes the highest: a video is fake if anyone in it is.
    A group other than the largest counts only with more than ``min_confident_fakes`` faces, so a
    face detected in a frame or two (often a detector false positive) cannot decide the video on
    its own. Then the segment rule: a sustained run of fake faces in one group (:func:`fake_runs`)
    makes the video FAKE however short it is beside the rest, and the reason names the longest.
    """
    if not faces:
        return VideoVerdict(video_id, source_uri, NO_FACE, None, 0, 0, "no face crops in the shard")
    person = np.array([person_key(f) for f in faces])
    p_fake = np.array([f.p_judged for f in faces], dtype=np.float64)
    groups, sizes = np.unique(person, return_counts=True)
    largest = int(groups[np.argmax(sizes)])
    best: tuple[float, str] | None = None
    noun = "face" if faces[0].track_id is None else "track"
    for group in groups:
        in_group = p_fake[person == group]
        if group != largest and len(in_group) <= settings.min_confident_fakes:
            continue
        score, rule = confident_score(in_group, threshold, settings)
        if best is None or score > best[0]:
            best = (score, f"{noun} {group}: {rule}")
    if best is None:  # unreachable: the largest group is never skipped
        raise RuntimeError(f"video {video_id}: no face group could be scored")
    fake_faces = int(np.count_nonzero(p_fake >= threshold))
    score, reason = best
    verdict = classify(score, threshold, settings.uncertain_band)
    runs = tuple(fake_runs(faces, threshold, settings))
    sustained = [r for r in runs if r.verdict == FAKE]
    if sustained:
        longest = max(sustained, key=lambda r: (r.seconds, r.p_fake))
        if verdict != FAKE:
            verdict, score, reason = FAKE, longest.p_fake, f"segment rule: {longest.describe()}; {reason}"
        else:
            reason = f"{reason}; {longest.describe()}"
    return VideoVerdict(video_id, source_uri, verdict, score, len(faces), fake_faces, reason, runs)


def unscored(video_id: str, source_uri: str | None, verdict: str, reason: str | None) -> VideoVerdict:
    """A NO_FACE or ERROR verdict (nothing to score)."""
    return VideoVerdict(video_id, source_uri, verdict, None, 0, 0, reason)


_UPSERT_FACE_SCORE = sa.text("""
    INSERT INTO face_scores (video_id, frame_index, face_index, model_version, p_fake, label, confidence,
                             run_id, scored_at, p_raw, identity_id, reference_faces, p_identity)
    VALUES (:video_id, :frame_index, :face_index, :model_version, :p_fake, :label, :confidence, :run_id, :now,
            :p_raw, :identity_id, :reference_faces, :p_identity)
    ON CONFLICT (video_id, frame_index, face_index, model_version) DO UPDATE SET
        p_fake = excluded.p_fake, label = excluded.label, confidence = excluded.confidence, p_raw = excluded.p_raw,
        identity_id = excluded.identity_id, reference_faces = excluded.reference_faces,
        p_identity = excluded.p_identity, run_id = excluded.run_id, scored_at = excluded.scored_at
""")

_UPSERT_VERDICT = sa.text("""
    INSERT INTO verdicts (video_id, model_version, run_id, run_date, source_uri, verdict, p_fake, faces_scored,
                          fake_faces, reason, decided_at)
    VALUES (:video_id, :model_version, :run_id, :run_date, :source_uri, :verdict, :p_fake, :faces_scored,
            :fake_faces, :reason, :now)
    ON CONFLICT (video_id, model_version) DO UPDATE SET
        run_id = excluded.run_id, run_date = excluded.run_date, source_uri = excluded.source_uri,
        verdict = excluded.verdict, p_fake = excluded.p_fake, faces_scored = excluded.faces_scored,
        fake_faces = excluded.fake_faces, reason = excluded.reason, decided_at = excluded.decided_at,
        report_uri = NULL
""")

# A verdict's segments are replaced, not merged: a re-decision may find other runs, and a run from the
# earlier decision must not outlive it. Publishing the same decision again writes the same rows.
_DELETE_SEGMENTS = sa.text("DELETE FROM segments WHERE video_id = :video_id AND model_version = :model_version")

_INSERT_SEGMENT = sa.text("""
    INSERT INTO segments (video_id, model_version, track_id, start_s, end_s, faces, p_fake, verdict, run_id,
                          decided_at)
    VALUES (:video_id, :model_version, :track_id, :start_s, :end_s, :faces, :p_fake, :verdict, :run_id, :now)
""")

_EXPORT_PENDING = sa.text("""
    INSERT INTO verdict_exports (run_id, run_date, committed_at, exported_at, uri)
    VALUES (:run_id, :run_date, :now, NULL, NULL)
    ON CONFLICT (run_id) DO UPDATE SET run_date = excluded.run_date, committed_at = excluded.committed_at,
        exported_at = NULL
""")


def publish(db: Database, *, model_version: str, run_id: str, run_date: str, decided_at: datetime,
            videos: Sequence[VideoRow], faces: Sequence[FaceScore], verdicts: Sequence[VideoVerdict]) -> None:
    """Write one run's results in one transaction: all of them or, on any error, none.

    ``videos`` rows go through ``ledger.save_videos`` (a shard from elsewhere gets its row there, with
    ``size_bytes`` 0 for "unknown"; its rule decides what an existing row keeps). When the run
    decided verdicts, the same transaction marks its Parquet export as owed (``verdict_exports``), so
    a run that dies before writing the file leaves a debt that :func:`export_pending` pays. Each
    verdict's segments replace those of its video's earlier verdict by the same version.
    """
    common = {"model_version": model_version, "run_id": run_id, "run_date": run_date, "now": decided_at}
    segments = [{**asdict(segment), "video_id": v.video_id, **common} for v in verdicts for segment in v.segments]
    decided = [{**asdict(row), **common} for row in verdicts]
    with db.transaction() as conn:
        ledger.save_videos(conn, [ledger.VideoRecord(v.video_id, v.source_uri, 0, v.label, v.width, v.height)
                                  for v in videos])
        if faces:
            conn.execute(_UPSERT_FACE_SCORE, [{**asdict(face), **common} for face in faces])
        if verdicts:
            conn.execute(_UPSERT_VERDICT, decided)
            conn.execute(_DELETE_SEGMENTS, decided)
        if segments:
            conn.execute(_INSERT_SEGMENT, segments)
        if verdicts:
            conn.execute(_EXPORT_PENDING, common)


def pending_exports(db: Database) -> list[dict]:
    """Runs whose verdicts are committed but whose Parquet export was never written, oldest first."""
    return db.query("SELECT run_id, run_date FROM verdict_exports WHERE exported_at IS NULL "
                    "ORDER BY committed_at, run_id")


def export_pending(db: Database, store: ObjectStore, verdicts_prefix: str) -> list[str]:
    """Write every owed export (see :func:`publish`); returns their URIs. Raises if the store refuses one."""
    written = []
    for run in pending_exports(db):
        uri = export_run(db, store, verdicts_prefix, run["run_id"], run["run_date"])
        if uri:
            written.append(uri)
    return written


EXPORT_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("run_date", pa.string(), nullable=False),
    pa.field("source_uri", pa.string()),
    pa.field("verdict", pa.string(), nullable=False),
    pa.field("p_fake", pa.float64()),
    pa.field("faces_scored", pa.int32(), nullable=False),
    pa.field("fake_faces", pa.int32(), nullable=False),
    pa.field("reason", pa.string()),
    pa.field("decided_at", pa.timestamp("us", tz="UTC"), nullable=False),
])


def export_key(verdicts_prefix: str, run_date: str, run_id: str) -> str:
    """The Parquet key of a run's verdict export in its ``date=`` partition, the run id cut to key-safe characters."""
    safe_run = "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)
    return f"{verdicts_prefix}date={run_date}/verdicts-{safe_run}.parquet"


def export_run(db: Database, store: ObjectStore, verdicts_prefix: str, run_id: str, run_date: str) -> str | None:
    """Write the verdicts a run decided as Parquet; the same run always writes the same key and rows.

    Read from the database rather than from memory, so a re-run that finds nothing new to score
    rewrites the file with what the first attempt decided instead of emptying it. Returns the
    file's URI, or None when the run decided nothing.
    """
    rows = db.query("SELECT " + ", ".join(EXPORT_SCHEMA.names) + " FROM verdicts WHERE run_id = :run_id "
                    "ORDER BY video_id, model_version", {"run_id": run_id})
    if not rows:
        _mark_exported(db, run_id, None)  # its verdicts were all re-decided by later runs: nothing owed
        return None
    for row in rows:
        row["decided_at"] = as_utc(row["decided_at"])
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=EXPORT_SCHEMA), sink, compression="zstd")
    key = export_key(verdicts_prefix, run_date, run_id)
    store.put_bytes(key, sink.getvalue())
    _mark_exported(db, run_id, store.uri_for(key))
    return store.uri_for(key)


def _mark_exported(db: Database, run_id: str, uri: str | None) -> None:
    db.execute("UPDATE verdict_exports SET exported_at = :now, uri = :uri WHERE run_id = :run_id",
               {"now": datetime.now(timezone.utc).replace(tzinfo=None), "uri": uri, "run_id": run_id})


# --- what scoring reads, and the writes other modules ask for -------------------------------------------------


def scored_videos(db: Database, model_version: str) -> set[str]:
    """The videos with face scores by ``model_version``."""
    return {r["video_id"] for r in db.query("SELECT DISTINCT video_id FROM face_scores WHERE model_version = :v",
                                            {"v": model_version})}


def decided_videos(db: Database, model_version: str) -> set[str]:
    """The videos with a verdict by ``model_version``."""
    return {r["video_id"] for r in db.query("SELECT video_id FROM verdicts WHERE model_version = :v",
                                            {"v": model_version})}


def set_report_uri(db: Database, video_id: str, model_version: str, uri: str) -> None:
    """Record a written report with its verdict (a re-decision clears it, see :func:`publish`)."""
    db.execute("UPDATE verdicts SET report_uri = :uri WHERE video_id = :v AND model_version = :m",
               {"uri": uri, "v": video_id, "m": model_version})


def move_face_identities(conn: Connection, gone: int, keep: int, video_id: str | None = None) -> None:
    """Face scores of identity ``gone`` (in ``video_id`` only, when given) become ``keep``'s, inside the
    caller's transaction (the identity store's merges and splits)."""
    only_video = " AND video_id = :v" if video_id is not None else ""
    conn.execute(sa.text(f"UPDATE face_scores SET identity_id = :keep WHERE identity_id = :gone{only_video}"),
                 {"keep": keep, "gone": gone, "v": video_id})


def unlink_identity(conn: Connection, identity_id: int) -> None:
    """Clear the identity columns of the face scores of ``identity_id`` (a forgotten person), inside the
    caller's transaction."""
    conn.execute(sa.text("UPDATE face_scores SET identity_id = NULL, reference_faces = NULL, p_identity = NULL "
                         "WHERE identity_id = :id"), {"id": identity_id})
