"""Labels found beside the videos in the landing prefix: DFDC-style ``metadata.json`` sidecars, else the
``real/`` / ``fake/`` folder a video sits in, with the split groups the sidecars give.

Reading never raises on bad input: an unusable sidecar carries its problem, which discovery records
as a ``BAD_SIDECAR`` ledger row while its videos go on unlabelled. The ``labels`` table
(``realness_tasks.labels``) keeps what was found.
"""

from __future__ import annotations

import json
import logging
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

from realness_tasks.storage import ObjectStore, loggable

log = logging.getLogger(__name__)

SIDECAR_NAMES = {"metadata.json"}
LABEL_DIRECTORIES = {"real": "REAL", "fake": "FAKE"}


@dataclass(frozen=True)
class Sidecar:
    """A ``metadata.json`` as read: the labels it gives (video key -> label), or why it gives none.

    ``groups`` and ``originals`` say which videos must share a training split (see :func:`split_groups`).
    """

    key: str
    etag: str
    labels: dict[str, str]
    problem: str | None = None     # set: the sidecar is unusable (BAD_SIDECAR); its videos go on unlabelled
    ignored: dict[str, str] = field(default_factory=dict)    # entry name -> why it gives no label
    groups: dict[str, str] = field(default_factory=dict)     # video key -> its entry's "group"
    originals: dict[str, str] = field(default_factory=dict)  # video key -> key of the video it was made from


WITHOUT_LABEL = "without a REAL/FAKE label"
BAD_GROUPING = "whose group or original is not a non-empty string"


def parse_sidecar(key: str, etag: str, data: bytes) -> Sidecar:
    """A DFDC-style sidecar; never raises.

    ``{"name.mp4": {"label": "REAL"|"FAKE", "group": "any string", "original": "real.mp4"}, ...}``, with
    ``group`` and ``original`` optional; names and originals are relative to the sidecar's folder. An
    entry whose group or original is malformed gives no label rather than a wrong group: a wrong group
    lets a person leak between the training splits.
    """
    try:
        metadata = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return Sidecar(key, etag, {}, f"not valid JSON: {str(exc)[:200]}")
    if not isinstance(metadata, dict):
        return Sidecar(key, etag, {}, f"JSON {type(metadata).__name__} where an object of video names was expected")
    folder = posixpath.dirname(key)

    def video_key(name: str) -> str:  # "./a.mp4" and "x/../a.mp4" name the listed key "a.mp4"
        return posixpath.normpath(posixpath.join(folder, name) if folder else name)

    labels: dict[str, str] = {}
    groups: dict[str, str] = {}
    originals: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for name, entry in metadata.items():
        label = str(entry.get("label", "")).upper() if isinstance(entry, dict) else ""
        if label not in ("REAL", "FAKE"):
            ignored[str(name)] = WITHOUT_LABEL
            continue
        group, original = entry.get("group"), entry.get("original")
        if any(value is not None and not (isinstance(value, str) and value.strip()) for value in (group, original)):
            ignored[str(name)] = BAD_GROUPING
            continue
        labels[video_key(name)] = label
        if group is not None:
            groups[video_key(name)] = group
        if original is not None:
            originals[video_key(name)] = video_key(original)
    if metadata and not labels:
        problem = (f"none of its {len(metadata)} entries has a REAL/FAKE label"
                   if set(ignored.values()) == {WITHOUT_LABEL}
                   else f"none of its {len(metadata)} entries is usable: {describe_ignored(ignored)}")
        return Sidecar(key, etag, {}, problem, ignored)
    return Sidecar(key, etag, labels, None, ignored, groups, originals)


def describe_ignored(ignored: dict[str, str]) -> str:
    """``1 entry without a REAL/FAKE label ignored: b.mp4``, one such clause per reason, joined by ``; ``."""
    clauses = []
    for why in dict.fromkeys(ignored.values()):
        names = [name for name, reason in ignored.items() if reason == why]
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        clauses.append(f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} {why} ignored: {shown}")
    return "; ".join(clauses)


def sidecar_reason(sidecar: Sidecar, unmatched: Sequence[str] = ()) -> str:
    """The ledger reason of a sidecar: its labels, then the entries that give none, then those naming no listed
    video (``unmatched``: their labels wait for the video to arrive)."""
    if sidecar.problem:
        return sidecar.problem
    text = f"{len(sidecar.labels) - len(unmatched)} label(s)"
    if sidecar.ignored:
        text += f"; {describe_ignored(sidecar.ignored)}"
    if unmatched:
        folder = posixpath.dirname(sidecar.key)
        names = [loggable(posixpath.relpath(key, folder or ".")) for key in unmatched[:5]]
        text += (f"; {len(unmatched)} entr{'y' if len(unmatched) == 1 else 'ies'} naming no listed video: "
                 f"{', '.join(names)}{', ...' if len(unmatched) > 5 else ''}")
    return text


def unmatched_entries(sidecar: Sidecar, listed: set[str]) -> list[str]:
    """The keys a sidecar labels that the listing does not hold (a typo, a video not uploaded yet), sorted."""
    return sorted(key for key in sidecar.labels if key not in listed)


def read_sidecars(store: ObjectStore, objects: Sequence, max_bytes: int | None = None) -> list[Sidecar]:
    """Every sidecar among ``objects`` (``StoredObject`` or plain keys), parsed; bad ones carry their problem.

    A listed sidecar over ``max_bytes`` is not read (every run re-reads every sidecar): it is a bad
    sidecar whose problem gives its size. Plain keys carry no size and are read whole.
    """
    sidecars = []
    for obj in objects:
        key, etag = (obj, "") if isinstance(obj, str) else (obj.key, obj.etag)
        if posixpath.basename(key) not in SIDECAR_NAMES:
            continue
        if max_bytes is not None and not isinstance(obj, str) and obj.size > max_bytes:
            sidecars.append(Sidecar(key, etag, {}, f"{obj.size} bytes, over REALNESS_SIDECAR_MAX_MEGABYTES "
                                                   f"({max_bytes} bytes): not read; split it per folder, or raise "
                                                   "the limit"))
            continue
        try:
            data = store.get_bytes(key)
        except KeyError:  # removed since it was listed: the next run sees what is there then
            log.warning("sidecar %s vanished while it was being read", loggable(key))
            continue
        sidecars.append(parse_sidecar(key, etag, data))
    return sidecars


def folder_label(landing_prefix: str, key: str) -> str | None:
    """REAL or FAKE when a folder under the landing prefix is named ``real`` or ``fake`` (the innermost wins)."""
    folders = key[len(landing_prefix):].lower().split("/")[:-1]
    found = [LABEL_DIRECTORIES[f] for f in folders if f in LABEL_DIRECTORIES]
    return found[-1] if found else None


def split_groups(sidecars: Sequence[Sidecar]) -> dict[str, str]:
    """Video key -> the group that keeps it in one training split, for the videos the sidecars group.

    A video's own ``group``; else, for a fake with an ``original``, the original's group (followed
    from original to original); else the key of the first video up that chain without an original. A
    video other entries name as their original, without a group of its own, is grouped under its own
    key, so it joins its fakes. A cycle of originals takes its smallest key. Videos absent from the
    result are each a group of their own.
    """
    groups: dict[str, str] = {}
    originals: dict[str, str] = {}
    for sidecar in sidecars:
        groups.update(sidecar.groups)
        originals.update(sidecar.originals)

    def resolve(key: str) -> str:
        chain: list[str] = []
        while key not in groups and key in originals and key not in chain:
            chain.append(key)
            key = originals[key]
        if key in groups:
            return groups[key]
        return min(chain[chain.index(key):]) if key in chain else key

    return {key: resolve(key) for key in sorted({*groups, *originals, *originals.values()})}


def find_labels(landing_prefix: str, keys: Sequence[str], sidecars: Sequence[Sidecar]
                ) -> dict[str, tuple[str, str, str, str | None]]:
    """key -> (label, source key, source etag, split group): a sidecar's label, else the ``real/`` / ``fake/``
    folder's; the split group (see :func:`split_groups`) whichever gave the label."""
    groups = split_groups(sidecars)
    facts: dict[str, tuple[str, str, str, str | None]] = {}
    for sidecar in sidecars:
        for video_key, label in sidecar.labels.items():
            facts[video_key] = (label, sidecar.key, sidecar.etag, groups.get(video_key))
    for key in keys:
        if key not in facts and (label := folder_label(landing_prefix, key)):
            facts[key] = (label, key, "", groups.get(key))
    return facts


def read_labels(store: ObjectStore, landing_prefix: str, keys: Sequence[str]) -> dict[str, str]:
    """Labels from DFDC-style ``metadata.json`` files beside the videos, else ``real/`` / ``fake/`` folders."""
    sidecars = read_sidecars(store, keys)
    for sidecar in sidecars:
        if sidecar.problem:
            log.warning("ignoring %s: %s", sidecar.key, sidecar.problem)
    return {k: fact[0] for k, fact in find_labels(landing_prefix, keys, sidecars).items()}
