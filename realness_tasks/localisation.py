"""Where in a video the fake is: the FAKE segments of the latest verdicts against labelled segment times.

A label may give the manipulated segment of a partly fake video (``segment_start_s`` and
``segment_end_s``, in seconds from the start). For each such video whose verdict is FAKE, the
FAKE segment of ``latest_segments`` that overlaps the labelled one best is compared with it by
intersection over union of the two time intervals; a FAKE verdict without any FAKE segment (a
whole-video call of the per-person pooling) localises nothing and counts as IoU 0. The report
gives the share of those videos localised (IoU at or above :data:`LOCALISED_IOU`) and the median
IoU. ``docs/evaluation.md`` describes the labels and the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from realness_tasks.verdicts import FAKE, REAL, Segment

if TYPE_CHECKING:
    from realness_tasks.evaluation import MatchedVideo

SEGMENT_FIELDS = ("segment_start_s", "segment_end_s")
LOCALISED_IOU = 0.5  # the overlap at which a detected segment counts as finding the labelled one


class SegmentLabelError(ValueError):
    """A label's segment times are incomplete, not numbers, out of order, or given to a REAL video."""


@dataclass(frozen=True)
class LocalisedVideo:
    """One labelled partial fake and what its verdict found."""

    name: str
    verdict: str
    labelled_start_s: float
    labelled_end_s: float
    track_id: int | None          # the best-overlapping FAKE segment; None: the verdict named none
    start_s: float | None
    end_s: float | None
    iou: float | None             # None: the video was not called FAKE, so nothing was localised


@dataclass(frozen=True)
class Localisation:
    """Segment localisation over the labelled partial fakes (labels with segment times)."""

    partial_fakes: int            # labelled partial fakes with a verdict of any kind
    called_fake: int              # of those, verdict FAKE
    localised: int                # of those called FAKE, a FAKE segment with IoU >= LOCALISED_IOU
    localised_share: float | None  # localised / called_fake; None when none was called FAKE
    median_iou: float | None      # over the partial fakes called FAKE
    videos: list[LocalisedVideo]


def labelled_segment(fields: Mapping[str, Any], label: str) -> tuple[float, float] | None:
    """The segment a label's fields give, or None when they give none (both fields absent or empty)."""
    start, end = (fields.get(name) for name in SEGMENT_FIELDS)
    given = [value not in (None, "") for value in (start, end)]
    if not any(given):
        return None
    if not all(given):
        raise SegmentLabelError(f"a segment needs both {' and '.join(SEGMENT_FIELDS)}")
    try:
        start_s, end_s = float(start), float(end)
    except (TypeError, ValueError) as exc:
        raise SegmentLabelError(f"segment times {start!r}, {end!r} are not numbers of seconds") from exc
    if not (math.isfinite(start_s) and math.isfinite(end_s) and 0.0 <= start_s < end_s):
        raise SegmentLabelError(f"segment {start_s} s to {end_s} s does not satisfy 0 <= start < end")
    if label == REAL:
        raise SegmentLabelError("a REAL video cannot have a manipulated segment")
    return start_s, end_s


def interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Intersection over union of two time intervals (0 when they do not overlap)."""
    overlap = min(a[1], b[1]) - max(a[0], b[0])
    if overlap <= 0:
        return 0.0
    return overlap / (max(a[1], b[1]) - min(a[0], b[0]))


def best_segment(labelled: tuple[float, float], found: Sequence[Segment]) -> tuple[Segment | None, float]:
    """The FAKE segment overlapping ``labelled`` most, and its IoU; (None, 0) without a FAKE segment."""
    fakes = [s for s in found if s.verdict == FAKE]
    if not fakes:
        return None, 0.0
    best = max(fakes, key=lambda s: interval_iou(labelled, (s.start_s, s.end_s)))
    return best, interval_iou(labelled, (best.start_s, best.end_s))


def localise(videos: Sequence[MatchedVideo], segments: Mapping[str, Sequence[Segment]]) -> Localisation | None:
    """Localisation of the labelled partial fakes among ``videos``; None when no label gives a segment.

    ``segments`` are the segments of the latest verdicts by source URI. A labelled partial fake
    without a verdict has nothing to localise and is left out.
    """
    if not any(v.label.segment is not None for v in videos):
        return None
    rows = []
    for video in videos:
        labelled = video.label.segment
        if labelled is None or video.source_uri is None:
            continue
        found, iou = best_segment(labelled, segments.get(video.source_uri, ()))
        called = video.verdict == FAKE
        rows.append(LocalisedVideo(video.label.name, video.verdict, *labelled,
                                   found.track_id if called and found else None,
                                   found.start_s if called and found else None,
                                   found.end_s if called and found else None, iou if called else None))
    ious = [row.iou for row in rows if row.iou is not None]
    localised = sum(iou >= LOCALISED_IOU for iou in ious)
    return Localisation(partial_fakes=len(rows), called_fake=len(ious), localised=localised,
                        localised_share=localised / len(ious) if ious else None,
                        median_iou=float(np.median(ious)) if ious else None, videos=rows)


def localisation_rows(localisation: Localisation) -> list[dict[str, Any]]:
    """One row per labelled partial fake, for the printed and the HTML tables."""
    return [{"name": v.name, "verdict": v.verdict, "labelled": f"{v.labelled_start_s:.1f}-{v.labelled_end_s:.1f} s",
             "found": "" if v.start_s is None else f"track {v.track_id} {v.start_s:.1f}-{v.end_s:.1f} s",
             "iou": v.iou} for v in localisation.videos]


def summary(localisation: Localisation) -> str:
    """One line: how many labelled partial fakes were called FAKE and how many of those were localised."""
    share = "n/a" if localisation.localised_share is None else f"{localisation.localised_share:.3f}"
    median = "n/a" if localisation.median_iou is None else f"{localisation.median_iou:.3f}"
    return (f"segment localisation: {localisation.called_fake} of {localisation.partial_fakes} labelled partial "
            f"fake(s) called FAKE; {localisation.localised} with segment IoU >= {LOCALISED_IOU} (share {share}); "
            f"median IoU {median}")
