"""How well the verdicts agree with labels an archive team already trusts (``realness evaluate``).

The labels are a DFDC ``metadata.json`` (an object mapping a file name to ``{"label": ...}``) or a
CSV with columns ``name,label`` and any others, either optionally with the times of a manipulated
segment (:mod:`realness_tasks.localisation`). Each label is matched to a verdict of
``latest_verdicts`` by the end of its source URI: a bare file name matches by basename, a
relative path (``batch2/clip.mp4``) by that path. A name that fits several verdicts is reported as
ambiguous rather than guessed. The metric functions are training's (:mod:`realness_tasks.metrics`),
so a model's test metrics and its evaluation on archive material are computed the same way.

A video counts as predicted FAKE when its verdict is FAKE; UNCERTAIN counts as not FAKE and is
also counted on its own; NO_FACE, ERROR and labelled videos without a verdict have no prediction
and appear only in the coverage counts. :mod:`realness_tasks.evaluation_report` writes the report
(``docs/evaluation.md``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from realness_tasks import queries
from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.storage import ObjectStore, open_store
from realness_tasks.metrics import classification_metrics, roc_auc
from realness_tasks.localisation import SEGMENT_FIELDS, Localisation, SegmentLabelError, labelled_segment, localise
from realness_tasks.verdicts import ERROR, FAKE, NO_FACE, REAL, UNCERTAIN

SCORED_VERDICTS = (FAKE, REAL, UNCERTAIN)  # the verdicts that carry a video score
NO_VERDICT = "NO_VERDICT"  # a labelled video that no verdict matched
ALL_OUTCOMES = (*SCORED_VERDICTS, NO_FACE, ERROR, NO_VERDICT)
# DFDC fields that are not a way to group videos: the label itself, the train/test split, and the
# name of the real video a fake was made from.
NOT_BREAKDOWN_FIELDS = {"label", "original", "split", *SEGMENT_FIELDS}


class LabelsError(ValueError):
    """The labels file is missing, unreadable or not in one of the two accepted shapes."""


@dataclass(frozen=True)
class LabelRow:
    """One labelled video: its file name or relative path, FAKE or REAL, and the columns to group by."""

    name: str
    label: str
    groups: dict[str, str]
    segment: tuple[float, float] | None = None   # the manipulated segment's start and end seconds, if given


@dataclass(frozen=True)
class MatchedVideo:
    """A label and the latest verdict whose source URI it names; ``verdict`` is NO_VERDICT when none does."""

    label: LabelRow
    verdict: str
    p_fake: float | None
    source_uri: str | None
    model_version: str | None


@dataclass(frozen=True)
class AmbiguousLabel:
    """A label name that fits several verdicts (or a verdict that several labels name): left out, not guessed."""

    name: str
    candidates: list[str]


@dataclass(frozen=True)
class Metrics:
    """Video metrics of one group of labelled videos (all of them, or one value of a breakdown column).

    ``auc`` is over the scored videos (FAKE/REAL/UNCERTAIN) by their ``p_fake``, None without both
    labels among them; the others are over the same videos with FAKE verdict = predicted FAKE.
    A group of a breakdown is also ranked against the whole evaluation, so that a group of one label
    still has an AUC: ``auc_vs_all_real`` puts the group's scored fakes against every scored real of
    the evaluation (None when the group has no scored fake), ``auc_vs_all_fake`` every scored fake of
    the evaluation against the group's scored reals (None when it has no scored real). For the whole
    evaluation all three AUCs are the same number.
    ``confusion`` is [[TN, FP], [FN, TP]] (rows actual REAL/FAKE, columns predicted not-FAKE/FAKE).
    ``verdicts_by_label`` counts every verdict (and NO_VERDICT) per actual label.
    """

    labelled: int
    scored: int
    auc: float | None
    auc_vs_all_real: float | None
    auc_vs_all_fake: float | None
    accuracy: float
    precision_fake: float
    recall_fake: float
    f1_fake: float
    confusion: list[list[int]]
    uncertain: int
    no_face: int
    error: int
    no_verdict: int
    verdicts_by_label: dict[str, dict[str, int]]


@dataclass(frozen=True)
class EvaluationResult:
    """Stored verdicts compared with a labels file: metrics overall and per group, and what matched."""

    labels_file: str
    source_prefix: str | None          # the source URI prefix the verdicts were restricted to
    evaluated_at: datetime
    overall: Metrics
    breakdown: dict[str, dict[str, Metrics]]  # column -> value -> metrics of the videos with that value
    videos: list[MatchedVideo]
    ambiguous: list[AmbiguousLabel]
    unlabelled_verdicts: int           # verdicts under the prefix that no label names
    model_versions: dict[str, int]     # which versions decided the matched verdicts, and how many
    localisation: Localisation | None = None   # None: no label gives segment times

    def to_json(self) -> dict[str, Any]:
        return {
            "labels_file": self.labels_file, "source_prefix": self.source_prefix,
            "evaluated_at": self.evaluated_at.isoformat(), "model_versions": self.model_versions,
            "overall": asdict(self.overall),
            "breakdown": {column: {value: asdict(m) for value, m in groups.items()}
                          for column, groups in self.breakdown.items()},
            "ambiguous": [asdict(a) for a in self.ambiguous], "unlabelled_verdicts": self.unlabelled_verdicts,
            "localisation": None if self.localisation is None else asdict(self.localisation),
            "videos": [{"name": v.label.name, "label": v.label.label, "groups": v.label.groups, "verdict": v.verdict,
                        "p_fake": v.p_fake, "source_uri": v.source_uri, "model_version": v.model_version}
                       for v in self.videos],
        }


# ---------------------------------------------------------------- labels

def read_labels(path: Path) -> list[LabelRow]:
    """The labels of a DFDC ``metadata.json`` or a ``name,label[,...]`` CSV, told apart by the first character."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc}") from exc
    try:
        rows = labels_from_json(text, path) if text.lstrip().startswith(("{", "[")) else labels_from_csv(text, path)
    except SegmentLabelError as exc:
        raise LabelsError(f"{path}: {exc}") from exc
    if not rows:
        raise LabelsError(f"{path} holds no labels")
    duplicates = sorted(name for name, n in Counter(r.name for r in rows).items() if n > 1)
    if duplicates:
        raise LabelsError(f"{path} labels these names more than once: {', '.join(duplicates[:5])}")
    return rows


def labels_from_json(text: str, path: Path) -> list[LabelRow]:
    """DFDC shape. Fields other than label/original/split with a text or number value become groups."""
    try:
        metadata = json.loads(text)
    except ValueError as exc:
        raise LabelsError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(metadata, dict):
        raise LabelsError(f"{path} is not a JSON object mapping file names to {{\"label\": ...}}")
    rows = []
    for name, entry in metadata.items():
        if not isinstance(entry, dict):
            raise LabelsError(f"{path}: the entry of {name!r} is not an object with a \"label\"")
        groups = {k: str(v) for k, v in entry.items()
                  if k not in NOT_BREAKDOWN_FIELDS and isinstance(v, (str, int, float)) and not isinstance(v, bool)}
        label = checked_label(entry.get("label"), name, path)
        rows.append(LabelRow(name, label, groups, labelled_segment(entry, label)))
    return rows


def labels_from_csv(text: str, path: Path) -> list[LabelRow]:
    """CSV shape with a header; every column other than name and label becomes a group."""
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    if "name" not in columns or "label" not in columns:
        raise LabelsError(f"{path} is neither a JSON object nor a CSV with columns name,label (header: {columns})")
    rows = []
    for line, record in enumerate(reader, start=2):
        values = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
        if not values["name"]:
            raise LabelsError(f"{path} line {line}: empty name")
        groups = {k: v for k, v in values.items() if k not in ("name", "label", *SEGMENT_FIELDS)}
        label = checked_label(values["label"], f"line {line}", path)
        rows.append(LabelRow(values["name"], label, groups, labelled_segment(values, label)))
    return rows


def checked_label(value: Any, where: str, path: Path) -> str:
    """``value`` as FAKE or REAL (any case); anything else raises :class:`LabelsError` naming ``where`` in ``path``."""
    label = str(value or "").strip().upper()
    if label not in (FAKE, REAL):
        raise LabelsError(f"{path} {where}: label {value!r} is neither FAKE nor REAL")
    return label


# ---------------------------------------------------------------- matching

def source_prefix(cfg: RealnessConfig, store: ObjectStore, prefix: str | None) -> str | None:
    """A URI prefix as given, or a key prefix under the landing prefix: ``batch7/`` and ``landing/batch7/``
    name the same videos (a key that already starts with the landing prefix is not prefixed again)."""
    if not prefix:
        return None
    if "://" in prefix:
        return prefix
    key = prefix.lstrip("/")
    return store.uri_for(key if key.startswith(cfg.landing_prefix) else cfg.landing_prefix + key)


def is_named_by(source_uri: str, name: str) -> bool:
    """Whether a label name names this source URI: the same last path components."""
    return source_uri == name or source_uri.endswith("/" + name.lstrip("/"))


def match(labels: Sequence[LabelRow], verdicts: Sequence[dict[str, Any]]
          ) -> tuple[list[MatchedVideo], list[AmbiguousLabel], int]:
    """(matched videos, ambiguous labels, verdicts no label names)."""
    by_basename: dict[str, list[dict[str, Any]]] = {}
    for row in verdicts:
        by_basename.setdefault(posixpath.basename(row["source_uri"]), []).append(row)
    candidates = {label.name: [row for row in by_basename.get(posixpath.basename(label.name), [])
                               if is_named_by(row["source_uri"], label.name)] for label in labels}
    claims = Counter(rows[0]["video_id"] for rows in candidates.values() if len(rows) == 1)
    matched, ambiguous = [], []
    for label in labels:
        rows = candidates[label.name]
        if len(rows) > 1 or (rows and claims[rows[0]["video_id"]] > 1):
            ambiguous.append(AmbiguousLabel(label.name, [r["source_uri"] for r in rows]))
        elif rows:
            row = rows[0]
            matched.append(MatchedVideo(label, row["verdict"], row["p_fake"], row["source_uri"], row["model_version"]))
        else:
            matched.append(MatchedVideo(label, NO_VERDICT, None, None, None))
    named = {row["video_id"] for rows in candidates.values() for row in rows}
    return matched, ambiguous, sum(row["video_id"] not in named for row in verdicts)


# ---------------------------------------------------------------- metrics

def scored_p_fake(videos: Sequence[MatchedVideo], label: str) -> list[float]:
    """The ``p_fake`` of the scored videos with this label."""
    return [v.p_fake for v in videos if v.verdict in SCORED_VERDICTS and v.label.label == label]


def fakes_vs_reals_auc(fakes: Sequence[float], reals: Sequence[float]) -> float | None:
    """The Mann-Whitney AUC of these fake scores against these real ones (ties half); None without both."""
    if not fakes or not reals:
        return None
    return roc_auc(np.r_[np.ones(len(fakes), dtype=int), np.zeros(len(reals), dtype=int)],
                   np.array([*fakes, *reals], dtype=np.float64))


def metrics(videos: Sequence[MatchedVideo], evaluation: Sequence[MatchedVideo] | None = None) -> Metrics:
    """The metrics of ``videos``; the vs-all AUCs rank them against ``evaluation`` (default: ``videos``)."""
    evaluation = videos if evaluation is None else evaluation
    scored = [v for v in videos if v.verdict in SCORED_VERDICTS]
    actual = np.array([v.label.label == FAKE for v in scored], dtype=int)
    auc = roc_auc(actual, np.array([v.p_fake for v in scored], dtype=np.float64))
    # classification_metrics predicts FAKE at score >= threshold: a score of 1 for FAKE verdicts makes it follow them
    predicted = classification_metrics(actual, np.array([v.verdict == FAKE for v in scored], dtype=np.float64), 0.5)
    verdict_counts = Counter(v.verdict for v in videos)
    by_label = {label: Counter(v.verdict for v in videos if v.label.label == label) for label in (FAKE, REAL)}
    return Metrics(
        labelled=len(videos), scored=len(scored), auc=None if math.isnan(auc) else auc,
        auc_vs_all_real=fakes_vs_reals_auc(scored_p_fake(videos, FAKE), scored_p_fake(evaluation, REAL)),
        auc_vs_all_fake=fakes_vs_reals_auc(scored_p_fake(evaluation, FAKE), scored_p_fake(videos, REAL)),
        accuracy=predicted["accuracy"], precision_fake=predicted["precision_fake"],
        recall_fake=predicted["recall_fake"], f1_fake=predicted["f1_fake"], confusion=predicted["confusion"],
        uncertain=verdict_counts[UNCERTAIN], no_face=verdict_counts[NO_FACE], error=verdict_counts[ERROR],
        no_verdict=verdict_counts[NO_VERDICT],
        verdicts_by_label={label: {verdict: counts[verdict] for verdict in ALL_OUTCOMES}
                           for label, counts in by_label.items()})


def breakdown(videos: Sequence[MatchedVideo]) -> dict[str, dict[str, Metrics]]:
    """The metrics per value of every group column; a video without that column counts under "".

    The vs-all AUCs of a group rank it against all of ``videos``.
    """
    columns = sorted({column for v in videos for column in v.label.groups})
    return {column: {value: metrics([v for v in videos if v.label.groups.get(column, "") == value], videos)
                     for value in sorted({v.label.groups.get(column, "") for v in videos})}
            for column in columns}


def evaluate(cfg: RealnessConfig, labels: Sequence[LabelRow], prefix: str | None = None, *,
             labels_file: str = "", evaluated_at: datetime) -> EvaluationResult:
    """Match the labels to ``latest_verdicts`` (under ``prefix``) and measure the verdicts against them."""
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    uri_prefix = source_prefix(cfg, store, prefix)
    db = Database(cfg.resolved_database_url)
    try:
        verdicts = queries.latest_verdicts_under(db, uri_prefix)
        segments = queries.latest_segments(db, uri_prefix)
    finally:
        db.dispose()
    videos, ambiguous, unlabelled = match(labels, verdicts)
    return EvaluationResult(
        labels_file=labels_file, source_prefix=uri_prefix, evaluated_at=evaluated_at, overall=metrics(videos),
        breakdown=breakdown(videos), videos=videos, ambiguous=ambiguous, unlabelled_verdicts=unlabelled,
        model_versions=dict(sorted(Counter(v.model_version for v in videos if v.model_version).items())),
        localisation=localise(videos, segments))


# ---------------------------------------------------------------- report
