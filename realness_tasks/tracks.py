"""Face tracks: the faces of consecutive sampled frames linked into one track per person.

``face_index`` ranks a frame's faces by size, so it mixes people whenever they change rank; a
short manipulated segment of one person then dilutes in another's faces. :func:`link` gives each
face a track id instead (``docs/shards.md``, column ``track_id``). The rule, frame by frame in
time order:

1. A face may continue a track whose last face was in one of the previous ``MAX_MISSED + 1``
   frames that had faces (a detector missing someone in one frame does not cut their track).
2. **Near** pairs first: boxes with IoU >= ``MIN_IOU``, or centres closer than ``MAX_SHIFT`` times
   the larger box side. They are linked greedily by the lowest cost, (1 - IoU) plus the appearance
   distance divided by its limit when both faces have an appearance: where two people cross and
   both boxes overlap both tracks, the look decides.
3. **Jumps**: a face near no free track joins the free track that looks most alike, if the
   appearance distance is within its limit (a cut, a fast pan).
4. Any face left starts a new track.

Appearance is the faces' face-recognition embeddings when both have one (``embedding``, identities
on; Euclidean distance, limit ``EMBEDDING_LIMIT``, dlib's same-person distance), else a colour
histogram of the crops (:func:`colour_histogram`; half the L1 distance, limit ``HISTOGRAM_LIMIT``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from realness_tasks.detection import iou

MIN_IOU = 0.2
MAX_SHIFT = 0.5
MAX_MISSED = 1
EMBEDDING_LIMIT = 0.6
HISTOGRAM_LIMIT = 0.35
HISTOGRAM_BINS = 8


@dataclass(frozen=True)
class Sighting:
    """One detected face as tracking sees it."""

    frame_index: int
    box: tuple[int, int, int, int]          # x, y, w, h in frame pixels
    histogram: np.ndarray | None = None     # colour_histogram of the crop
    embedding: np.ndarray | None = None     # face-recognition embedding, when the face has one


def colour_histogram(crop_bgr: np.ndarray) -> np.ndarray:
    """A cheap appearance cue: per-channel histograms of the crop's centre, summing to 1.

    The centre half of the crop is mostly face, so the background the margin adds moves it little.
    """
    h, w = crop_bgr.shape[:2]
    centre = np.ascontiguousarray(crop_bgr[h // 4: h - h // 4, w // 4: w - w // 4])
    counts = [cv2.calcHist([centre], [c], None, [HISTOGRAM_BINS], [0, 256]).ravel() for c in range(3)]
    histogram = np.concatenate(counts).astype(np.float32)
    return histogram / max(float(histogram.sum()), 1.0)


def near(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two boxes of consecutive samples can be the same face by position alone."""
    shift = np.hypot((a[0] + a[2] / 2) - (b[0] + b[2] / 2), (a[1] + a[3] / 2) - (b[1] + b[3] / 2))
    return iou(a, b) >= MIN_IOU or shift <= MAX_SHIFT * max(a[2], a[3], b[2], b[3])


def appearance(a: Sighting, b: Sighting) -> float | None:
    """The two faces' appearance distance as a fraction of its limit (<= 1: alike), or None when unknown."""
    if a.embedding is not None and b.embedding is not None:
        return float(np.linalg.norm(a.embedding - b.embedding)) / EMBEDDING_LIMIT
    if a.histogram is not None and b.histogram is not None:
        return float(np.abs(a.histogram - b.histogram).sum() / 2) / HISTOGRAM_LIMIT
    return None


@dataclass
class _Track:
    track_id: int
    last: Sighting
    last_frame: int          # position of its last face's frame among the frames with faces
    embedding: np.ndarray | None


class Linker:
    """Track ids frame by frame as the frames arrive in time order, so a caller need not keep every
    face of a long video to link them; it holds only the tracks that can still continue."""

    def __init__(self) -> None:
        self.live: list[_Track] = []
        self.started = 0           # tracks started so far: the next track's id
        self.position = 0          # frames with faces seen so far
        self.last_frame_index: int | None = None

    def add_frame(self, faces: Sequence[Sighting]) -> list[int]:
        """A track id per face of the next frame (all of one ``frame_index``, later than the previous frame's)."""
        if not faces:
            return []
        frame_index = faces[0].frame_index
        if any(face.frame_index != frame_index for face in faces):
            raise ValueError("add_frame takes the faces of one frame")
        if self.last_frame_index is not None and frame_index <= self.last_frame_index:
            raise ValueError(f"frame {frame_index} arrives after frame {self.last_frame_index}: frames go in time order")
        self.last_frame_index = frame_index
        self.live = [t for t in self.live if self.position - t.last_frame <= MAX_MISSED + 1]
        ids = [-1] * len(faces)
        for i, track in _match(faces, self.live):
            ids[i] = track.track_id
        for i, face in enumerate(faces):
            if ids[i] < 0:
                ids[i] = self.started
                self.live.append(_Track(self.started, face, self.position, None))
                self.started += 1
            track = next(t for t in self.live if t.track_id == ids[i])
            track.last, track.last_frame = face, self.position
            if face.embedding is not None:
                track.embedding = face.embedding
        self.position += 1
        return ids


def link(sightings: Sequence[Sighting]) -> list[int]:
    """A track id per sighting (0, 1, ... in order of first appearance); see the module doc for the rule."""
    ids = [-1] * len(sightings)
    by_frame: dict[int, list[int]] = {}
    for i, sighting in enumerate(sightings):
        by_frame.setdefault(sighting.frame_index, []).append(i)
    linker = Linker()
    for frame in sorted(by_frame):
        faces = by_frame[frame]
        for i, track_id in zip(faces, linker.add_frame([sightings[i] for i in faces]), strict=True):
            ids[i] = track_id
    return ids


def _match(faces: Sequence[Sighting], live: Sequence[_Track]) -> list[tuple[int, _Track]]:
    """Greedy matching of one frame's faces (by position in ``faces``) to live tracks: near pairs by cost,
    then jumps by look."""
    near_pairs, jumps = [], []
    for i, face in enumerate(faces):
        for track in live:
            # The track's latest embedding stands for it when its last face had none (few frames are embedded).
            last = Sighting(track.last.frame_index, track.last.box, track.last.histogram,
                            track.last.embedding if track.last.embedding is not None else track.embedding)
            look = appearance(face, last)
            if near(face.box, last.box):
                near_pairs.append(((1.0 - iou(face.box, last.box)) + (look or 0.0), i, track))
            elif look is not None and look <= 1.0:
                jumps.append((look, i, track))
    matched: list[tuple[int, _Track]] = []
    taken_faces: set[int] = set()
    taken_tracks: set[int] = set()
    for pairs in (near_pairs, jumps):
        for _, i, track in sorted(pairs, key=lambda p: (p[0], p[1], p[2].track_id)):
            if i not in taken_faces and track.track_id not in taken_tracks:
                matched.append((i, track))
                taken_faces.add(i)
                taken_tracks.add(track.track_id)
    return matched
