"""A nightly scan through Airflow itself: from videos landing to published verdicts, per group of videos.

Airflow runs as deployed for one machine (tests/airflow_stack.py): scheduler, dag-processor and
api-server on a fresh PostgreSQL metadata database, the LocalExecutor with parallelism 2, the
verdict tables on PostgreSQL. For each group of generated videos (real faces from the photographs
in ``realness_tasks/sample_faces``, each clip on its own background so none is a duplicate), the
group lands, ``realness_ingest`` is triggered, and the asset it updates starts ``realness_score``,
which scores with a registered 224 px champion (the default classifier, pretrained Lite0 with an
untrained head, saved as ``model.keras`` for the reports and exported to the TFLite engine: its
verdicts mean nothing, its cost is the real one). Wall time runs from
the trigger to the scoring run's end.

Reported per group: video-seconds scanned per wall-second, mapped ``extract_faces`` tasks, fixed
seconds per task (task duration less the per-video stage seconds it reported: loading MTCNN on
LiteRT, or Great Expectations, plus Airflow's own start and end of the task process; for
``validate_shards``, one task per run, the validation runs' and publishing seconds are the
per-video part), the per-stage split from the ingest
report plus the scoring task, and the same group through the CLI (``realness ingest`` then
``realness score`` in one process each) for comparison. Sampling is 32 frames per 10 s.

    python -m bench.bench_scan [--clips 200 --clip-seconds 10 --long 20 --long-seconds 60] [--setting NAME=VALUE]

Needs PostgreSQL (``REALNESS_TEST_POSTGRES_URL``, default postgres@127.0.0.1:5432). Generated
videos are kept in ``--workdir`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.airflow_stack import airflow_stack
from bench.common import ROOT, fresh_database

FRAMES_PER_10_S = 32
INGEST, SCORE = "realness_ingest", "realness_score"
RUN_TIMEOUT_S = 3 * 3600
EXTRACT_STAGES = ("load_detector", "download", "decode", "detect", "crop", "write")
VALIDATE_STAGES = ("load_checks", "validate", "publish")


@dataclass(frozen=True)
class Group:
    name: str
    count: int
    seconds: float
    size: tuple[int, int]


def generate(group: Group, directory: Path) -> list[Path]:
    """The group's videos (30 fps, one face drifting over a textured background), made once and kept."""
    from realness_tasks import samples

    photos = samples.sample_photos()
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(group.count):
        path = directory / f"{group.name}-{i:03d}.mp4"
        if not path.exists():
            partial = path.with_suffix(".partial.mp4")
            samples.face_video(partial, photos[i % len(photos)].image, seconds=group.seconds, fps=30,
                               size=group.size, height_fraction=0.5, seed=1000 + i)
            partial.rename(path)
        paths.append(path)
    return paths


def champion_files(workdir: Path) -> dict[str, Path]:
    """A 224 px classifier as training leaves it (``model.keras`` for reports, ``model.tflite`` for
    scoring), built once and kept."""
    files = {"model.keras": workdir / "champion-224.keras", "model.tflite": workdir / "champion-224.tflite"}
    if not all(path.exists() for path in files.values()):
        import tempfile

        from realness_tasks.inference import export_tflite
        from realness_tasks.model import build_classifier
        from realness_tasks.settings import TrainingSettings

        with tempfile.TemporaryDirectory() as cache:
            classifier, _ = build_classifier(TrainingSettings(image_size=224, seed=1), Path(cache))
        classifier.save(files["model.keras"])
        export_tflite(classifier, files["model.tflite"])
    return files


def register_champion(settings: dict[str, str], files: dict[str, Path]) -> None:
    """What training leaves for scoring and reports: the version's files and the champion pointer."""
    from datetime import datetime, timezone

    from realness_tasks import registry
    from realness_tasks.config import RealnessConfig
    from realness_tasks.storage import open_store

    cfg = RealnessConfig.from_env(settings)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    for name, path in files.items():
        store.upload(path, registry.artefact_key(cfg, "bench", name))
    record = registry.ModelRecord("bench", now, "bench", store.uri_for(registry.version_prefix(cfg, "bench")), 224,
                                  0.5, {}, 0, now, "bench champion (untrained)", promoted_at=now,
                                  crop_margin=cfg.crop.margin)
    store.put_bytes(registry.pointer_key(cfg), json.dumps(record.to_json()).encode())


def land(settings: dict[str, str], paths: list[Path]) -> None:
    from realness_tasks.config import RealnessConfig
    from realness_tasks.storage import open_store

    cfg = RealnessConfig.from_env(settings)
    store = open_store(cfg.resolved_store_uri, cfg.s3)
    for path in paths:
        store.upload(path, f"{cfg.landing_prefix}{path.name}")


def ingest_report(settings: dict[str, str], run_id: str) -> dict:
    from realness_tasks.config import RealnessConfig
    from realness_tasks.run_summary import report_key
    from realness_tasks.storage import open_store

    cfg = RealnessConfig.from_env(settings)
    return json.loads(open_store(cfg.resolved_store_uri, cfg.s3).get_bytes(report_key(cfg, run_id)))


def seconds(ti: dict) -> float:
    return (ti["end_date"] - ti["start_date"]).total_seconds()


def last_progress_line(stack, run_id: str) -> str:
    """The last progress line an ``extract_faces`` task wrote to its Airflow task log (shows it is there)."""
    task_logs = stack.home / "logs" / f"dag_id={INGEST}" / f"run_id={run_id}" / "task_id=extract_faces"
    logs = sorted(task_logs.rglob("*.log"))
    lines = [line for path in logs for line in path.read_text(errors="replace").splitlines()
             if re.search(r"video \d+ of \d+ ", line)]
    if not lines:
        raise RuntimeError(f"no progress line in the extract_faces task logs {logs}")
    try:  # Airflow 3 writes task logs as JSON lines
        return json.loads(lines[-1])["event"]
    except (ValueError, KeyError):
        return lines[-1]


def fixed_per_task(tasks: list[dict], stages: dict[str, float], names: tuple[str, ...]) -> tuple[float, float]:
    """(seconds per task not spent on the videos, of which loading): task time less the per-video stages."""
    work = sum(stages.get(name, 0) for name in names[1:])
    return (sum(map(seconds, tasks)) - work) / len(tasks), stages.get(names[0], 0) / len(tasks)


def scan_through_airflow(stack, settings: dict[str, str], group: Group, paths: list[Path]) -> dict:
    land(settings, paths)
    run_id = f"manual__bench_{group.name}_{uuid.uuid4().hex[:6]}"
    scored_before = {r["run_id"] for r in stack.query("SELECT run_id FROM dag_run WHERE dag_id = :d", d=SCORE)}
    [dag] = stack.query("SELECT is_paused, next_dagrun FROM dag WHERE dag_id = :d", d=INGEST)
    started = time.monotonic()
    if dag["is_paused"]:
        # Unpausing makes the scheduler start the latest interval's run unless a run holds its logical
        # date already: the first trigger takes that date (as tests/test_scheduler.py does).
        stack.airflow("dags", "trigger", INGEST, "--run-id", run_id, "--logical-date", dag["next_dagrun"].isoformat())
        stack.airflow("dags", "unpause", INGEST)
    else:
        stack.airflow("dags", "trigger", INGEST, "--run-id", run_id)
    if stack.wait_for_run(INGEST, run_id, RUN_TIMEOUT_S) != "success":
        raise RuntimeError(stack.report(INGEST, run_id))

    def scoring_run() -> dict | None:
        runs = stack.query("SELECT run_id, state FROM dag_run WHERE dag_id = :d AND run_type = 'asset_triggered'",
                           d=SCORE)
        return next((r for r in runs if r["run_id"] not in scored_before and r["state"] in ("success", "failed")),
                    None)

    score_run = stack.wait_for("the asset-triggered scoring run", scoring_run, RUN_TIMEOUT_S)
    wall = time.monotonic() - started
    if score_run["state"] != "success":
        raise RuntimeError(stack.report(SCORE, score_run["run_id"]))
    report = ingest_report(settings, run_id)
    stages = report["stage_seconds"]
    tasks = stack.task_instances(INGEST, run_id)
    extracts = [ti for ti in tasks if ti["task_id"] == "extract_faces"]
    validates = [ti for ti in tasks if ti["task_id"] == "validate_shards"]
    [score_task] = stack.task_instances(SCORE, score_run["run_id"], "score_and_publish")
    return {
        "progress_line": last_progress_line(stack, run_id),
        "wall_s": wall, "video_s": group.count * group.seconds, "tasks": len(extracts),
        "statuses": report["statuses"], "faces": report["faces"],
        "extract_fixed_s": fixed_per_task(extracts, stages, EXTRACT_STAGES),
        "validate_fixed_s": fixed_per_task(validates, stages, VALIDATE_STAGES),
        "stages": {**stages, "score + publish (task)": seconds(score_task)},
    }


def scan_through_cli(group: Group, paths: list[Path], champion: dict[str, Path], env: dict[str, str],
                     home: Path) -> float:
    """The same videos through ``realness ingest`` and ``realness score`` (fresh home, embedded database)."""
    settings = {**env, "REALNESS_HOME": str(home)}
    settings.pop("REALNESS_DATABASE_URL", None)
    land(settings, paths)
    register_champion(settings, champion)
    started = time.monotonic()
    for command in ("ingest", "score"):
        subprocess.run([sys.executable, "-m", "realness_tasks.cli", command], env={**os.environ, **settings},
                       cwd=ROOT, check=True, capture_output=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--clip-size", default="1280x720")
    parser.add_argument("--long", type=int, default=20)
    parser.add_argument("--long-seconds", type=float, default=60.0)
    parser.add_argument("--long-size", default="1920x1080")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "realness-bench-scan")
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI comparison")
    parser.add_argument("--setting", action="append", default=[], metavar="REALNESS_NAME=VALUE",
                        help="a setting for the Airflow tasks and the CLI alike (repeatable), e.g. "
                             "REALNESS_DETECTION_THREADS=1")
    args = parser.parse_args()

    size = {name: tuple(int(v) for v in getattr(args, f"{name}_size").split("x")) for name in ("clip", "long")}
    groups = [g for g in (Group(f"clips-{size['clip'][1]}p", args.clips, args.clip_seconds, size["clip"]),
                          Group(f"long-{size['long'][1]}p", args.long, args.long_seconds, size["long"])) if g.count]
    archive = {g.name: generate(g, args.workdir / "videos") for g in groups}
    champion = champion_files(args.workdir)
    postgres = os.environ.get("REALNESS_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    task_settings = {"REALNESS_SAMPLING_EVERY_SECONDS": str(10 / FRAMES_PER_10_S),
                "REALNESS_SAMPLING_MAX_FRAMES": str(int(max(g.seconds for g in groups) * FRAMES_PER_10_S / 10) + 1),
                **dict(item.split("=", 1) for item in args.setting)}
    results: dict[str, dict] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="realness-bench-scan-") as tmp, fresh_database(postgres) as verdict_db:
        settings = {"REALNESS_HOME": str(Path(tmp, "home")), "REALNESS_DATABASE_URL": verdict_db, **task_settings}
        register_champion(settings, champion)
        with airflow_stack(Path(tmp), postgres, env=settings) as stack:
            stack.wait_for_dags(INGEST, SCORE)
            stack.airflow("dags", "unpause", SCORE)
            for group in groups:
                results[group.name] = scan_through_airflow(stack, settings, group, archive[group.name])
                print(f"{group.name}: {json.dumps(results[group.name], default=str)}", file=sys.stderr, flush=True)
        if not args.no_cli:
            # one MTCNN conversion for all CLI runs, as one deployment converts once
            cli_settings = {"REALNESS_DETECTION_NETWORKS_DIR": str(Path(tmp, "cli-networks")), **task_settings}
            for group in groups:
                results[group.name]["cli_wall_s"] = scan_through_cli(
                    group, archive[group.name], champion, cli_settings, Path(tmp, f"cli-{group.name}"))
    load_after = os.getloadavg()

    print(f"# nightly scan through Airflow (LocalExecutor, parallelism 2, PostgreSQL), {FRAMES_PER_10_S} frames per "
          f"10 s, {os.cpu_count()} cores; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
          f"settings: {' '.join(args.setting) or 'defaults'}")
    def fixed(pair: tuple[float, float]) -> str:
        return f"{pair[0]:.1f} ({pair[1]:.1f} loading)"

    print("| group | videos | video s | mapped tasks | wall s (trigger to verdicts) | video s per wall s | "
          "extract_faces fixed s/task | validate_shards fixed s (one task per run) | CLI wall s | "
          "CLI video s per wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for group in groups:
        r = results[group.name]
        cli = r.get("cli_wall_s")
        cli_columns = f"{cli:.0f} | {r['video_s'] / cli:.2f}" if cli else "- | -"
        print(f"| {group.name} | {group.count} | {r['video_s']:.0f} | {r['tasks']} | {r['wall_s']:.0f} | "
              f"{r['video_s'] / r['wall_s']:.2f} | {fixed(r['extract_fixed_s'])} | {fixed(r['validate_fixed_s'])} | "
              f"{cli_columns} |")
    stage_names = sorted({s for r in results.values() for s in r["stages"]},
                         key=lambda s: [*EXTRACT_STAGES, *VALIDATE_STAGES, s].index(s))
    print("\n| stage (seconds, summed over tasks) | " + " | ".join(g.name for g in groups) + " |")
    print("|---|" + "---|" * len(groups))
    for stage in stage_names:
        print(f"| {stage} | " + " | ".join(f"{results[g.name]['stages'].get(stage, 0):.1f}" for g in groups) + " |")
    for group in groups:
        r = results[group.name]
        print(f"\n{group.name}: statuses {r['statuses']}, {r['faces']} faces; last progress line in a task log:\n"
              f"    {r['progress_line']}")


if __name__ == "__main__":
    main()
