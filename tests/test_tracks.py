"""Face tracks: faces of consecutive samples linked by position, and by look when the boxes jump."""

from __future__ import annotations

import numpy as np

from realness_tasks import tracks
from realness_tasks.tracks import Sighting


def look(*colour: int) -> np.ndarray:
    """The histogram of a crop of one flat colour with a little noise."""
    rng = np.random.default_rng(sum(colour))
    crop = np.clip(np.array(colour, np.float32) + rng.normal(0, 6, (48, 48, 3)), 0, 255).astype(np.uint8)
    return tracks.colour_histogram(crop)


PALE, DARK = look(200, 180, 170), look(60, 70, 90)


def test_two_people_crossing_keep_their_tracks_where_the_size_rank_swaps():
    # A walks right and grows, B walks left and shrinks: they overlap mid-way and swap size ranks.
    sightings, person = [], []
    for frame in range(9):
        a = (40 + 40 * frame, 100, 80 + 4 * frame, 80 + 4 * frame)
        b = (400 - 40 * frame, 110, 112 - 4 * frame, 112 - 4 * frame)
        for name, box, hist in sorted((("A", a, PALE), ("B", b, DARK)), key=lambda p: -p[1][2]):  # face_index order
            sightings.append(Sighting(frame, box, hist))
            person.append(name)

    ids = tracks.link(sightings)

    assert len(set(ids)) == 2
    assert {(p, t) for p, t in zip(person, ids, strict=True)} in ({("A", 0), ("B", 1)}, {("A", 1), ("B", 0)})


def test_a_jump_keeps_the_track_when_the_face_looks_the_same_and_a_stranger_starts_a_new_one():
    left, right = (20, 50, 90, 90), (500, 60, 90, 90)
    sightings = [Sighting(f, left, PALE) for f in range(4)] + [Sighting(f, right, PALE) for f in range(4, 8)]
    stranger = [Sighting(f, left, PALE) for f in range(4)] + [Sighting(f, right, DARK) for f in range(4, 8)]

    assert tracks.link(sightings) == [0] * 8
    assert tracks.link(stranger) == [0] * 4 + [1] * 4


def test_embeddings_decide_over_histograms_when_both_faces_have_one():
    same, other = np.zeros(128, np.float32), np.full(128, 0.2, np.float32)  # 2.26 apart: other people
    box, far = (20, 50, 90, 90), (500, 60, 90, 90)
    alike = [Sighting(0, box, PALE, same), Sighting(1, far, PALE, other)]

    assert tracks.link(alike) == [0, 1]   # the histograms match, the embeddings do not
    assert tracks.link([Sighting(0, box, PALE, same), Sighting(1, far, DARK, same + 0.01)]) == [0, 0]


def test_one_missed_detection_does_not_cut_a_track_but_two_do():
    box = (100, 100, 80, 80)
    other = (400, 100, 80, 80)
    # the second face keeps frames coming while the first is missed
    once = [Sighting(0, box), Sighting(0, other), Sighting(1, other), Sighting(2, box), Sighting(2, other)]
    twice = [Sighting(0, box), Sighting(0, other), Sighting(1, other), Sighting(2, other), Sighting(3, box)]

    assert tracks.link(once) == [0, 1, 1, 0, 1]
    assert tracks.link(twice) == [0, 1, 1, 1, 2]


def test_a_manipulated_face_stays_in_its_track():
    # A swap changes the look of the face in place; the position still links it.
    box = (100, 100, 80, 80)
    assert tracks.link([Sighting(f, box, PALE if f < 3 or f > 5 else DARK) for f in range(9)]) == [0] * 9
