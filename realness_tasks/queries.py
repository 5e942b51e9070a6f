"""The reads that show results, and those that join several owners' tables; this module writes nothing.

Each table has one owner module, which alone writes it and holds the reads the pipeline decides
on (``docs/CONTRACTS.md`` lists them). What the CLI, the verdicts page, reports and evaluation
read (the views ``latest_verdicts`` and ``daily_summary`` among it), and reads that join the tables
of several owners (the identity rule's references), live here, so those modules hold no SQL.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from realness_tasks.db import Database

if TYPE_CHECKING:
    from realness_tasks.verdicts import Segment

# The verdicts page's orderings of ``latest_verdicts``, by the name its links use.
VERDICT_ORDERS = {
    "p_fake_desc": "CASE WHEN p_fake IS NULL THEN 1 ELSE 0 END, p_fake DESC, decided_at DESC, video_id",
    "p_fake_asc": "CASE WHEN p_fake IS NULL THEN 1 ELSE 0 END, p_fake ASC, decided_at DESC, video_id",
    "newest": "decided_at DESC, video_id",
}


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (with ``ESCAPE '\\'``) matching the strings that start with ``prefix``."""
    return re.sub(r"([\\%_])", r"\\\1", prefix) + "%"


def verdict_table(db: Database) -> list[dict[str, Any]]:
    """The latest verdict of every video as the CLI prints it, most suspicious first."""
    return db.query(
        "SELECT source_uri AS video, verdict, p_fake, faces_scored, model_version, reason FROM latest_verdicts "
        "ORDER BY CASE WHEN p_fake IS NULL THEN 1 ELSE 0 END, p_fake DESC, source_uri")


def source_under(uri_prefix: str | None) -> tuple[str, dict[str, Any]]:
    """A WHERE condition and its parameters: rows with a source URI, under ``uri_prefix`` when given."""
    if not uri_prefix:
        return "source_uri IS NOT NULL", {}
    return ("source_uri IS NOT NULL AND SUBSTR(source_uri, 1, :length) = :prefix",
            {"length": len(uri_prefix), "prefix": uri_prefix})


def latest_verdicts_under(db: Database, uri_prefix: str | None) -> list[dict[str, Any]]:
    """The latest verdict of every video with a source URI, under ``uri_prefix`` when given."""
    where, params = source_under(uri_prefix)
    return db.query(f"SELECT video_id, source_uri, verdict, p_fake, model_version FROM latest_verdicts WHERE {where} "
                    "ORDER BY source_uri", params)


def latest_segments(db: Database, uri_prefix: str | None = None) -> dict[str, list[Segment]]:
    """The segments of each video's latest verdict (view ``latest_segments``) by source URI, in time
    order; only sources under ``uri_prefix`` when given."""
    from realness_tasks.verdicts import Segment

    where, params = source_under(uri_prefix)
    by_source: dict[str, list[Segment]] = {}
    for row in db.query("SELECT source_uri, track_id, start_s, end_s, faces, p_fake, verdict FROM latest_segments "
                        f"WHERE {where} ORDER BY source_uri, start_s, track_id", params):
        by_source.setdefault(row["source_uri"], []).append(
            Segment(int(row["track_id"]), float(row["start_s"]), float(row["end_s"]), int(row["faces"]),
                    float(row["p_fake"]), row["verdict"]))
    return by_source


def latest_verdicts_of(db: Database, video: str) -> list[dict[str, Any]]:
    """The latest verdict rows of a video id or source URI, newest first."""
    return db.query("SELECT * FROM latest_verdicts WHERE video_id = :v OR source_uri = :v ORDER BY decided_at DESC",
                    {"v": video})


def latest_verdicts_page(db: Database, *, verdict: str = "", date_from: str = "", date_to: str = "",
                         model_version: str = "", source_prefix: str = "", order: str = "p_fake_desc",
                         limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """One page of ``latest_verdicts`` under the given filters (empty: no filter), and how many match in all."""
    where, params = [], {}
    for column, test, value in (("verdict", "=", verdict), ("run_date", ">=", date_from),
                                ("run_date", "<=", date_to), ("model_version", "=", model_version)):
        if value:
            where.append(f"{column} {test} :p{len(params)}")
            params[f"p{len(params)}"] = value
    if source_prefix:
        where.append("source_uri LIKE :prefix ESCAPE '\\'")
        params["prefix"] = like_prefix(source_prefix)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = db.query(f"SELECT COUNT(*) AS n FROM latest_verdicts{clause}", params)[0]["n"]
    rows = db.query(f"SELECT * FROM latest_verdicts{clause} ORDER BY {VERDICT_ORDERS[order]} "
                    "LIMIT :limit OFFSET :offset", {**params, "limit": limit, "offset": offset})
    return rows, int(total)


def daily_summary(db: Database, date_from: str = "", date_to: str = "") -> list[dict[str, Any]]:
    """``daily_summary`` rows (day, model_version, fakes, real, uncertain) with a scored video, within the dates."""
    where, params = ["fakes + real + uncertain > 0"], {}
    if date_from:
        where.append("day >= :date_from")
        params["date_from"] = date_from
    if date_to:
        where.append("day <= :date_to")
        params["date_to"] = date_to
    return db.query("SELECT day, model_version, fakes, real, uncertain FROM daily_summary WHERE "
                    + " AND ".join(where) + " ORDER BY model_version, day", params)


def report_face_scores(db: Database, video_id: str, model_version: str) -> list[dict[str, Any]]:
    """A verdict's face scores with the name of each face's identity, for its report."""
    return db.query(
        "SELECT s.frame_index, s.face_index, s.p_fake, s.label, s.confidence, s.identity_id, s.reference_faces, "
        "s.p_identity, i.name FROM face_scores s LEFT JOIN identities i ON i.identity_id = s.identity_id "
        "WHERE s.video_id = :v AND s.model_version = :m", {"v": video_id, "m": model_version})


def reference_face_scores(db: Database, model_version: str, trusted_uri_prefixes: Sequence[str]) -> list[dict]:
    """(identity_id, video_id, p_raw, p_fake) of the faces with an identity that ``model_version`` scored in
    videos labelled REAL or under one of ``trusted_uri_prefixes``: the identity rule's references."""
    trusted = " OR ".join(f"v.source_uri LIKE :t{i} ESCAPE '\\'" for i in range(len(trusted_uri_prefixes)))
    where = "v.label = :real" + (f" OR {trusted}" if trusted else "")
    return db.query(
        "SELECT fs.identity_id, fs.video_id, fs.p_raw, fs.p_fake FROM face_scores fs JOIN videos v ON "
        f"v.video_id = fs.video_id WHERE fs.model_version = :m AND fs.identity_id IS NOT NULL AND ({where})",
        {"m": model_version, "real": "REAL", **{f"t{i}": like_prefix(p) for i, p in enumerate(trusted_uri_prefixes)}})



# --- single tables, for reports, the verdicts page and the CLI ---------------------------------------


def verdict_row(db: Database, video_id: str, model_version: str) -> dict:
    """The ``verdicts`` row of one video by one model; KeyError when there is none."""
    rows = db.query("SELECT * FROM verdicts WHERE video_id = :v AND model_version = :m",
                    {"v": video_id, "m": model_version})
    if not rows:
        raise KeyError(f"no verdict for video {video_id} by model {model_version}")
    return rows[0]


def find_verdicts(db: Database, video: str, model_version: str) -> list[dict]:
    """(video_id, model_version) of the verdicts by ``model_version`` of a video id or source URI, newest first."""
    return db.query("SELECT video_id, model_version FROM verdicts WHERE (video_id = :v OR source_uri = :v) "
                    "AND model_version = :m ORDER BY decided_at DESC", {"v": video, "m": model_version})


def run_verdicts(db: Database, run_id: str, wanted: Sequence[str]) -> list[dict]:
    """(video_id, model_version, verdict) of the verdicts ``run_id`` decided that are one of ``wanted``."""
    if not wanted:
        return []
    marks = {f"verdict{i}": v for i, v in enumerate(wanted)}
    return db.query("SELECT video_id, model_version, verdict FROM verdicts WHERE run_id = :run AND verdict IN ("
                    + ", ".join(":" + k for k in marks) + ") ORDER BY model_version, video_id",
                    {"run": run_id, **marks})


def versions_with_verdicts(db: Database) -> list[str]:
    """Every model version that decided a verdict, newest name first."""
    return [r["model_version"] for r in db.query("SELECT DISTINCT model_version FROM verdicts "
                                                 "ORDER BY model_version DESC")]


def report_uri(db: Database, video_id: str, model_version: str) -> str | None:
    """Where the verdict's report is stored (None: no verdict, or no report written)."""
    rows = db.query("SELECT report_uri FROM verdicts WHERE video_id = :v AND model_version = :m",
                    {"v": video_id, "m": model_version})
    return rows[0]["report_uri"] if rows else None


def segments_of(db: Database, video_id: str, model_version: str) -> list[Segment]:
    """The verdict's segments, in time order (``verdicts`` loads NumPy and PyArrow: the page's reads do not)."""
    from realness_tasks.verdicts import Segment

    return [Segment(r["track_id"], r["start_s"], r["end_s"], r["faces"], r["p_fake"], r["verdict"])
            for r in db.query("SELECT track_id, start_s, end_s, faces, p_fake, verdict FROM segments "
                              "WHERE video_id = :v AND model_version = :m ORDER BY start_s, track_id",
                              {"v": video_id, "m": model_version})]


def ledger_status(db: Database, source_uri: str) -> str | None:
    """The ledger status of one source object (None: not in the ledger)."""
    rows = db.query("SELECT status FROM ingest_ledger WHERE source_uri = :s", {"s": source_uri})
    return rows[0]["status"] if rows else None


def recent_versions(db: Database, limit: int) -> list[dict]:
    """The ``limit`` most recently registered versions: version, auc, f1_fake, threshold, promoted, reason."""
    return db.query("SELECT version, auc, f1_fake, threshold, promoted, reason FROM model_versions "
                    "ORDER BY created_at DESC LIMIT :limit", {"limit": limit})


def version_threshold(db: Database, model_version: str) -> float:
    """The decision threshold registered with ``model_version``; KeyError for a version not registered."""
    rows = db.query("SELECT threshold FROM model_versions WHERE version = :v", {"v": model_version})
    if not rows:
        raise KeyError(f"model version {model_version} is not in model_versions")
    return float(rows[0]["threshold"])
