"""Labels as facts of their own: which content is REAL or FAKE, according to which source, since when.

A label is keyed by the video's content (``video_id``, the sha256 of its bytes) and its source: the
URI of the ``metadata.json`` that gives it, or the video's own URI for a ``real/`` / ``fake/`` folder.
Ingest records a label when it first reads a video, and every discovery re-reads the sidecars, so a
sidecar that arrives after its videos, or a corrected one, is applied on the next run without
ingesting the videos again. Training reads the effective label of each video from the
``video_labels`` view (a sidecar's label before a folder's, then the most recently recorded), and
falls back on the label written into the shard only where the table has none.

A label carries the video's split group when the sidecar gives one (``landing_labels.split_groups``: a
person, a shoot, the real video a fake was made from); training keeps a group in one split. It is
part of the label's value: a sidecar that changes only the group updates the row too.

This module alone writes ``labels``; the label a ``videos`` row carries follows it (``ledger.save_videos``).

A sidecar that is still there is the authority for the videos it names: an entry removed from it
withdraws that label (the row stays, with ``label`` NULL, so the shard's copy is not used either).
A sidecar that is gone leaves its labels in place (archives often move sidecars away after ingest);
an unreadable one (BAD_SIDECAR) changes nothing either.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone

from realness_tasks import ledger
from realness_tasks.db import Database
from realness_tasks.ledger import Status

log = logging.getLogger(__name__)

METADATA, FOLDER = "metadata", "folder"

# The value is the label and the split group: recorded_at and run_id move when either changes.
_SAME_VALUE = ("labels.label = excluded.label "
               "AND COALESCE(labels.split_group, '') = COALESCE(excluded.split_group, '')")
_UPSERT = f"""
    INSERT INTO labels (video_id, source, kind, label, split_group, source_uri, source_etag, run_id, recorded_at)
    VALUES (:video_id, :source, :kind, :label, :split_group, :source_uri, :source_etag, :run_id, :now)
    ON CONFLICT (video_id, source) DO UPDATE SET
        recorded_at = CASE WHEN {_SAME_VALUE} THEN labels.recorded_at ELSE excluded.recorded_at END,
        run_id = CASE WHEN {_SAME_VALUE} THEN labels.run_id ELSE excluded.run_id END,
        label = excluded.label, split_group = excluded.split_group, kind = excluded.kind,
        source_uri = excluded.source_uri, source_etag = excluded.source_etag
"""


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def record(db: Database, video_id: str, *, label: str, source: str, kind: str, source_uri: str,
           source_etag: str | None, split_group: str | None, run_id: str) -> None:
    """Upsert one label and its split group; ``recorded_at`` moves only when one of the two changes."""
    db.execute(_UPSERT, {"video_id": video_id, "source": source, "kind": kind, "label": label,
                         "split_group": split_group, "source_uri": source_uri, "source_etag": source_etag or "",
                         "run_id": run_id, "now": _now()})
    refresh_videos(db, [video_id])


def refresh_videos(db: Database, video_ids: Iterable[str]) -> None:
    """Bring ``videos.label`` to each video's effective label (``ledger.save_videos`` states the rule)."""
    with db.transaction() as conn:
        ledger.apply_labels(conn, video_ids)


def for_training(db: Database) -> dict[str, str | None]:
    """video_id -> effective label, for every video the table knows (None: every source withdrew it).

    Videos absent from the result keep the label written into their shard.
    """
    known: dict[str, str | None] = {r["video_id"]: None for r in db.query("SELECT DISTINCT video_id FROM labels")}
    known.update({r["video_id"]: r["label"] for r in db.query("SELECT video_id, label FROM video_labels")})
    return known


def split_groups(db: Database) -> dict[str, str]:
    """video_id -> split group, for the labelled videos that have one (the group recorded with the
    label training uses); any other video is a group of its own. See ``dataset.split_videos``."""
    return {r["video_id"]: r["split_group"] for r in
            db.query("SELECT video_id, split_group FROM video_labels WHERE split_group IS NOT NULL")}


def sync_from_landing(db: Database, store, facts: Mapping[str, tuple[str, str, str, str | None]],
                      ledger_rows: Mapping[str, dict], etags: Mapping[str, str], sidecars: Sequence, *,
                      run_id: str) -> int:
    """Record the labels of videos already ingested; returns how many labels were added or changed.

    ``facts`` is key -> (label, source key, source etag, split group) from discovery; ``ledger_rows``
    the ledger by source URI; ``etags`` the listed objects' etags (a video whose etag changed is
    ingested again and recorded then).
    """
    existing = {(r["video_id"], r["source"]): r for r in
                db.query("SELECT video_id, source, label, split_group, source_uri, source_etag FROM labels")}
    changed: list[str] = []
    for key, (label, source_key, source_etag, split_group) in sorted(facts.items()):
        uri = store.uri_for(key)
        row = ledger_rows.get(uri)
        if not row or not row["video_id"] or row["source_etag"] != etags.get(key) or not Status(row["status"]).video:
            continue
        source = store.uri_for(source_key)
        kind = FOLDER if source_key == key else METADATA
        have = existing.get((row["video_id"], source))
        if have and (have["label"], have["split_group"], have["source_uri"], have["source_etag"]) == (
                label, split_group, uri, source_etag or ""):
            continue
        record(db, row["video_id"], label=label, source=source, kind=kind, source_uri=uri, source_etag=source_etag,
               run_id=run_id, split_group=split_group)
        changed.append(row["video_id"])
        log.info("label %s (split group %s) for %s from %s%s", label, split_group, uri, source,
                 " (changed)" if have else "")
    # A sidecar still present is the authority for the videos it names: drop labels it no longer gives.
    withdrawn: list[str] = []
    for sidecar in sidecars:
        if sidecar.problem:
            continue
        source = store.uri_for(sidecar.key)
        named = {store.uri_for(k) for k in sidecar.labels}
        for (video_id, row_source), row in existing.items():
            if row_source == source and row["source_uri"] not in named and row["label"] is not None:
                db.execute("UPDATE labels SET label = NULL, source_etag = :e, run_id = :r, recorded_at = :now "
                           "WHERE video_id = :v AND source = :s",
                           {"v": video_id, "s": source, "e": sidecar.etag, "r": run_id, "now": _now()})
                withdrawn.append(video_id)
                log.info("label of %s withdrawn: %s no longer names it", row["source_uri"], source)
    refresh_videos(db, withdrawn)
    return len(changed) + len(withdrawn)
