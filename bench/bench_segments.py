"""The segment rule's parameters, chosen on simulated face scores (issue 33); docs/scoring.md keeps the numbers.

No model is run: per-face p_fake timelines are simulated, one face track per video sampled at one
frame a second, and judged by ``verdicts.aggregate`` exactly as scoring judges them (defaults but
the two segment settings). A face's log-odds follow an AR(1) process (consecutive samples of one
face score alike, which is what makes runs on real footage): real faces around ``--real-logit``,
manipulated ones around ``--fake-logit``, with spread ``--spread`` and frame-to-frame correlation
``--correlation``. Three kinds of video, 60-600 s long, ``--videos`` of each:

- real: every face real;
- partial: a manipulated segment of 3-20 s at a random place, the rest real;
- whole: every face manipulated.

For each (segment_min_faces, segment_min_seconds) on the grid, and for the rule without segments
(per-video confident strategy only), it prints the share called FAKE of each kind, and for the
partial fakes called FAKE by a segment the median IoU of the named segment with the true one.

    nice python -m bench.bench_segments                 # the defaults measured in docs/scoring.md
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np

from realness_tasks import verdicts
from realness_tasks.settings import ScoringSettings

THRESHOLD = 0.5
KINDS = ("real", "partial", "whole")


def timeline(rng: np.random.Generator, seconds: int, fake: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    """p_fake per second: AR(1) log-odds noise around the real or the fake level."""
    noise = np.empty(seconds)
    noise[0] = rng.normal()
    for t in range(1, seconds):
        noise[t] = args.correlation * noise[t - 1] + np.sqrt(1 - args.correlation ** 2) * rng.normal()
    logit = np.where(fake, args.fake_logit, args.real_logit) + args.spread * noise
    return 1 / (1 + np.exp(-logit))


def simulate(rng: np.random.Generator, kind: str, args: argparse.Namespace) -> tuple[np.ndarray, tuple[int, int]]:
    """One video's p_fake per second and its true manipulated span [start, end) in seconds."""
    seconds = int(rng.integers(60, 601))
    span = {"real": (0, 0), "whole": (0, seconds)}.get(kind)
    if span is None:
        length = int(rng.integers(3, 21))
        start = int(rng.integers(0, seconds - length))
        span = (start, start + length)
    fake = np.zeros(seconds, bool)
    fake[span[0]:span[1]] = True
    return timeline(rng, seconds, fake, args), span


def judge(p: np.ndarray, settings: ScoringSettings, timed: bool) -> verdicts.VideoVerdict:
    faces = [verdicts.face_score("v", t, 0, float(x), THRESHOLD, track_id=0, timestamp_s=float(t) if timed else None)
             for t, x in enumerate(p)]
    return verdicts.aggregate("v", None, faces, THRESHOLD, settings)


def iou(found: verdicts.Segment, span: tuple[int, int]) -> float:
    """Overlap of a named segment (first to last face, each standing for its second) with the true span."""
    start, end = found.start_s, found.end_s + 1
    overlap = max(0.0, min(end, span[1]) - max(start, span[0]))
    return overlap / (max(end, span[1]) - min(start, span[0]))


def measure(videos: dict[str, list[tuple[np.ndarray, tuple[int, int]]]], settings: ScoringSettings | None) -> str:
    """One table row: FAKE share per kind and the median segment IoU (``settings`` None: no segment rule)."""
    shares, ious = [], []
    for kind in KINDS:
        called = 0
        for p, span in videos[kind]:
            verdict = judge(p, settings or ScoringSettings(), timed=settings is not None)
            called += verdict.verdict == verdicts.FAKE
            sustained = [s for s in verdict.segments if s.verdict == verdicts.FAKE]
            if kind == "partial" and verdict.verdict == verdicts.FAKE and sustained:
                ious.append(max(iou(s, span) for s in sustained))
        shares.append(f"{called / len(videos[kind]):.3f}")
    rule = "per-video rule only" if settings is None else \
        f"{settings.segment_min_faces} faces, {settings.segment_min_seconds:g} s"
    median = f"{np.median(ious):.2f} ({np.mean(np.array(ious) >= 0.5):.2f})" if ious else "-"
    return f"| {rule} | " + " | ".join(shares) + f" | {median} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=300, help="videos of each kind")
    parser.add_argument("--real-logit", type=float, default=-2.5)
    parser.add_argument("--fake-logit", type=float, default=1.5)
    parser.add_argument("--spread", type=float, default=1.5)
    parser.add_argument("--correlation", type=float, default=0.6)
    parser.add_argument("--seed", type=int, default=33)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    videos = {kind: [simulate(rng, kind, args) for _ in range(args.videos)] for kind in KINDS}
    print(f"real logit {args.real_logit}, fake logit {args.fake_logit}, spread {args.spread}, "
          f"correlation {args.correlation}, {args.videos} videos per kind, seed {args.seed}\n")
    print("| rule | real called FAKE | partial called FAKE | whole called FAKE | median segment IoU (share >= 0.5) |")
    print("|---|---|---|---|---|")
    print(measure(videos, None))
    for faces in (3, 4, 6, 8, 10):   # at one frame a second, n faces span n - 1 s
        print(measure(videos, replace(ScoringSettings(), segment_min_faces=faces, segment_min_seconds=faces - 1)))


if __name__ == "__main__":
    main()
