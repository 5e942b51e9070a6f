"""Decode time of the two sampling paths (issue 33, docs/detection.md "Keyframe-aware decoding").

Writes a face video (H.264, a keyframe every ``--keyframe-every`` seconds; ``samples.write_keyframed_video``)
and samples it at one frame every ``--every`` seconds with REALNESS_SAMPLING_DECODE=keyframes and
=sequential, in turn, ``--repeat`` times each; prints the best seconds, the frames decoded and the
largest pixel difference between the two paths at the frames both returned.

    python -m bench.bench_keyframes [--seconds 60] [--size 1920x1080] [--fps 30] [--keyframe-every 1] [--every 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from realness_tasks import samples
from realness_tasks.settings import SamplingSettings
from realness_tasks.frames import FrameSampler, probe_video


def run(path: Path, sampling: SamplingSettings, repeat: int) -> tuple[float, FrameSampler, dict[int, np.ndarray]]:
    """Best wall seconds of ``repeat`` full iterations, the sampler, and its last frames by index."""
    info = probe_video(path, sampling)
    best, sampler, images = float("inf"), None, {}
    for _ in range(repeat):
        started = time.monotonic()
        sampler = FrameSampler(path, info, sampling)  # choosing the path (the keyframe probe) is timed too
        images = {frame.index: frame.image for frame in sampler}
        best = min(best, time.monotonic() - started)
    return best, sampler, images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--keyframe-every", type=float, default=1.0, help="seconds between keyframes")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between sampled frames")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    photo = samples.sample_photos()[0].image
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "clip.mp4"
        started = time.monotonic()
        samples.face_video(path, photo, seconds=args.seconds, fps=args.fps, size=size, height_fraction=0.6,
                           keyframe_every=int(round(args.keyframe_every * args.fps)))
        written = time.monotonic() - started
        results, frames = {}, {}
        for mode in ("keyframes", "sequential"):
            seconds, sampler, frames[mode] = run(path, SamplingSettings(every_seconds=args.every, decode=mode),
                                                 args.repeat)
            results[mode] = {"seconds": round(seconds, 2), "frames_sampled": len(frames[mode]),
                             "frames_decoded": sampler.decoded, "reason": sampler.choice.reason}
        shared = sorted(frames["keyframes"].keys() & frames["sequential"].keys())
        difference = max((int(np.abs(frames["keyframes"][i].astype(int) - frames["sequential"][i]).max())
                          for i in shared), default=None)
        print(json.dumps({"date": date.today().isoformat(), "machine": f"{platform.processor() or platform.machine()}, "
                          f"{os.cpu_count()} cores", "video": f"{args.size} {args.fps:g} fps {args.seconds:g} s, "
                          f"keyframe every {args.keyframe_every:g} s, {path.stat().st_size / 1e6:.1f} MB "
                          f"(written in {written:.0f} s)", "every_seconds": args.every, "paths": results,
                          "same_frames": len(shared), "max_pixel_difference": difference}, indent=1))


if __name__ == "__main__":
    main()
