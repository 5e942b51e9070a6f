"""Real deepfake clips -> ingest -> train (defaults) -> score -> evaluate: how the pipeline does on real data.

The 86 labelled clips of ``bench/realdata/manifest.csv`` (FaceForensics++ originals and four
manipulations, DeepFakeDetection actors, Celeb-DF face-crop segments, DFDC fakes; see
``bench/realdata/README.md``) go through the ``realness`` CLI as separate processes, each step's wall
time and its own peak RSS measured (``bench.common.run_measured``), as ``bench/bench_detection.py`` does
for synthetic videos. Scenarios (``--scenario``, default all):

* ``in-domain``: the manifest split by ``source_id`` (a fake goes with its original), about 60 % of
  the source groups labelled for training, 40 % scored; stratified by data set and group make-up
  so that both parts hold reals and fakes of FaceForensics++ and Celeb-DF (``--seed``).
* ``cross-dataset``: trained on FaceForensics++, DFD and DFDC, scored on Celeb-DF.
* ``real-only``: trained on the real videos of the in-domain training part only (no labelled
  fake), scored on the in-domain scored part. Training may refuse this; the refusal is recorded.

Training videos land under ``landing/train/`` with a ``metadata.json`` sidecar giving each video's
label and its ``group`` (``<dataset>:<source_id>``, so training splits by source); after training,
the scored videos land under ``landing/score/`` without labels, are ingested and scored, and
``realness evaluate --labels labels-score.csv --prefix score/`` measures the verdicts (the CSV has
``dataset`` and ``manipulation`` columns to break down by). Every setting is the pipeline's
default except the promotion floor: ``--floor`` (default 0) sets REALNESS_TRAINING_MIN_VIDEO_AUC,
since the models' own held-out splits hold a handful of videos here and a refused model scores
nothing; the floor changes only whether the model is promoted, not the model. Whether the default
floor (0.80) would have promoted it is recorded. ``--floor default`` keeps the pipeline's gate.
A model that training registers without promoting it whatever the floor (one trained without
labelled fakes) is promoted with ``realness approve`` so that it is measured, the gate's reason
recorded (``--no-approve``: left unscored). Details and results: ``docs/realdata-benchmark.md``.

    python -m bench.bench_realdata                                   # every scenario
    nice python -m bench.bench_realdata --scenario in-domain --work out/bench-realdata

Results: ``<work>/results-<scenario>.json`` (also the bootstrap intervals: videos resampled with
replacement, 2000 draws, seeded) and a markdown table on stdout. ``--table`` only prints the table
of the results files already in ``<work>``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.common import ROOT, run_measured

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MANIFEST = ROOT / "bench" / "realdata" / "manifest.csv"
DATA = ROOT / ".realness-realdata"
SCENARIOS = ("in-domain", "cross-dataset", "real-only")
TRAIN_SHARE = 0.6
DEFAULT_FLOOR = 0.80          # TrainingSettings.min_video_auc's default, for the "would it be promoted" column
BOOTSTRAP_DRAWS = 2000
SCORED_VERDICTS = ("FAKE", "REAL", "UNCERTAIN")


# ---------------------------------------------------------------- the data and the scenarios

def read_manifest(data: Path) -> list[dict]:
    with open(MANIFEST, newline="") as f:
        rows = list(csv.DictReader(f))
    missing = [r["local_path"] for r in rows if not (data / r["local_path"]).is_file()]
    if missing:
        raise SystemExit(f"{len(missing)} clip(s) missing under {data} (e.g. {missing[0]}): rebuild them with "
                         f"python -m bench.realdata.rebuild --mirrors /work/.mirror")
    names = Counter(Path(r["local_path"]).name for r in rows)
    if max(names.values()) > 1:
        raise SystemExit(f"file names are not unique: {[n for n, c in names.items() if c > 1]}")
    for row in rows:
        row["name"] = Path(row["local_path"]).name     # flat in landing/: no real/ or fake/ folder gives a label
        row["group"] = f"{row['dataset']}:{row['source_id']}"
    return rows


def split_by_source(rows: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    """(training part, scored part): whole source groups, about TRAIN_SHARE of each stratum's groups to training.

    A stratum is a data set and a group make-up (its labels with their counts, e.g. FF++'s original
    with its four fakes, or a Celeb-DF real alone), so each part gets its share of every kind; a
    stratum of one group goes to training. Groups are shuffled with ``seed``.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["group"]].append(row)
    strata: dict[tuple, list[str]] = defaultdict(list)
    for group, members in sorted(groups.items()):
        strata[(members[0]["dataset"], tuple(sorted(Counter(m["label"] for m in members).items())))].append(group)
    rng = np.random.default_rng(seed)
    training: set[str] = set()
    for key in sorted(strata):
        members = list(strata[key])
        rng.shuffle(members)
        take = max(1, min(len(members) - 1, math.floor(TRAIN_SHARE * len(members) + 0.5))) \
            if len(members) > 1 else 1
        training.update(members[:take])
    train = [r for r in rows if r["group"] in training]
    score = [r for r in rows if r["group"] not in training]
    for dataset in ("faceforensics", "celebdf"):
        for part, name in ((train, "training"), (score, "scored")):
            labels = {r["label"] for r in part if r["dataset"] == dataset}
            if labels != {"REAL", "FAKE"}:
                raise SystemExit(f"seed {seed}: the {name} part holds {sorted(labels)} of {dataset}, not both labels")
    return train, score


def scenario_parts(name: str, rows: list[dict], seed: int) -> tuple[list[dict], list[dict]]:
    if name == "in-domain":
        return split_by_source(rows, seed)
    if name == "cross-dataset":
        return [r for r in rows if r["dataset"] != "celebdf"], [r for r in rows if r["dataset"] == "celebdf"]
    if name == "real-only":
        train, score = split_by_source(rows, seed)
        return [r for r in train if r["label"] == "REAL"], score
    raise ValueError(name)


def describe_part(part: list[dict]) -> dict:
    by = Counter((r["dataset"], r["label"]) for r in part)
    return {"videos": len(part), "REAL": sum(r["label"] == "REAL" for r in part),
            "FAKE": sum(r["label"] == "FAKE" for r in part), "groups": len({r["group"] for r in part}),
            "by_dataset": {f"{d}/{label}": n for (d, label), n in sorted(by.items())},
            "by_manipulation": dict(sorted(Counter(r["manipulation"] for r in part).items()))}


# ---------------------------------------------------------------- running the CLI

def run_cli(args: list[str], env: dict[str, str], log: Path) -> dict:
    """One ``realness`` command in its own process: wall time, its own peak RSS, exit code (output to ``log``)."""
    before = os.getloadavg()[0]
    with open(log, "w") as out:
        measured = run_measured([sys.executable, "-m", "realness_tasks.cli", *args], env=env, cwd=ROOT, output=out)
    return {**measured, "load_1min_before": round(before, 2), "load_1min_after": round(os.getloadavg()[0], 2),
            "log": str(log)}


def failure_line(log: Path, command: str) -> str:
    """The CLI's one-line explanation (``realness <command>: ...``), else the log's last line (a traceback's)."""
    lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    mine = [line for line in lines if line.startswith(f"realness {command}:")]
    return (mine or lines or ["(no output)"])[-1]


TRAIN_LINES = ("dataset:", "self-blended", "foundation branch:", "foundation head", "detector:", "test", "BatchNorm",
               "model ")


def progress_lines(log: Path, starts: tuple[str, ...]) -> list[str]:
    """The CLI's progress lines (indented by two spaces) that start with one of ``starts``."""
    return [line.strip() for line in Path(log).read_text(errors="replace").splitlines()
            if line.startswith("  ") and line.strip().startswith(starts)]


def ingest_summary(log: Path) -> dict:
    """``ingest: 12 object(s): {...}; 340 faces published`` -> statuses and faces."""
    text = Path(log).read_text(errors="replace")
    match = re.search(r"^ingest: (\d+) object\(s\): (\{.*?\}); (\d+) faces published", text, re.MULTILINE)
    if not match:
        return {}
    try:
        statuses = json.loads(match.group(2).replace("'", '"'))
    except ValueError:
        statuses = match.group(2)
    problems = [line.strip() for line in text.splitlines()[text.splitlines().index(match.group(0)) + 1:]
                if line.startswith("  ")]
    return {"objects": int(match.group(1)), "statuses": statuses, "faces": int(match.group(3)), "problems": problems}


def latest_model(home: Path) -> dict | None:
    with sqlite3.connect(home / "realness.db") as conn:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM model_versions ORDER BY created_at DESC LIMIT 1").fetchone()
    return dict(row) if row else None


def model_metrics(home: Path, version: str) -> dict:
    """What the version's metrics.json says of its own held-out split: the branches, the fusion, the detector."""
    path = home / "store" / "models" / version / "metrics.json"
    if not path.is_file():
        return {"metrics_json": None}
    metrics = json.loads(path.read_text())
    test = metrics.get("test") or {}
    detector = dict(metrics.get("detector") or {})
    if isinstance(detector.get("head"), dict):   # the head's 512 weights say nothing here
        detector["head"] = {k: v for k, v in detector["head"].items() if not isinstance(v, list)}
    fusion = metrics.get("fusion")
    return {"metrics_json": str(path),
            "test_video": {k: v for k, v in (test.get("video") or {}).items() if not isinstance(v, (list, dict))},
            "test_face_auc": test.get("auc"), "branches": test.get("branches"), "fusion": fusion,
            "detector": detector, "foundation": {k: v for k, v in (metrics.get("foundation") or {}).items()
                                                 if not isinstance(v, (list, dict))} or None}


def scored_part_faces(home: Path, prefix_uri: str) -> dict:
    with sqlite3.connect(home / "realness.db") as conn:
        row = conn.execute("SELECT COUNT(*), COALESCE(SUM(faces_scored), 0) FROM latest_verdicts "
                           "WHERE source_uri LIKE ?", (prefix_uri + "%",)).fetchone()
    return {"videos": row[0], "faces": row[1]}


def copy_videos(part: list[dict], data: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for row in part:
        shutil.copyfile(data / row["local_path"], folder / row["name"])


# ---------------------------------------------------------------- bootstrap

def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from realness_tasks.metrics import roc_auc

    return roc_auc(labels, scores)


def interval(values: list[float]) -> dict:
    finite = np.array([v for v in values if not math.isnan(v)])
    if not len(finite):
        return {"low": None, "high": None, "draws": 0}
    low, high = np.percentile(finite, [2.5, 97.5])
    return {"low": round(float(low), 4), "high": round(float(high), 4), "draws": len(finite)}


def bootstrap(videos: list[dict], seed: int, draws: int = BOOTSTRAP_DRAWS) -> dict:
    """95 % percentile intervals of the video AUC, each data set's AUCs and each manipulation's ``auc_vs_all_real``.

    ``videos`` are the evaluation's matched, scored videos. Each draw resamples them with
    replacement; a draw without both labels (in the group ranked) gives no value and is not counted.
    """
    scored = [v for v in videos if v["verdict"] in SCORED_VERDICTS and v["p_fake"] is not None]
    if not scored:
        return {}
    y = np.array([v["label"] == "FAKE" for v in scored], np.int32)
    p = np.array([v["p_fake"] for v in scored], np.float64)
    dataset = np.array([v["groups"].get("dataset", "") for v in scored])
    manipulation = np.array([v["groups"].get("manipulation", "") for v in scored])
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = defaultdict(list)
    for _ in range(draws):
        i = rng.integers(0, len(scored), len(scored))
        yi, pi, di, mi = y[i], p[i], dataset[i], manipulation[i]
        real = yi == 0
        out["overall"].append(auc(yi, pi))
        for d in sorted(set(dataset)):
            mine = di == d
            if (y[dataset == d] == 1).any() and (y[dataset == d] == 0).any():
                out[f"dataset:{d}:auc"].append(auc(yi[mine], pi[mine]))
            if (y[dataset == d] == 1).any():
                keep = real | (mine & (yi == 1))
                out[f"dataset:{d}:auc_vs_all_real"].append(auc(yi[keep], pi[keep]))
            if (y[dataset == d] == 0).any():
                keep = (yi == 1) | (mine & real)
                out[f"dataset:{d}:auc_vs_all_fake"].append(auc(yi[keep], pi[keep]))
        for m in sorted(set(manipulation)):
            if (y[manipulation == m] == 1).any():
                keep = real | (mi == m)
                out[f"manipulation:{m}:auc_vs_all_real"].append(auc(yi[keep], pi[keep]))
            if (y[manipulation == m] == 0).any():
                keep = (yi == 1) | ((mi == m) & real)
                out[f"manipulation:{m}:auc_vs_all_fake"].append(auc(yi[keep], pi[keep]))
    return {key: interval(values) for key, values in out.items()}


# ---------------------------------------------------------------- one scenario

def run_scenario(name: str, rows: list[dict], args: argparse.Namespace, work: Path) -> dict:
    train_part, score_part = scenario_parts(name, rows, args.seed)
    folder = work / name
    home = folder / "home"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    store = home / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALNESS_")}
    env.update({"REALNESS_HOME": str(home), "REALNESS_STORE_URI": store.resolve().as_uri(),
                "REALNESS_DATABASE_URL": f"sqlite:///{(home / 'realness.db').resolve()}"})
    if args.floor != "default":
        env["REALNESS_TRAINING_MIN_VIDEO_AUC"] = str(float(args.floor))
    result: dict = {
        "scenario": name, "seed": args.seed, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()]},
        "code": code_state(), "floor": args.floor,
        "train_part": describe_part(train_part), "score_part": describe_part(score_part),
        "train_videos": sorted(r["name"] for r in train_part), "score_videos": sorted(r["name"] for r in score_part),
    }
    print(f"[{name}] training part {result['train_part']['videos']} videos "
          f"({result['train_part']['REAL']} real, {result['train_part']['FAKE']} fake, "
          f"{result['train_part']['groups']} groups); scored part {result['score_part']['videos']} videos "
          f"({result['score_part']['REAL']} real, {result['score_part']['FAKE']} fake)", flush=True)

    landing = store / "landing"
    copy_videos(train_part, args.data, landing / "train")
    (landing / "train" / "metadata.json").write_text(json.dumps(
        {r["name"]: {"label": r["label"], "group": r["group"]} for r in train_part}, indent=1))
    ingest = run_cli(["ingest"], env, folder / "ingest-train.log")
    result["ingest_train"] = {**ingest, **ingest_summary(folder / "ingest-train.log")}
    print(f"[{name}] ingest (training part): {brief(result['ingest_train'])}", flush=True)
    if ingest["exit_code"]:
        result["failure"] = {"step": "ingest", "message": failure_line(folder / "ingest-train.log", "ingest")}
        return finish(result, work, name)

    train = run_cli(["train"], env, folder / "train.log")
    result["train"] = {**train, "summary": progress_lines(folder / "train.log", TRAIN_LINES)}
    print(f"[{name}] train: {brief(train)}", flush=True)
    model = latest_model(home) if (home / "realness.db").is_file() else None
    if train["exit_code"] or model is None:
        result["failure"] = {"step": "train", "exit_code": train["exit_code"],
                             "message": failure_line(folder / "train.log", "train")}
        print(f"[{name}] training failed: {result['failure']['message']}", flush=True)
        return finish(result, work, name)
    result["model"] = {k: model.get(k) for k in ("version", "backbone", "backbone_weights", "auc", "video_auc",
                                                 "test_videos", "threshold", "promoted", "reason", "dataset_faces",
                                                 "detector")}
    result["model"]["promoted_at_default_floor"] = (model.get("video_auc") is not None
                                                    and model["video_auc"] >= DEFAULT_FLOOR)
    result["model"].update(model_metrics(home, model["version"]))
    print(f"[{name}] model {model['version']}: held-out video AUC {model.get('video_auc')} over "
          f"{model.get('test_videos')} videos; {'promoted' if model['promoted'] else 'NOT promoted'} "
          f"({model['reason']}); branches {result['model'].get('branches')}", flush=True)
    if not model["promoted"]:
        # --floor default keeps the pipeline's gate: a model below the floor stays unscored.
        if not args.approve or (args.floor == "default" and "promotion floor" in (model["reason"] or "")):
            result["failure"] = {"step": "promotion", "message": model["reason"]}
            return finish(result, work, name)
        # The gate's refusal is recorded above; an operator's approval (the documented way to promote a
        # model the gate cannot judge, e.g. one trained without labelled fakes) lets it be measured.
        approve = run_cli(["approve", model["version"], "--reason",
                           "bench/bench_realdata.py: promoted to measure it on the scored part"], env,
                          folder / "approve.log")
        result["approve"] = {**approve, "gate_reason": model["reason"]}
        print(f"[{name}] approve: {brief(approve)}", flush=True)
        if approve["exit_code"]:
            result["failure"] = {"step": "approve", "message": failure_line(folder / "approve.log", "approve")}
            return finish(result, work, name)

    copy_videos(score_part, args.data, landing / "score")
    ingest = run_cli(["ingest"], env, folder / "ingest-score.log")
    result["ingest_score"] = {**ingest, **ingest_summary(folder / "ingest-score.log")}
    print(f"[{name}] ingest (scored part): {brief(result['ingest_score'])}", flush=True)
    score = run_cli(["score"], env, folder / "score.log")
    text = (folder / "score.log").read_text(errors="replace")
    faces = re.search(r"faces_scored=(\d+)", text)
    result["score"] = {**score, "faces_scored_in_run": int(faces.group(1)) if faces else None,
                       "scored_part": scored_part_faces(home, (landing / "score").resolve().as_uri() + "/")}
    print(f"[{name}] score: {brief(score)}; {result['score']['faces_scored_in_run']} faces scored in the run "
          f"(training videos included), scored part {result['score']['scored_part']}", flush=True)
    if score["exit_code"]:
        result["failure"] = {"step": "score", "message": failure_line(folder / "score.log", "score")}
        return finish(result, work, name)

    labels = folder / "labels-score.csv"
    with open(labels, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "label", "dataset", "manipulation"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in writer.fieldnames} for r in score_part)
    evaluate = run_cli(["evaluate", "--labels", str(labels), "--prefix", "score/"], env, folder / "evaluate.log")
    result["evaluate"] = evaluate
    evaluations = sorted((store / "reports" / "evaluations").glob("*/evaluation.json"))
    if evaluate["exit_code"] or not evaluations:
        result["failure"] = {"step": "evaluate", "message": failure_line(folder / "evaluate.log", "evaluate")}
        return finish(result, work, name)
    evaluation = json.loads(evaluations[-1].read_text())
    result["evaluation_json"] = str(evaluations[-1])
    result["evaluation"] = summarise(evaluation, args.seed)
    print(f"[{name}] evaluate: video AUC {result['evaluation']['auc']} "
          f"{result['evaluation']['auc_ci95']}", flush=True)
    return finish(result, work, name)


def refresh(result: dict, work: Path) -> None:
    """Recompute the parts of a results file that are derived from the stored logs and evaluation.json."""
    log = work / result["scenario"] / "train.log"
    if result.get("train") and log.is_file():
        result["train"]["summary"] = progress_lines(log, TRAIN_LINES)
    if result.get("evaluation_json") and Path(result["evaluation_json"]).is_file():
        result["evaluation"] = summarise(json.loads(Path(result["evaluation_json"]).read_text()), result["seed"])
    (work / f"results-{result['scenario']}.json").write_text(json.dumps(result, indent=1, default=str))


def summarise(evaluation: dict, seed: int) -> dict:
    overall = evaluation["overall"]
    (tn, fp), (fn, tp) = overall["confusion"]
    intervals = bootstrap(evaluation["videos"], seed)
    breakdown = {}
    for column, groups in evaluation.get("breakdown", {}).items():
        breakdown[column] = {}
        for value, m in groups.items():
            entry = {k: m.get(k) for k in ("labelled", "scored", "auc", "auc_vs_all_real", "auc_vs_all_fake",
                                           "uncertain", "confusion", "verdicts_by_label")}
            for kind in ("auc", "auc_vs_all_real", "auc_vs_all_fake"):
                if f"{column}:{value}:{kind}" in intervals:
                    entry[f"{kind}_ci95"] = intervals[f"{column}:{value}:{kind}"]
            breakdown[column][value] = entry
    return {"auc": overall["auc"], "auc_ci95": intervals.get("overall"), "bootstrap": {"draws": BOOTSTRAP_DRAWS,
                                                                                      "seed": seed},
            "labelled": overall["labelled"], "scored": overall["scored"], "no_face": overall["no_face"],
            "error": overall["error"], "no_verdict": overall["no_verdict"], "uncertain": overall["uncertain"],
            "reals": tn + fp, "reals_called_fake": fp, "fakes": fn + tp, "fakes_caught": tp,
            "accuracy": overall["accuracy"], "verdicts_by_label": overall["verdicts_by_label"],
            "model_versions": evaluation.get("model_versions"), "ambiguous": evaluation.get("ambiguous"),
            "unlabelled_verdicts": evaluation.get("unlabelled_verdicts"), "breakdown": breakdown,
            "videos": [{k: v.get(k) for k in ("name", "label", "groups", "verdict", "p_fake")}
                       for v in evaluation["videos"]]}


def brief(measured: dict) -> str:
    extra = f", {measured['faces']} faces, {measured['statuses']}" if "faces" in measured else ""
    return (f"exit {measured['exit_code']}, {measured['seconds']} s, peak RSS {measured['peak_rss_mb']} MB"
            f"{extra} (log {measured['log']})")


def code_state() -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.rstrip()

    return {"commit": git("rev-parse", "HEAD"),
            "modified": [line[3:] for line in git("status", "--porcelain", "--", "realness_tasks").splitlines()]}


def finish(result: dict, work: Path, name: str) -> dict:
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["machine"]["load_1_5_15_at_end"] = [round(x, 2) for x in os.getloadavg()]
    (work / f"results-{name}.json").write_text(json.dumps(result, indent=1, default=str))
    return result


# ---------------------------------------------------------------- the table

def fmt(value, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def with_ci(value, ci: dict | None) -> str:
    if value is None:
        return "n/a"
    if not ci or ci.get("low") is None:
        return fmt(value)
    return f"{fmt(value)} [{fmt(ci['low'], 2)}, {fmt(ci['high'], 2)}]"


def print_table(results: list[dict]) -> None:
    print("\n| scenario | trained on (real/fake videos) | scored (real/fake) | training time | peak RSS (train) "
          "| model's own test split: video AUC (videos) | EfficientNet alone / CLIP head alone (test videos) "
          "| fusion weight (EfficientNet) | **scored: video AUC [95 % CI]** | reals called FAKE | fakes caught "
          "| UNCERTAIN | scoring time | faces scored (run / scored part) |")
    print("|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        tp, sp = r["train_part"], r["score_part"]
        row = [r["scenario"], f"{tp['REAL']} / {tp['FAKE']}", f"{sp['REAL']} / {sp['FAKE']}"]
        train = r.get("train")
        row += [f"{train['seconds'] / 60:.1f} min" if train else "-", f"{train['peak_rss_mb']} MB" if train else "-"]
        model = r.get("model")
        if model is None:
            failure = r.get("failure", {})
            row += [f"training failed: `{failure.get('message', '?')}`", "", "", "", "", "", "", "", ""]
            print("| " + " | ".join(row) + " |")
            continue
        branches = model.get("branches") or {}
        row += [f"{fmt(model['video_auc'])} ({model['test_videos']})"
                + ("" if model["promoted_at_default_floor"] else ", below the 0.80 floor"),
                " / ".join(fmt((branches.get(b) or {}).get("video_auc")) for b in ("efficientnet", "foundation")),
                fmt((model.get("detector") or {}).get("efficientnet_weight"), 2)]
        ev = r.get("evaluation")
        if ev is None:
            row += [f"not scored: {r.get('failure', {}).get('message', '?')}", "", "", "", "", ""]
        else:
            row += [f"**{with_ci(ev['auc'], ev['auc_ci95'])}**", f"{ev['reals_called_fake']} of {ev['reals']}",
                    f"{ev['fakes_caught']} of {ev['fakes']}", str(ev["uncertain"]),
                    f"{r['score']['seconds'] / 60:.1f} min",
                    f"{r['score']['faces_scored_in_run']} / {r['score']['scored_part']['faces']}"]
        print("| " + " | ".join(row) + " |")
    breakdowns = [r for r in results if r.get("evaluation")]
    if not breakdowns:
        return
    print("\nPer group (`auc_vs_all_real`: the group's fakes against every scored real; a data set with both "
          "labels also its own AUC) [95 % bootstrap CI]:\n")
    print("| scenario | column | group | videos scored (real/fake) | auc (within) | auc_vs_all_real | auc_vs_all_fake "
          "| reals called FAKE | fakes caught | UNCERTAIN |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in breakdowns:
        for column in ("dataset", "manipulation"):
            for value, m in r["evaluation"]["breakdown"].get(column, {}).items():
                (tn, fp), (fn, tp) = m["confusion"]
                print(f"| {r['scenario']} | {column} | {value} | {tn + fp}/{fn + tp} | "
                      f"{with_ci(m['auc'], m.get('auc_ci95'))} | "
                      f"{with_ci(m['auc_vs_all_real'], m.get('auc_vs_all_real_ci95'))} | "
                      f"{with_ci(m['auc_vs_all_fake'], m.get('auc_vs_all_fake_ci95'))} | "
                      f"{fp} of {tn + fp} | {tp} of {fn + tp} | {m['uncertain']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS + ("all",), default=["all"])
    parser.add_argument("--seed", type=int, default=0, help="the in-domain split and the bootstrap draws")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-realdata",
                        help="folder of each scenario's REALNESS_HOME, logs and results-<scenario>.json")
    parser.add_argument("--data", type=Path, default=DATA, help="the local copy of the clips (rebuild.py's --dest)")
    parser.add_argument("--floor", default="0",
                        help="REALNESS_TRAINING_MIN_VIDEO_AUC for training (default 0: every model is promoted and "
                             "scored; 'default' keeps the pipeline's 0.80, and a refused model is not scored)")
    parser.add_argument("--no-approve", dest="approve", action="store_false",
                        help="leave a model that training registers but does not promote (trained without labelled "
                             "fakes; with a numeric --floor also one below it) unscored; by default the benchmark "
                             "promotes it with realness approve, recording the gate's reason, so that it is "
                             "measured (with --floor default a model below the floor is never approved)")
    parser.add_argument("--table", action="store_true", help="only print the table of the results in --work")
    parser.add_argument("--refresh", action="store_true",
                        help="with --table: recompute each results file's summary (bootstrap, training lines) from "
                             "its stored evaluation.json and train.log, without running anything")
    args = parser.parse_args()
    if args.floor != "default":
        float(args.floor)
    work = args.work.resolve()
    scenarios = list(SCENARIOS) if "all" in args.scenario else list(dict.fromkeys(args.scenario))
    if not args.table:
        work.mkdir(parents=True, exist_ok=True)
        rows = read_manifest(args.data.resolve())
        args.data = args.data.resolve()
        for name in scenarios:
            started = time.monotonic()
            run_scenario(name, rows, args, work)
            print(f"[{name}] done in {(time.monotonic() - started) / 60:.1f} min -> {work / f'results-{name}.json'}",
                  flush=True)
    results = [json.loads((work / f"results-{n}.json").read_text()) for n in scenarios
               if (work / f"results-{n}.json").is_file()]
    if args.table and args.refresh:
        for result in results:
            refresh(result, work)
    print_table(results)


if __name__ == "__main__":
    main()
