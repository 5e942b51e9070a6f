"""Whole videos (issue 33 item 5): partial-manipulation AUC, segment IoU and scan time per hour of 1080p30.

Run from the repository root as ``python -m bench.bench_long_video``; generated media, the ingested
stores and ``results.json`` stay under ``--workdir`` (default /tmp/realness-longvideo), outside git;
media are made once per name and reused (a changed generator needs a fresh workdir).
docs/long-video-benchmark.md keeps the runs.

**Quality.** Long videos (``--min-minutes`` to ``--max-minutes``, 640x360 at 10 fps, H.264 with a
keyframe every second) of one or two faces drifting over a background, ``--videos-per-kind`` of
each kind: ``real``; ``partial``, one face swapped for a random 3-20 s segment at a random place;
``whole``, one face swapped throughout. The detector is a model trained by ``realness train`` on
labelled clips of one drift cycle made by the same generator (``--train-clips`` real and as many
swapped clips per photo, alternately one and two faces, every face of a swapped clip swapped, so
the clips show the long videos' layouts and positions and the video label holds for each face;
clips that did not, taught a model to call faces fake by their position): the smallest
honest one the existing machinery allows, EfficientNet-Lite0 alone (REALNESS_FOUNDATION_ENCODER=none:
CLIP features of every face would not fit this machine's time) with a small training budget
(``TRAINING`` below) and the promotion floor at 0 so it is always scored. The faces are the
package's four sample photographs (three people), and the swap is the crude colour-cast one the
demo and the tests use (``samples.face_swap`` with ``samples.CRUDE_SWAP_CAST``, as
``tests/factories.fake_image`` makes it; written here as :func:`crude_swap` since benchmarks do not
import tests): the scored videos show the training clips' people and swap kind, so the benchmark
measures whether a short manipulation inside a long video is found and placed, not how well the
detector generalises (docs/detection-benchmark.md measures that). The product runs through the
``realness`` CLI: ``ingest`` (one frame a second over the whole video:
REALNESS_SAMPLING_MAX_FRAMES=600, the default: a 10-minute video's worth), ``train``, ``score`` and
``evaluate`` with the labelled segment times (``realness_tasks.localisation``).

**The old behaviour beside it, from the same run.** Before issue 33 a video was judged on its first
64 sampled frames only (``plan_frames`` cut the list), and its faces were pooled per ``face_index``
without tracks or segments. At one frame a second those 64 frames are exactly the first 64 of
today's plan, so the old verdict is emulated from the same scored faces: the faces of frames
before 64 sampling gaps (:func:`old_verdict`), rescored by ``verdicts.aggregate`` with no track
and no time (so no segment can form). Old segment IoU: the old code named no segment.

**Scan time.** One 60 s 1080p30 face clip with a keyframe every second (``samples.face_video``),
copied ``--hour-minutes`` times into one file by stream copy (PyAV remux, no re-encode), ingested
by ``realness ingest`` in one process (``bench/common.py``: wall seconds and the process's own
peak RSS from ``wait4``): at one frame a second (REALNESS_SAMPLING_MAX_FRAMES = its seconds) and
at the default budget (REALNESS_SAMPLING_MAX_FRAMES unset). The old behaviour: the first 64 s of the same file (stream copy)
ingested with the old plan and decoding (REALNESS_SAMPLING_MAX_FRAMES=64,
REALNESS_SAMPLING_DECODE=sequential), which is all the old code decoded and looked at of the hour.
MTCNN's converted networks are shared (REALNESS_DETECTION_NETWORKS_DIR under the workdir) and made
before the timed runs, so no run pays the conversion.

**Real footage** (``--real-footage``, not run otherwise): the 1920x1080 clips among the files and
folders given (a folder: its ``**/REAL/*.mp4``, as bench/realdata/rebuild.py lays out
``.realness-realdata``; smaller clips are left out, not upscaled) decoded one after the other and
re-encoded into one H.264 video at 30 fps with a keyframe every second, frames repeated to keep
each clip's duration. It is ingested by ``realness ingest`` at the default settings (one frame a
second within the 600-frame budget, keyframe-aware decoding) and with
REALNESS_SAMPLING_DECODE=sequential, the old decoding, beside it.

    python -m bench.bench_long_video                                    # quality and scan
    python -m bench.bench_long_video --skip-scan --videos-per-kind 6    # quality only
    python -m bench.bench_long_video --skip-quality --skip-scan --real-footage .realness-realdata
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from bench.common import run_measured
from realness_tasks import samples, verdicts

ROOT = Path(__file__).resolve().parent.parent
SIZE, FPS = (640, 360), 10
DRIFT_PERIOD_S = 20
KINDS = ("real", "partial", "whole")
OLD_FRAMES = 64   # the frames the old plan kept
SCAN_SIZE, SCAN_FPS = (1920, 1080), 30
TRAINING = {"REALNESS_FOUNDATION_ENCODER": "none", "REALNESS_TRAINING_FACES_PER_EPOCH": "768",
            "REALNESS_TRAINING_FROZEN_EPOCHS": "3", "REALNESS_TRAINING_FINETUNE_EPOCHS": "3",
            "REALNESS_TRAINING_INT8_ENGINE": "false", "REALNESS_TRAINING_MIN_VIDEO_AUC": "0",
            "REALNESS_REPORT_VERDICTS": ""}


@dataclass(frozen=True)
class LongVideo:
    name: str
    kind: str                            # real | partial | whole
    seconds: int
    faces: tuple[int, ...]               # sample photos shown, left to right
    swapped: int | None                  # which of ``faces`` is swapped (None: real)
    segment: tuple[int, int] | None      # the swapped span [start, end) in seconds (partial only)


def crude_swap(photos: list[samples.SamplePhoto], target: int, seed: int) -> np.ndarray:
    """Another photo's face swapped into ``target``'s with the crude swap's colour cast."""
    source = (target + 1 + seed % (len(photos) - 1)) % len(photos)
    return samples.face_swap(photos[target], photos[source], seed=seed, colour_cast=samples.CRUDE_SWAP_CAST)


def write_faces_video(path: Path, stills: list[np.ndarray], swapped: dict[int, np.ndarray],
                      seconds: int, segment: tuple[int, int] | None, seed: int) -> None:
    """One or two faces drifting over a background (a 20 s cycle from a seeded phase); ``swapped``
    (face number -> its swapped image) replaces those faces inside ``segment`` (throughout when
    ``segment`` is None). H.264 with a keyframe every second."""
    bg = samples.background(SIZE, seed)
    phase = np.random.default_rng(seed).uniform()
    height = 0.8 if len(stills) == 1 else 0.6
    offsets = [0] if len(stills) == 1 else [-SIZE[0] // 4, SIZE[0] // 4]

    def frames():
        for i in range(seconds * FPS):
            frame, t = bg.copy(), i / FPS
            drift = int(12 * np.sin(2 * np.pi * (t / DRIFT_PERIOD_S + phase)))
            for face, (still, offset) in enumerate(zip(stills, offsets)):
                fake = face in swapped and (segment is None or segment[0] <= t < segment[1])
                samples.place(frame, swapped[face] if fake else still, height, (offset + drift, 0))
            yield frame

    partial = path.with_name(path.stem + ".part" + path.suffix)   # an interrupted run leaves no half video
    samples.write_keyframed_video(partial, frames(), FPS, SIZE, keyframe_every=FPS)
    partial.replace(path)


def plan_long_videos(rng: np.random.Generator, per_kind: int, min_minutes: float, max_minutes: float,
                     photos: int) -> list[LongVideo]:
    plans = []
    for kind in KINDS:
        for n in range(per_kind):
            seconds = int(rng.integers(int(min_minutes * 60), int(max_minutes * 60) + 1))
            faces = tuple(int(i) for i in rng.choice(photos, size=1 + n % 2, replace=False))
            swapped = None if kind == "real" else int(rng.integers(len(faces)))
            segment = None
            if kind == "partial":
                length = int(rng.integers(3, 21))
                start = int(rng.integers(0, seconds - length))
                segment = (start, start + length)
            plans.append(LongVideo(f"{kind}_{n:02d}_{seconds}s.mp4", kind, seconds, faces, swapped, segment))
    return plans


def make_quality_set(work: Path, args: argparse.Namespace) -> tuple[list[str], list[LongVideo]]:
    """Training clips (with a metadata.json) under media/train, long videos under media/long (each made
    once: a rerun with the same options reuses them), and the long videos' labels (with segment
    times) in work/long-labels.csv."""
    photos = samples.sample_photos()
    landing = work / "media"
    (landing / "train").mkdir(parents=True, exist_ok=True)
    (landing / "long").mkdir(parents=True, exist_ok=True)
    labels = {}
    for p, photo in enumerate(photos):
        for n in range(args.train_clips):
            # the long videos' layouts: alternately one face, and two (this photo's on the left)
            shown = [p] if n % 2 == 0 else [p, (p + 1 + n) % len(photos)]
            for label in ("REAL", "FAKE"):
                name = f"{label.lower()}_{photo.name}_{n}_{args.train_seconds}s.mp4"
                labels[name] = {"label": label}
                path = landing / "train" / name
                if not path.is_file():
                    seed = 1000 + 10 * p + n   # a fake clip swaps every face: its label holds for each
                    swapped = {f: crude_swap(photos, i, seed) for f, i in enumerate(shown)} if label == "FAKE" else {}
                    write_faces_video(path, [photos[i].image for i in shown], swapped, args.train_seconds, None,
                                      seed)
    (landing / "train" / "metadata.json").write_text(json.dumps(labels, indent=1))
    plans = plan_long_videos(np.random.default_rng(args.seed), args.videos_per_kind, args.min_minutes,
                             args.max_minutes, len(photos))
    for n, plan in enumerate(plans):
        path = landing / "long" / plan.name
        if not path.is_file():
            swapped = {} if plan.swapped is None else {plan.swapped: crude_swap(photos, plan.faces[plan.swapped], n)}
            write_faces_video(path, [photos[i].image for i in plan.faces], swapped, plan.seconds, plan.segment, n)
    with open(work / "long-labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "label", "kind", "faces", "segment_start_s", "segment_end_s"])
        for plan in plans:
            writer.writerow([plan.name, "REAL" if plan.kind == "real" else "FAKE", plan.kind, len(plan.faces),
                             *(plan.segment or ("", ""))])
    return list(labels), plans


def run_cli(args: list[str], env: dict[str, str], log: Path) -> dict:
    """One ``realness`` command in its own process: wall seconds, its own peak RSS, exit code."""
    with open(log, "w") as out:
        measured = run_measured([sys.executable, "-m", "realness_tasks.cli", *args], env=env, cwd=ROOT, output=out)
    if measured["exit_code"] != 0:
        raise SystemExit(f"realness {' '.join(args)} failed (exit {measured['exit_code']}): see {log}")
    return measured


def base_env(work: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALNESS_")}
    return {**env, "REALNESS_HOME": str(home), "REALNESS_DETECTION_NETWORKS_DIR": str(work / "networks")}


def old_verdict(cfg, store, db, row: dict) -> verdicts.VideoVerdict:
    """The verdict the old code would give: the faces of the first ``OLD_FRAMES`` sampled frames, pooled
    per face_index without tracks or times (so no segment)."""
    from realness_tasks.reports import load_faces, model_threshold

    threshold = model_threshold(db, row["model_version"])
    step = max(1, round(cfg.sampling.every_seconds * FPS))
    faces = [verdicts.face_score(row["video_id"], f.frame_index, f.face_index, f.p_fake, threshold,
                                 p_identity=f.p_identity)
             for f in load_faces(cfg, store, db, row["video_id"], row["model_version"])
             if f.frame_index < OLD_FRAMES * step]
    if not faces:
        return verdicts.unscored(row["video_id"], row["source_uri"], verdicts.NO_FACE, "no face in the first frames")
    return verdicts.aggregate(row["video_id"], row["source_uri"], faces, threshold, cfg.scoring)


def kind_auc(scores: dict[str, float | None], kinds: dict[str, str], kind: str) -> float | None:
    """Video AUC of one fake kind against the real videos (videos without a score left out)."""
    from realness_tasks.evaluation import fakes_vs_reals_auc

    return fakes_vs_reals_auc([s for name, s in scores.items() if kinds[name] == kind and s is not None],
                              [s for name, s in scores.items() if kinds[name] == "real" and s is not None])


def quality(work: Path, args: argparse.Namespace) -> dict:
    from realness_tasks.config import RealnessConfig
    from realness_tasks.db import Database
    from realness_tasks.evaluation import latest_verdicts
    from realness_tasks.storage import open_store

    started = time.monotonic()
    training, plans = make_quality_set(work, args)
    made = time.monotonic() - started
    home = work / "home"   # a fresh store and database each run, the media linked into its landing folder
    shutil.rmtree(home, ignore_errors=True)
    for folder, names in {"train": [*training, "metadata.json"], "long": [p.name for p in plans]}.items():
        (home / "store" / "landing" / folder).mkdir(parents=True)
        for name in names:
            os.link(work / "media" / folder / name, home / "store" / "landing" / folder / name)
    env = {**base_env(work, home), "REALNESS_SAMPLING_MAX_FRAMES": "600", **TRAINING}
    steps = {step: run_cli([step], env, work / f"{step}.log") for step in ("ingest", "train", "score")}
    long_uri = (home / "store" / "landing" / "long").as_uri() + "/"
    steps["evaluate"] = run_cli(["evaluate", "--labels", str(work / "long-labels.csv"), "--prefix", long_uri], env,
                                work / "evaluate.log")
    evaluation = json.loads(sorted((home / "store" / "reports" / "evaluations").glob("*/evaluation.json"))[-1]
                            .read_text())
    kinds = {plan.name: plan.kind for plan in plans}
    new = {v["name"]: (v["verdict"], v["p_fake"]) for v in evaluation["videos"]}

    cfg = RealnessConfig.from_env({}, home=str(home))
    store, db = open_store(cfg.resolved_store_uri, cfg.s3), Database(cfg.resolved_database_url)
    try:
        old = {}
        for row in latest_verdicts(db, long_uri):
            verdict = old_verdict(cfg, store, db, row)
            old[row["source_uri"].rsplit("/", 1)[1]] = (verdict.verdict, verdict.p_fake)
    finally:
        db.dispose()
    rows = {}
    for name, judged in (("old", old), ("new", new)):
        scores = {n: p for n, (_, p) in judged.items()}
        rows[name] = {f"auc_{kind}": kind_auc(scores, kinds, kind) for kind in ("partial", "whole")}
        rows[name]["called_fake"] = {kind: sum(judged[n][0] == verdicts.FAKE for n in judged if kinds[n] == kind)
                                     for kind in KINDS}
    localisation = evaluation["localisation"]
    rows["new"]["localisation"] = {k: localisation[k] for k in ("partial_fakes", "called_fake", "localised",
                                                                  "localised_share", "median_iou")}
    rows["new"]["partial_videos"] = localisation["videos"]
    rows["old"]["localisation"] = "no segments: the old code named none"
    return {"videos": {kind: sum(p.kind == kind for p in plans) for kind in KINDS},
            "minutes": round(sum(p.seconds for p in plans) / 60, 1), "made_s": round(made),
            "segments": {p.name: p.segment for p in plans if p.segment}, "steps": steps,
            "model": (work / "train.log").read_text().splitlines()[-4:],
            "old": rows["old"], "new": rows["new"]}


def concatenated(clip: Path, copies: int, out: Path, limit_s: float | None = None) -> Path:
    """``copies`` of ``clip`` one after the other by stream copy (no re-encode), cut at the first
    keyframe at or after ``limit_s`` when given."""
    import av

    with av.open(str(out), "w") as output:
        stream, offset = None, 0
        for _ in range(copies):
            with av.open(str(clip)) as source:
                video = source.streams.video[0]
                if stream is None:
                    stream = output.add_stream_from_template(video)
                end = offset
                for packet in source.demux(video):
                    if packet.dts is None:   # the demuxer's flush packet
                        continue
                    if limit_s is not None and packet.is_keyframe and \
                            float((packet.pts + offset) * video.time_base) >= limit_s:
                        return out
                    packet.pts += offset
                    packet.dts += offset
                    end = max(end, packet.pts + packet.duration)
                    packet.stream = stream
                    output.mux(packet)
                offset = end
    return out


def ledger_row(home: Path) -> dict:
    from realness_tasks import ledger
    from realness_tasks.config import RealnessConfig
    from realness_tasks.db import Database

    db = Database(RealnessConfig.from_env({}, home=str(home)).resolved_database_url)
    try:
        row = ledger.entries(db)[0]
    finally:
        db.dispose()
    return {k: row[k] for k in ("status", "frames_sampled", "faces", "seconds_covered", "largest_gap_s",
                                 "decode_path")}


def convert_networks_once(work: Path, folder: Path, clip: Path) -> None:
    """Make MTCNN's converted networks (shared by every run through REALNESS_DETECTION_NETWORKS_DIR) with an
    untimed two-frame ingest of ``clip``, so that no timed run pays the conversion."""
    if (work / "networks").is_dir() and any((work / "networks").iterdir()):
        return
    warm = folder / "warm-up"
    shutil.rmtree(warm, ignore_errors=True)
    (warm / "store" / "landing").mkdir(parents=True)
    shutil.copy(clip, warm / "store" / "landing" / clip.name)
    run_cli(["ingest"], {**base_env(work, warm), "REALNESS_SAMPLING_MAX_FRAMES": "2"}, folder / "warm-up.log")


def measured_ingest(work: Path, folder: Path, name: str, video: Path, settings: dict[str, str]) -> dict:
    """``realness ingest`` of ``video`` alone on a fresh store with ``settings``: its wall seconds and peak RSS
    beside what the ledger says of the video."""
    home = folder / ("home-" + "".join(c if c.isalnum() else "-" for c in name))
    shutil.rmtree(home, ignore_errors=True)
    (home / "store" / "landing").mkdir(parents=True)
    os.link(video, home / "store" / "landing" / video.name)
    measured = run_cli(["ingest"], {**base_env(work, home), **settings}, folder / f"{home.name}.log")
    return {**measured, "settings": settings, **ledger_row(home)}


def scan(work: Path, args: argparse.Namespace) -> dict:
    folder = work / "scan"
    folder.mkdir(parents=True, exist_ok=True)
    clip = folder / "clip-1080p30-60s.mp4"
    started = time.monotonic()
    if not clip.is_file():
        partial = clip.with_name(clip.stem + ".part.mp4")
        samples.face_video(partial, samples.sample_photos()[0].image, seconds=60, fps=SCAN_FPS, size=SCAN_SIZE,
                           height_fraction=0.6, keyframe_every=SCAN_FPS)
        partial.replace(clip)
    encoded = time.monotonic() - started
    started = time.monotonic()
    hour = concatenated(clip, args.hour_minutes, folder / f"long-{args.hour_minutes}min.mp4")
    first = concatenated(clip, 2, folder / "first-64s.mp4", limit_s=OLD_FRAMES)
    copied = time.monotonic() - started
    seconds = args.hour_minutes * 60
    runs = {"new, one frame a second": (hour, {"REALNESS_SAMPLING_MAX_FRAMES": str(seconds)}),
            "new, default budget": (hour, {}),
            "old, first 64 s (64 frames, sequential)": (first, {"REALNESS_SAMPLING_MAX_FRAMES": str(OLD_FRAMES),
                                                                 "REALNESS_SAMPLING_DECODE": "sequential"})}
    convert_networks_once(work, folder, clip)
    out = {"clip": {"encode_s": round(encoded), "mb": round(clip.stat().st_size / 1e6, 1)},
           "file": {"minutes": args.hour_minutes, "mb": round(hour.stat().st_size / 1e6), "copy_s": round(copied, 1)},
           "runs": {}}
    for name, (video, settings) in runs.items():
        run = measured_ingest(work, folder, name, video, settings)
        out["runs"][name] = {**run, "seconds_per_hour": round(run["seconds"] * 60 / args.hour_minutes, 1)
                             if video == hour else None}
        print(f"scan {name}: {out['runs'][name]}", flush=True)
    return out


def real_footage_clips(sources: list[Path]) -> tuple[list[Path], dict[str, str]]:
    """The 1920x1080 clips among ``sources`` (files, or folders searched for ``**/REAL/*.mp4`` as
    ``.realness-realdata`` lays them out), in name order, and the others with their size: upscaling
    a 480p or 720p clip would time decoding of footage no camera made."""
    import av

    candidates = sorted({clip.resolve() for source in sources
                         for clip in (sorted(source.glob("**/REAL/*.mp4")) if source.is_dir() else [source])})
    kept, left_out = [], {}
    for clip in candidates:
        with av.open(str(clip)) as container:
            video = container.streams.video[0].codec_context
            size = (video.width, video.height)
        if size == SCAN_SIZE:
            kept.append(clip)
        else:
            left_out[clip.name] = f"{size[0]}x{size[1]}"
    if not kept:
        raise SystemExit(f"no 1920x1080 clip among {', '.join(map(str, sources))}")
    return kept, left_out


def write_real_footage(clips: list[Path], out: Path) -> None:
    """``clips`` one after the other re-encoded as one H.264 video at ``SCAN_FPS`` with a keyframe every second
    (``samples.write_keyframed_video``); each clip's frames are repeated or dropped to that rate so the footage
    keeps its real duration."""
    import av

    def frames():
        for clip in clips:
            with av.open(str(clip)) as container:
                video = container.streams.video[0]
                frame_s, written = 1 / float(video.average_rate), 0
                for frame in container.decode(video):
                    image = frame.to_ndarray(format="bgr24")
                    shown_until = frame.time - (video.start_time or 0) * video.time_base + frame_s
                    while written / SCAN_FPS < shown_until:
                        yield image
                        written += 1

    partial = out.with_name(out.stem + ".part" + out.suffix)
    samples.write_keyframed_video(partial, frames(), SCAN_FPS, SCAN_SIZE, keyframe_every=SCAN_FPS)
    partial.replace(out)


def real_footage(work: Path, args: argparse.Namespace) -> dict:
    """The 1080p clips of ``--real-footage`` as one 1080p30 video with 1 s keyframes (made once per set of
    clips), ingested at the default settings and with the old sequential decoding."""
    import av

    folder = work / "real-footage"
    folder.mkdir(parents=True, exist_ok=True)
    clips, left_out = real_footage_clips(args.real_footage)
    names = hashlib.sha256("\n".join(c.name for c in clips).encode()).hexdigest()[:10]
    footage = folder / f"real-footage-{len(clips)}-clips-{names}.mp4"
    started = time.monotonic()
    if not footage.is_file():
        write_real_footage(clips, footage)
    encoded = time.monotonic() - started
    with av.open(str(footage)) as container:
        seconds = container.duration / av.time_base
    convert_networks_once(work, folder, footage)
    out = {"clips": [c.name for c in clips], "left_out": left_out,
           "file": {"seconds": round(seconds, 1), "mb": round(footage.stat().st_size / 1e6, 1),
                    "encode_s": round(encoded)},
           "runs": {}}
    runs = {"default settings": {}, "sequential decoding": {"REALNESS_SAMPLING_DECODE": "sequential"}}
    for name, settings in runs.items():
        run = measured_ingest(work, folder, name, footage, settings)
        out["runs"][name] = {**run, "seconds_per_hour": round(run["seconds"] * 3600 / seconds, 1)}
        print(f"real footage {name}: {out['runs'][name]}", flush=True)
    return out


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/realness-longvideo"))
    parser.add_argument("--videos-per-kind", type=int, default=4)
    parser.add_argument("--min-minutes", type=float, default=1.0)
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--train-clips", type=int, default=6, help="real and swapped training clips per photo")
    parser.add_argument("--train-seconds", type=int, default=DRIFT_PERIOD_S,
                        help="length of a training clip (default: one drift cycle)")
    parser.add_argument("--hour-minutes", type=int, default=60, help="copies of the 60 s 1080p30 clip")
    parser.add_argument("--seed", type=int, default=33)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-scan", action="store_true")
    parser.add_argument("--real-footage", type=Path, nargs="+", metavar="DIR_OR_FILE",
                        help="also time the ingest of real footage: the 1920x1080 clips among these files and folders "
                             "(a folder: its **/REAL/*.mp4, e.g. .realness-realdata) as one 1080p30 video with "
                             "1 s keyframes")
    args = parser.parse_args()
    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    saved = work / "results.json"   # each part's newest run, kept across invocations
    results = json.loads(saved.read_text()) if saved.is_file() else {}
    for part, measure, skipped in (("quality", quality, args.skip_quality), ("scan", scan, args.skip_scan),
                                   ("real_footage", real_footage, not args.real_footage)):
        if skipped:
            continue
        context = {"date": date.today().isoformat(), "command": "python -m bench.bench_long_video " +
                   " ".join(sys.argv[1:]), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                   "load_before": load_average()}
        results[part] = {**context, **measure(work, args), "load_after": load_average()}
        saved.write_text(json.dumps(results, indent=1, default=str))
        print(json.dumps(results[part], indent=1, default=str), flush=True)


if __name__ == "__main__":
    main()
