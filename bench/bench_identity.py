"""Identity-aware verdicts on the real clips: embedding cost, clustering, and the AUC with and without references.

Runs the pipeline through the ``realness`` CLI (as ``bench/bench_realdata.py`` does, whose code it
imports) at its default settings except ``REALNESS_IDENTITY_ENABLED=true`` and the promotion floor
(``--floor``, default 0, so that the model is promoted and scores), on the 86 clips of
``bench/realdata/manifest.csv``. It measures:

1. **Embedding cost**: each ingest run report's ``stage_seconds['embed']`` (dlib's descriptor on the
   faces of ``REALNESS_IDENTITY_EMBEDDED_FRAMES`` frames per video) against the run's whole ingest
   time (its stage seconds summed, and the process's wall time), per face published and as a share.
   Target (issue 36): embedding <= 25 % of ingest time per face.
2. **Clustering**: the ``face_identities`` rows of every video (scoring assigns them), against the
   manifest's ``identity`` (for a fake, the target person; a face swap shows the swapped-in person,
   so its faces may rightly cluster elsewhere). Each identity's person is the majority person of
   its faces in REAL videos (of all its faces when it has none); purity is the share of faces whose
   identity's person is their manifest person, over REAL and over FAKE videos. A merge is an
   identity holding REAL-video faces of two or more people. Target: purity >= 0.95, no merge.
3. **Identity-relative AUC**: a model is trained on bench_realdata's ``in-domain`` training part
   (``--seed``; labelled, ``landing/train/`` with a ``metadata.json``). Every REAL clip of the scored
   part is cut in time with OpenCV (decoded and re-encoded, ``mp4v``): the first half goes to
   ``landing/reference/`` labelled REAL (that person's reference), the second half, unlabelled, to
   ``landing/score/`` with every other scored clip. One ingest, one ``realness score``. Per scored
   video (those under ``score/``): (a) the score without references, ``verdicts.aggregate`` over the
   stored ``face_scores.p_fake`` (``p_identity`` None), and (b) the stored verdict's ``p_fake``,
   which used ``p_identity`` where the face had a reference. Video AUC of both on the same videos,
   with 95 % bootstrap intervals of each and of (b) - (a) (videos resampled with replacement, 2000
   draws, seeded), over all scored videos, over the videos of the people given a reference half, and per
   data set (Celeb-DF and DFD need both labels among their scored videos).

    nice python -m bench.bench_identity                        # into out/bench-identity/
    python -m bench.bench_identity --table                     # the table of out/bench-identity/results.json
    python -m bench.bench_identity --analyse                   # redo clustering and AUCs from that run's database

Results: ``<work>/results.json`` and a markdown table on stdout; ``docs/identity-benchmark.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sqlite3
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from bench.bench_realdata import (BOOTSTRAP_DRAWS, DATA, ROOT, auc, brief, code_state, copy_videos,
                                  describe_part, failure_line, ingest_summary, interval, latest_model,
                                  read_manifest, run_cli, split_by_source)

REFERENCE_SUFFIX, SCORED_SUFFIX = "-ref1.mp4", "-half2.mp4"


# ---------------------------------------------------------------- preparing the clips

def cut_in_halves(source: Path, first: Path, second: Path) -> dict:
    """Decode ``source`` with OpenCV and re-encode its first and second halves in time (``mp4v``, same fps)."""
    import cv2

    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if len(frames) < 2:
        raise RuntimeError(f"{source}: {len(frames)} frame(s) decoded, cannot cut in two")
    height, width = frames[0].shape[:2]
    middle = len(frames) // 2
    for path, part in ((first, frames[:middle]), (second, frames[middle:])):
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for frame in part:
            writer.write(frame)
        writer.release()
    return {"frames": len(frames), "fps": round(fps, 3), "seconds_each": round(middle / fps, 2)}


def person(row: dict) -> str:
    return f"{row['dataset']}:{row['identity']}"


def prepare_scored(score_part: list[dict], data: Path, landing: Path) -> dict:
    """Each REAL clip's first half to ``landing/reference/`` (labelled REAL), its second half and every
    scored fake to ``landing/score/`` (unlabelled); returns the people with a reference and what was cut."""
    referenced = {person(r) for r in score_part if r["label"] == "REAL"}
    references: dict[str, dict] = {}
    cuts = {}
    for row in score_part:
        if row["label"] == "REAL":
            stem = Path(row["name"]).stem
            first, second = f"{stem}{REFERENCE_SUFFIX}", f"{stem}{SCORED_SUFFIX}"
            cuts[row["name"]] = cut_in_halves(data / row["local_path"], landing / "reference" / first,
                                              landing / "score" / second)
            references[first] = row
        else:
            copy_videos([row], data, landing / "score")
    (landing / "reference" / "metadata.json").write_text(json.dumps(
        {name: {"label": "REAL", "group": r["group"]} for name, r in references.items()}, indent=1))
    return {"people_with_reference": sorted(referenced), "cut": cuts, "reference_files": sorted(references)}


# ---------------------------------------------------------------- reading the results

def ingest_report(store: Path, measured: dict) -> dict:
    """The newest ingest run report's faces and stage seconds, the embedding's share of them."""
    reports = sorted((store / "reports" / "ingest").glob("*.json"), key=lambda p: p.stat().st_mtime)
    report = json.loads(reports[-1].read_text())
    stages = report["stage_seconds"]
    embed, total, faces = stages.get("embed", 0.0), sum(stages.values()), report["faces"]
    return {"report": str(reports[-1]), "videos": report["videos"], "faces": faces,
            "frames_sampled": report["frames_sampled"], "stage_seconds": stages,
            "stage_seconds_total": round(total, 2), "wall_seconds": measured["seconds"],
            "embed_ms_per_face": round(1000 * embed / faces, 2) if faces else None,
            "ingest_ms_per_face_stages": round(1000 * total / faces, 2) if faces else None,
            "ingest_ms_per_face_wall": round(1000 * measured["seconds"] / faces, 2) if faces else None,
            "embed_share_of_stages": round(embed / total, 4) if total else None,
            "embed_share_of_wall": round(embed / measured["seconds"], 4) if measured["seconds"] else None}


def file_name(source_uri: str) -> str:
    return source_uri.rsplit("/", 1)[-1]


def swapped_in(row: dict) -> str | None:
    """The person a face swap pastes in, from the data set's naming (FF++ ``TTT_SSS``, Celeb-DF ``idX_idY``)."""
    if row["label"] != "FAKE":
        return None
    name = Path(row["path"]).name
    if row["dataset"] == "faceforensics" and (m := re.match(r"(\d{3})_(\d{3})", name)):
        return f"faceforensics:{m.group(2)}"
    if row["dataset"] == "celebdf" and (m := re.match(r"(id\d+)_(id\d+)", name)):
        return f"celebdf:{m.group(2)}"
    return None


def clustering(db: Path, rows_by_file: dict[str, dict]) -> dict:
    """Purity, identities and merges of the ``identity_faces`` view against the manifest's people."""
    with sqlite3.connect(db) as conn:
        faces = conn.execute("SELECT f.identity_id, f.embedded, v.source_uri FROM identity_faces f "
                             "JOIN videos v ON v.video_id = f.video_id").fetchall()
        identities = conn.execute("SELECT COUNT(*) FROM identities").fetchone()[0]
    records = [(int(i), bool(e), rows_by_file[file_name(uri)]) for i, e, uri in faces
               if file_name(uri) in rows_by_file]
    real_people: dict[int, Counter] = defaultdict(Counter)
    all_people: dict[int, Counter] = defaultdict(Counter)
    for identity, _, row in records:
        all_people[identity][person(row)] += 1
        if row["label"] == "REAL":
            real_people[identity][person(row)] += 1
    majority = {i: (real_people[i] or all_people[i]).most_common(1)[0][0] for i in all_people}

    def purity(label: str, embedded_only: bool = False) -> dict:
        mine = [(i, row) for i, e, row in records if row["label"] == label and (e or not embedded_only)]
        hits = sum(majority[i] == person(row) for i, row in mine)
        return {"faces": len(mine), "pure": hits, "purity": round(hits / len(mine), 4) if mine else None}

    merges = {i: dict(c) for i, c in real_people.items() if len(c) >= 2}
    split_people = Counter()
    for i, c in real_people.items():
        for p in c:
            split_people[p] += 1
    swaps: dict[str, Counter] = defaultdict(Counter)
    for identity, _, row in records:
        if row["label"] == "FAKE":
            source = swapped_in(row)
            where = ("target" if majority[identity] == person(row) else
                     "swapped-in person" if source and majority[identity] == source else "elsewhere")
            swaps[row["manipulation"]][where] += 1
    return {"identities": identities, "identities_with_faces": len(all_people), "identity_person": majority,
            "people": len({person(row) for _, _, row in records}),
            "people_in_real_videos": len({person(row) for _, _, row in records if row["label"] == "REAL"}),
            "purity_real": purity("REAL"), "purity_fake": purity("FAKE"),
            "purity_real_embedded_faces": purity("REAL", True), "purity_fake_embedded_faces": purity("FAKE", True),
            "merged_identities": merges, "people_split_over_identities": {p: n for p, n in split_people.items()
                                                                          if n > 1},
            "fake_faces_by_manipulation": {m: dict(c) for m, c in sorted(swaps.items())}}


def video_scores(home: Path, scored: dict[str, dict], prefix_uri: str, identity_person: dict[int, str]) -> list[dict]:
    """Per scored video: its label, (a) the score without references and (b) the stored verdict's p_fake, and
    how many of its faces were judged against an identity whose person is neither its person nor (a swap) the
    swapped-in one."""
    from realness_tasks.config import RealnessConfig
    from realness_tasks.verdicts import FaceScore, aggregate

    cfg = RealnessConfig.from_env({})
    with sqlite3.connect(home / "realness.db") as conn:
        conn.row_factory = sqlite3.Row
        verdicts = conn.execute("SELECT v.video_id, v.source_uri, v.verdict, v.p_fake, v.model_version, "
                                "m.threshold FROM latest_verdicts v JOIN model_versions m ON m.version = "
                                "v.model_version WHERE v.source_uri LIKE ?", (prefix_uri + "%",)).fetchall()
        out = []
        for v in verdicts:
            faces = conn.execute("SELECT frame_index, face_index, p_fake, p_identity, reference_faces, identity_id "
                                 "FROM face_scores WHERE video_id = ? AND model_version = ?",
                                 (v["video_id"], v["model_version"])).fetchall()
            row = scored[file_name(v["source_uri"])]
            plain = aggregate(v["video_id"], v["source_uri"],
                              [FaceScore(v["video_id"], f["frame_index"], f["face_index"], f["p_fake"], "REAL", 0.0)
                               for f in faces], v["threshold"], cfg.scoring) if faces else None
            out.append({"name": file_name(v["source_uri"]), "label": row["label"], "dataset": row["dataset"],
                        "manipulation": row["manipulation"], "person": person(row), "verdict": v["verdict"],
                        "faces": len(faces), "faces_with_p_identity": sum(f["p_identity"] is not None for f in faces),
                        "reference_faces": max((f["reference_faces"] or 0 for f in faces), default=0),
                        "faces_judged_against_another_person": sum(
                            f["p_identity"] is not None
                            and identity_person.get(f["identity_id"]) not in (person(row), swapped_in(row))
                            for f in faces),
                        "p_without_references": plain.p_fake if plain else None, "p_with_references": v["p_fake"]})
    return out


def embedded_faces(home: Path, folders: tuple[str, ...]) -> int:
    """Faces with their own embedding (``face_identities.embedded``) in videos under the landing ``folders``."""
    landing = (home / "store" / "landing").resolve().as_uri() + "/"
    with sqlite3.connect(home / "realness.db") as conn:
        return sum(conn.execute("SELECT COUNT(*) FROM face_identities f JOIN videos v ON v.video_id = f.video_id "
                                "WHERE f.embedded = 1 AND v.source_uri LIKE ?", (landing + folder + "%",)).fetchone()[0]
                   for folder in folders)


def reference_log_odds(home: Path) -> dict:
    """Mean raw log-odds of the faces that can serve as references (videos labelled REAL), by landing folder:
    the training part's reals, which the model was fitted on, weigh in the population mean beside the held-out
    reference halves."""
    landing = (home / "store" / "landing").resolve().as_uri() + "/"
    out = {}
    with sqlite3.connect(home / "realness.db") as conn:
        for folder in ("train/", "reference/"):
            p = np.array([r[0] for r in conn.execute(
                "SELECT COALESCE(fs.p_raw, fs.p_fake) FROM face_scores fs JOIN videos v ON v.video_id = fs.video_id "
                "WHERE v.label = 'REAL' AND fs.identity_id IS NOT NULL AND v.source_uri LIKE ?",
                (landing + folder + "%",))], np.float64)
            p = np.clip(p, 1e-6, 1 - 1e-6)
            out[folder.rstrip("/")] = {"faces": len(p), "mean_log_odds": round(float(np.mean(np.log(p / (1 - p)))), 3)
                                       if len(p) else None}
    return out


def compare(videos: list[dict], seed: int) -> dict:
    """Video AUC without and with references on the same videos, bootstrap intervals of each and of the gap."""
    scored = [v for v in videos if v["p_with_references"] is not None and v["p_without_references"] is not None]
    y = np.array([v["label"] == "FAKE" for v in scored], np.int32)
    result = {"videos": len(scored), "real": int((y == 0).sum()), "fake": int((y == 1).sum()),
              "videos_with_p_identity": sum(v["faces_with_p_identity"] > 0 for v in scored),
              "faces_with_p_identity": sum(v["faces_with_p_identity"] for v in scored),
              "faces_judged_against_another_person": sum(v["faces_judged_against_another_person"] for v in scored),
              "faces": sum(v["faces"] for v in scored)}
    if not (y == 0).any() or not (y == 1).any():
        return {**result, "auc_without": None, "auc_with": None, "note": "needs both labels"}
    a = np.array([v["p_without_references"] for v in scored], np.float64)
    b = np.array([v["p_with_references"] for v in scored], np.float64)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = defaultdict(list)
    for _ in range(BOOTSTRAP_DRAWS):
        i = rng.integers(0, len(scored), len(scored))
        if y[i].min() == y[i].max():
            continue
        draws["without"].append(auc(y[i], a[i]))
        draws["with"].append(auc(y[i], b[i]))
        draws["gap"].append(draws["with"][-1] - draws["without"][-1])
    without, with_ = auc(y, a), auc(y, b)
    return {**result, "auc_without": round(without, 4), "auc_with": round(with_, 4),
            "gap": round(with_ - without, 4), "auc_without_ci95": interval(draws["without"]),
            "auc_with_ci95": interval(draws["with"]), "gap_ci95": interval(draws["gap"])}


# ---------------------------------------------------------------- the run

def run(args: argparse.Namespace, work: Path) -> dict:
    rows = read_manifest(args.data)
    train_part, score_part = split_by_source(rows, args.seed)
    home = work / "home"
    store = home / "store"
    landing = store / "landing"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALNESS_")}
    env.update({"REALNESS_HOME": str(home), "REALNESS_STORE_URI": store.resolve().as_uri(),
                "REALNESS_DATABASE_URL": f"sqlite:///{(home / 'realness.db').resolve()}",
                "REALNESS_IDENTITY_ENABLED": "true"})
    if args.floor != "default":
        env["REALNESS_TRAINING_MIN_VIDEO_AUC"] = str(float(args.floor))
    result: dict = {"started_at": datetime.now(UTC).isoformat(timespec="seconds"), "seed": args.seed,
                    "floor": args.floor, "code": code_state(),
                    "machine": {"cpus": os.cpu_count(), "load_1_5_15_at_start": [round(x, 2) for x in os.getloadavg()]},
                    "train_part": describe_part(train_part), "score_part": describe_part(score_part)}

    def step(name: str, cli: list[str]) -> dict:
        measured = run_cli(cli, env, work / f"{name}.log")
        print(f"{name}: {brief(measured)}", flush=True)
        if measured["exit_code"]:
            result["failure"] = {"step": name, "message": failure_line(work / f"{name}.log", cli[0])}
            raise SystemExit(f"{name} failed: {result['failure']['message']}")
        return measured

    try:
        copy_videos(train_part, args.data, landing / "train")
        (landing / "train" / "metadata.json").write_text(json.dumps(
            {r["name"]: {"label": r["label"], "group": r["group"]} for r in train_part}, indent=1))
        measured = step("ingest-train", ["ingest"])
        result["ingest_train"] = {**ingest_summary(work / "ingest-train.log"), **ingest_report(store, measured)}

        step("train", ["train"])
        model = latest_model(home)
        result["model"] = {k: model.get(k) for k in ("version", "video_auc", "test_videos", "threshold", "promoted",
                                                      "reason")}
        if not model["promoted"]:
            result["failure"] = {"step": "promotion", "message": model["reason"]}
            raise SystemExit(f"model {model['version']} not promoted: {model['reason']}")

        result["prepared"] = prepare_scored(score_part, args.data, landing)
        measured = step("ingest-score", ["ingest"])
        result["ingest_score"] = {**ingest_summary(work / "ingest-score.log"), **ingest_report(store, measured)}
        result["score"] = step("score", ["score"])
    finally:
        (work / "results.json").write_text(json.dumps(result, indent=1, default=str))
    return analyse(result, args, work)


def analyse(result: dict, args: argparse.Namespace, work: Path) -> dict:
    """Clustering and the AUCs from the run's database (``--analyse`` redoes only this on a finished run)."""
    train_part, score_part = split_by_source(read_manifest(args.data), result["seed"])
    home = work / "home"
    scored = {r["name"]: r for r in score_part if r["label"] == "FAKE"}
    scored.update({f"{Path(r['name']).stem}{SCORED_SUFFIX}": r for r in score_part if r["label"] == "REAL"})
    rows_by_file = {r["name"]: r for r in train_part}
    rows_by_file.update(scored)
    rows_by_file.update({f"{Path(r['name']).stem}{REFERENCE_SUFFIX}": r for r in score_part if r["label"] == "REAL"})
    result["clustering"] = clustering(home / "realness.db", rows_by_file)
    videos = video_scores(home, scored, (home / "store" / "landing" / "score").resolve().as_uri() + "/",
                          result["clustering"]["identity_person"])
    referenced = set(result["prepared"]["people_with_reference"])
    result["videos"] = videos
    result["auc"] = {
        "all scored videos": compare(videos, result["seed"]),
        "videos of people given a reference half": compare([v for v in videos if v["person"] in referenced],
                                                           result["seed"]),
        "celebdf": compare([v for v in videos if v["dataset"] == "celebdf"], result["seed"]),
        "dfd": compare([v for v in videos if v["dataset"] == "dfd"], result["seed"]),
        "faceforensics": compare([v for v in videos if v["dataset"] == "faceforensics"], result["seed"]),
    }
    result["people_with_p_identity"] = sorted({v["person"] for v in videos if v["faces_with_p_identity"]})
    result["unreferenced_videos_whose_scores_differ"] = sorted(
        v["name"] for v in videos if not v["faces_with_p_identity"] and v["p_without_references"] is not None
        and abs(v["p_without_references"] - v["p_with_references"]) > 1e-9)
    result["reference_log_odds"] = reference_log_odds(home)
    for key, folders in (("ingest_train", ("train/",)), ("ingest_score", ("reference/", "score/"))):
        if result.get(key):
            embedded = embedded_faces(home, folders)
            result[key]["embedded_faces"] = embedded
            result[key]["embed_ms_per_embedded_face"] = (
                round(1000 * result[key]["stage_seconds"].get("embed", 0.0) / embedded, 2) if embedded else None)
    result.setdefault("finished_at", datetime.now(UTC).isoformat(timespec="seconds"))
    result["machine"].setdefault("load_1_5_15_at_end", [round(x, 2) for x in os.getloadavg()])
    (work / "results.json").write_text(json.dumps(result, indent=1, default=str))
    return result


# ---------------------------------------------------------------- the table

def ci(value, interval_: dict | None) -> str:
    if value is None:
        return "n/a"
    if not interval_ or interval_.get("low") is None:
        return f"{value:.3f}"
    return f"{value:.3f} [{interval_['low']:.2f}, {interval_['high']:.2f}]"


def pct(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f} %"


def print_table(result: dict) -> None:
    print("\n| ingest run | videos | faces | embed s | stage s (all) | process s | embed ms/face | ingest ms/face "
          "(stages / process) | embed share (stages / process) | embed / the rest of the stages | embedded faces |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for key in ("ingest_train", "ingest_score"):
        r = result.get(key)
        if r:
            embed = r["stage_seconds"].get("embed", 0.0)
            print(f"| {key.removeprefix('ingest_')} | {r['videos']} | {r['faces']} | {r['stage_seconds'].get('embed')} "
                  f"| {r['stage_seconds_total']} | {r['wall_seconds']} | {r['embed_ms_per_face']} | "
                  f"{r['ingest_ms_per_face_stages']} / {r['ingest_ms_per_face_wall']} | "
                  f"{pct(r['embed_share_of_stages'])} / {pct(r['embed_share_of_wall'])} | "
                  f"{pct(embed / (r['stage_seconds_total'] - embed))} | "
                  f"{r.get('embedded_faces')} ({r.get('embed_ms_per_embedded_face')} ms each) |")
    c = result.get("clustering")
    if c:
        print("\n| identities (with faces) | people | purity, REAL-video faces | purity, FAKE-video faces "
              "| purity, embedded faces (REAL / FAKE) | identities merging 2+ people | people split over 2+ "
              "identities |")
        print("|---:|---:|---:|---:|---|---:|---:|")
        pr, pf = c["purity_real"], c["purity_fake"]
        er, ef = c["purity_real_embedded_faces"], c["purity_fake_embedded_faces"]
        print(f"| {c['identities']} ({c['identities_with_faces']}) | {c['people']} | {pct(pr['purity'])} "
              f"({pr['pure']}/{pr['faces']}) | {pct(pf['purity'])} ({pf['pure']}/{pf['faces']}) | "
              f"{pct(er['purity'])} / {pct(ef['purity'])} | {len(c['merged_identities'])} | "
              f"{len(c['people_split_over_identities'])} |")
        for identity, people in c["merged_identities"].items():
            print(f"\nIdentity {identity} holds REAL-video faces of {len(people)} people: "
                  + ", ".join(f"{p} ({n})" for p, n in sorted(people.items(), key=lambda item: -item[1])))
        print("\nFake faces by manipulation: identity whose person is the target / the swapped-in person / "
              "someone else:\n")
        for m, counts in c["fake_faces_by_manipulation"].items():
            print(f"- {m}: {counts.get('target', 0)} / {counts.get('swapped-in person', 0)} / "
                  f"{counts.get('elsewhere', 0)}")
    if result.get("auc"):
        print("\n| videos | scored (real / fake) | faces with p_identity (videos) | of them judged against another "
          "person's identity | AUC without references "
              "[95 % CI] | AUC with references [95 % CI] | difference [95 % CI] |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r in result["auc"].items():
            print(f"| {name} | {r['real']} / {r['fake']} | {r['faces_with_p_identity']} of {r['faces']} "
                  f"({r['videos_with_p_identity']}) | {r['faces_judged_against_another_person']} | "
                  f"{ci(r['auc_without'], r.get('auc_without_ci95'))} | "
                  f"{ci(r['auc_with'], r.get('auc_with_ci95'))} | {ci(r.get('gap'), r.get('gap_ci95'))} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="bench_realdata's in-domain split and the bootstrap")
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-identity",
                        help="REALNESS_HOME (<work>/home), the logs and results.json")
    parser.add_argument("--data", type=Path, default=DATA, help="the local copy of the clips (rebuild.py's --dest)")
    parser.add_argument("--floor", default="0", help="REALNESS_TRAINING_MIN_VIDEO_AUC ('default': the pipeline's)")
    parser.add_argument("--table", action="store_true", help="only print the table of <work>/results.json")
    parser.add_argument("--analyse", action="store_true",
                        help="redo only the clustering and AUCs from the database of the run in <work>")
    args = parser.parse_args()
    work = args.work.resolve()
    args.data = args.data.resolve()
    if args.analyse:
        analyse(json.loads((work / "results.json").read_text()), args, work)
    elif not args.table:
        work.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        run(args, work)
        print(f"done in {(time.monotonic() - started) / 60:.1f} min -> {work / 'results.json'}", flush=True)
    print_table(json.loads((work / "results.json").read_text()))


if __name__ == "__main__":
    main()
