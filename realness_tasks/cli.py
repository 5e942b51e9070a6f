"""``realness``: run the pipeline's steps without a scheduler, inspect results, or run the demo.

``ingest``, ``train`` and ``score`` call the same functions the DAGs call, for one-off runs and
backfills; ``report`` writes the HTML report of one scored video; ``evaluate`` measures the latest verdicts
against a labels file; ``status`` prints what the ledger, registry and verdict tables hold; ``demo`` builds a
local stack (Airflow on SQLite, a local object store, the embedded verdict database), drops sample
videos made from real photographs into the landing prefix and runs the three DAGs through Airflow,
each in a process of ``scripts/run_dag.py``, so that this package itself never imports Airflow.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from realness_tasks.error_advice import explain, save_traceback

if TYPE_CHECKING:
    from realness_tasks.config import RealnessConfig
    from realness_tasks.db import Database

REPO = Path(__file__).resolve().parent.parent


def _progress(message: str) -> None:
    print(f"  {message}", flush=True)


def _run_id(prefix: str) -> str:
    return f"{prefix}__{datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%S')}"


def _today() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d")


def _config() -> RealnessConfig:
    """The configuration from the environment, refused as the Airflow plugin refuses it.

    A local SQLite database beside an ``s3://`` store, or a local store folder that does not exist
    (a typo), would otherwise run and report success while writing where nobody looks.
    """
    from realness_tasks.config import RealnessConfig

    cfg = RealnessConfig.from_env()
    cfg.check_database_placement()
    cfg.check_store_root()
    return cfg


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest the landing prefix once, as the realness_ingest DAG does, and list the videos that failed."""
    from realness_tasks.ingest import run_ingest

    summary = run_ingest(_config(), run_id=args.run_id or _run_id("cli"), run_date=args.date or _today(),
                         reprocess=args.reprocess, progress=_progress)
    print(f"ingest: {summary['videos']} object(s): {summary['statuses']}; {summary['faces']} faces published")
    for problem in summary["problems"]:
        print(f"  {problem['status']:<12} {problem['source_uri']}  ({problem['reason']})")
    for skipped in summary.get("skipped", []):
        print(f"  {'SKIPPED':<12} {skipped['source_uri']}  ({skipped['reason']})")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train, register and possibly promote a model, as the realness_train DAG does, and print its test metrics."""
    from realness_tasks.train import run_training

    outcome = run_training(_config(), args.run_id or _run_id("cli"), progress=_progress)
    print(f"model {outcome.version}: {'PROMOTED' if outcome.promoted else 'not promoted'} ({outcome.reason})")
    print(f"  backbone: {outcome.backbone}")
    for level, metrics in (("faces", outcome.metrics), ("videos", outcome.metrics["video"])):
        print(f"  test {level}: " + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float)))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    """Promote a registered model on an operator's word; 2 for an unknown version or a missing reason."""
    from realness_tasks import registry
    from realness_tasks.resources import run_resources

    cfg = _config()
    try:
        with run_resources(cfg) as run:
            model = registry.approve(cfg, run.store, run.db, args.version, args.reason)
    except (registry.UnknownVersion, ValueError) as exc:
        print(f"realness approve: {exc}", file=sys.stderr)
        return 2
    print(f"model {model.version} is the champion: {model.metrics.get('video', {}).get('auc', 'n/a')} held-out "
          f"video AUC; realness score (or the realness_score DAG, through the champion asset) rescoring follows")
    return 0


def cmd_identities(args: argparse.Namespace) -> int:
    """List, name, merge, split or forget identities (REALNESS_IDENTITY_ENABLED); see docs/identities.md."""
    from realness_tasks import identities, identity_store, registry
    from realness_tasks.config import RealnessConfig
    from realness_tasks.db import Database
    from realness_tasks.storage import open_store

    cfg = RealnessConfig.from_env()
    db = Database(cfg.resolved_database_url)
    try:
        if args.action == "list":
            rows = identities.list_identities(db)
            print(f"{len(rows)} identities")
            for row in rows:
                print(f"  {row['identity_id']:>6}  {row['name'] or '-':<24} {row['videos']:>5} video(s) "
                      f"{row['embedded_faces']:>6} embedded face(s)  last seen {row['last_seen_at']}")
        elif args.action == "name":
            identities.name(db, args.identity, args.name)
            print(f"identity {args.identity} named {args.name!r}")
        elif args.action == "merge":
            identities.merge(db, args.identity, args.other, registry.utc_now())
            print(f"identity {args.other} merged into {args.identity}")
        elif args.action == "split":
            store = open_store(cfg.resolved_store_uri, cfg.s3)
            keys = sorted(identity_store.video_shards(store, [cfg.faces_prefix], [args.video]).get(args.video, []))
            if not keys:
                raise identities.UnknownIdentity(f"no shard of video {args.video} under {cfg.faces_prefix}")
            new_id = identities.split(db, args.identity, args.video, identity_store.shard_embeddings(store, keys[-1]),
                                      registry.utc_now())
            print(f"video {args.video} of identity {args.identity} is now identity {new_id}")
        elif args.action == "forget":
            if not args.yes:
                print("realness identities forget: deletes this person's embeddings and identity for good; "
                      "repeat with --yes", file=sys.stderr)
                return 2
            store = open_store(cfg.resolved_store_uri, cfg.s3)
            done = identity_store.forget(db, store, [cfg.faces_prefix, cfg.staging_prefix, cfg.quarantine_prefix],
                                     args.identity)
            print(f"identity {done.identity_id} forgotten: {done.faces} face assignment(s) deleted, embeddings "
                  f"removed from {len(done.shards_rewritten)} shard(s)")
    except (identities.UnknownIdentity, ValueError) as exc:
        print(f"realness identities {args.action}: {exc}", file=sys.stderr)
        return 2
    finally:
        db.dispose()
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score new face shards with the champion, as the realness_score DAG does, then write the run's reports."""
    from realness_tasks.reports import write_run_reports
    from realness_tasks.scoring import run_scoring

    cfg = _config()
    outcome = run_scoring(cfg, args.run_id or _run_id("cli"), args.date or _today(), progress=_progress)
    print(f"score: {outcome}")
    written = write_run_reports(cfg, outcome.run_id, progress=_progress)
    print(f"reports: {len(written)} written ({', '.join(sorted(cfg.report.verdict_set)) or 'none configured'})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the HTML report of one scored video and print where it is."""
    from realness_tasks.reports import write_video_report

    print(write_video_report(_config(), args.video, args.model_version))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare the latest verdicts with a labels file, print the metrics and store the evaluation report."""
    from realness_tasks.evaluation import LabelsError, evaluate, read_labels
    from realness_tasks.evaluation_report import AUC_LEGEND, METRIC_COLUMNS, metrics_row, write_evaluation
    from realness_tasks.localisation import summary as localisation_summary

    try:
        labels = read_labels(Path(args.labels))
    except LabelsError as exc:
        print(f"realness evaluate: {exc}", file=sys.stderr)
        return 2
    cfg = _config()
    result = evaluate(cfg, labels, args.prefix, labels_file=args.labels, evaluated_at=datetime.now(timezone.utc))
    overall = result.overall
    versions = ", ".join(f"{version} ({n})" for version, n in result.model_versions.items()) or "none"
    print(f"{overall.labelled} labelled video(s) compared with the latest verdicts under "
          f"{result.source_prefix or 'any source'} (model versions: {versions})")
    print(f"  scored {overall.scored} (UNCERTAIN {overall.uncertain}, counted as not FAKE); NO_FACE {overall.no_face}, "
          f"ERROR {overall.error}, no verdict {overall.no_verdict}; {len(result.ambiguous)} ambiguous name(s); "
          f"{result.unlabelled_verdicts} verdict(s) without a label")
    auc = "n/a" if overall.auc is None else f"{overall.auc:.3f}"
    print(f"  video AUC {auc}  accuracy {overall.accuracy:.3f}  precision {overall.precision_fake:.3f}  "
          f"recall {overall.recall_fake:.3f}  F1 {overall.f1_fake:.3f}  (FAKE = verdict FAKE)")
    (tn, fp), (fn, tp) = overall.confusion
    print(f"  confusion: REAL -> {tn} not FAKE, {fp} FAKE;  FAKE -> {fn} not FAKE, {tp} FAKE")
    for ambiguous in result.ambiguous:
        print(f"  ambiguous: {ambiguous.name} -> {', '.join(ambiguous.candidates)}")
    if result.localisation is not None:
        print(f"  {localisation_summary(result.localisation)}")
    if result.breakdown:
        print(f"\n{AUC_LEGEND}")
    for column, groups in result.breakdown.items():
        print(f"\nby {column}:")
        rows = [{k: "n/a" if v is None else v for k, v in metrics_row(value, m).items()} for value, m in groups.items()]
        print_table(rows, ["group", *METRIC_COLUMNS])
    print(f"\nstored: {write_evaluation(cfg, result)} (evaluation.json, roc.png, evaluation.html)")
    return 0


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print rows as an aligned text table (floats to three decimals); ``(none)`` when there are none."""
    if not rows:
        print("  (none)")
        return
    columns = columns or list(rows[0])
    text = [[("" if r.get(c) is None else f"{r[c]:.3f}" if isinstance(r.get(c), float) else str(r[c]))
             for c in columns] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in text)) for i, c in enumerate(columns)]
    print("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  " + "  ".join("-" * w for w in widths))
    for t in text:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(t, widths)))


def cmd_status(args: argparse.Namespace) -> int:
    """Print where the store and database are, the ledger's counts, the newest models and the latest verdicts."""
    from realness_tasks import ledger, queries
    from realness_tasks.db import Database

    cfg = _config()
    db = Database(cfg.resolved_database_url)
    print(f"store    {cfg.resolved_store_uri}\ndatabase {cfg.resolved_database_url.split('@')[-1]}\n")
    print("ingest ledger:")
    print_table([{"status": k, "objects": v} for k, v in ledger.status_counts(db).items()])
    print("\nmodels:")
    print_table(queries.recent_versions(db, 5))
    print("\nlatest verdicts:")
    print_verdicts(db)
    db.dispose()
    return 0


def print_verdicts(db: Database) -> None:
    """Print the latest verdict of every video, the most suspicious first."""
    from realness_tasks import queries

    print_table(queries.verdict_table(db))


def cmd_demo(args: argparse.Namespace) -> int:
    """Local stack, sample videos, and the three DAGs run through Airflow, then the verdict table.

    Each DAG runs in a process of ``scripts/run_dag.py`` (Airflow's ``dag.test()``), with this
    checkout's package and plugins first on its path; the demo stops at the first DAG that fails.
    """
    home = Path(args.home).resolve()
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = {
        "REALNESS_HOME": str(home),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        # Small and quick: a demo, not a benchmark. Real runs use the documented defaults.
        "REALNESS_SAMPLING_EVERY_SECONDS": "0.125",
        "REALNESS_TRAINING_IMAGE_SIZE": "64",
        "REALNESS_TRAINING_FROZEN_EPOCHS": "4",
        "REALNESS_TRAINING_FINETUNE_EPOCHS": "6",
        "REALNESS_TRAINING_BATCH_SIZE": "16",
        "REALNESS_TRAINING_MIN_NEW_FACES": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    for name, value in env.items():  # the caller's environment wins, so any setting can be tried in the demo
        os.environ.setdefault(name, value)
    from realness_tasks import queries, registry, samples
    from realness_tasks.config import RealnessConfig
    from realness_tasks.db import Database
    from realness_tasks.storage import open_store

    cfg = RealnessConfig.from_env()
    store = open_store(cfg.resolved_store_uri)
    started = time.monotonic()
    print(f"[1/5] sample videos from real face photographs -> {store.uri_for(cfg.landing_prefix)}", flush=True)
    videos = samples.labelled_set(home / "sample-videos", per_class=args.videos)
    for video in videos:
        store.upload(video.path, f"{cfg.landing_prefix}demo/{video.path.name}")
    store.upload(home / "sample-videos" / "metadata.json", f"{cfg.landing_prefix}demo/metadata.json")
    print(f"      {len(videos)} videos ({sum(v.label == 'FAKE' for v in videos)} with a swapped face)", flush=True)

    print("[2/5] Airflow metadata database", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    path = os.pathsep.join(filter(None, (str(REPO), str(REPO / "plugins"), os.environ.get("PYTHONPATH"))))
    for step, dag_id in ((3, "realness_ingest"), (4, "realness_train"), (5, "realness_score")):
        print(f"[{step}/5] {dag_id} (through Airflow)", flush=True)
        ran = subprocess.run([sys.executable, str(REPO / "scripts" / "run_dag.py"), dag_id],
                             env={**os.environ, "PYTHONPATH": path})
        if ran.returncode != 0:
            return 1
        if dag_id == "realness_train" and registry.read_pointer(cfg, store) is None:
            newest = queries.recent_versions(Database(cfg.resolved_database_url), 1)
            why = f"{newest[0]['version']}: {newest[0]['reason']}" if newest else "no model was registered"
            print(f"The demo's model was not promoted ({why}), so there is nothing to score with: the demo stops "
                  f"here rather than publish verdicts of a model that failed its quality gate.", file=sys.stderr)
            return 1
    db = Database(cfg.resolved_database_url)
    print(f"\nverdicts ({time.monotonic() - started:.0f} s in all):")
    print_verdicts(db)
    db.dispose()
    print(f"\nobject store: {cfg.resolved_store_uri} (faces/, models/, verdicts/, reports/)")
    print(f"database:     {cfg.resolved_database_url}  (try: sqlite3 {cfg.resolved_database_url[10:]} "
          f"'select * from daily_summary')")
    print(f"model report: {cfg.resolved_store_uri}/{cfg.models_prefix} (metrics.json, roc.png, confusion_matrix.png)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one ``realness`` command; a fault its user can fix becomes one line on stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="realness", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="ingest new videos under the landing prefix")
    ingest.add_argument("--reprocess", action="store_true", help="process objects already in the ledger again")
    for p in (ingest, sub.add_parser("train", help="train, register and maybe promote a model"),
              sub.add_parser("score", help="score new face shards with the champion and publish verdicts")):
        p.add_argument("--run-id", help="run id recorded in the tables (default: cli__<time>)")
        if p.prog.endswith(("ingest", "score")):
            p.add_argument("--date", help="partition date YYYY-MM-DD (default: today, UTC)")
    report = sub.add_parser("report", help="write the HTML report of a scored video and print its URI")
    report.add_argument("video", metavar="VIDEO_ID|SOURCE_URI", help="the video's id (sha256) or its source URI")
    report.add_argument("--model-version", help="the verdict of this model version (default: the latest verdict)")
    evaluation = sub.add_parser("evaluate", help="measure the latest verdicts against labels and store the report "
                                                 "(per breakdown group also AUC against all reals/fakes)")
    evaluation.add_argument("--labels", required=True, metavar="FILE",
                            help="DFDC metadata.json or a CSV with columns name,label (others: breakdown)")
    evaluation.add_argument("--prefix", help="only videos under this source URI prefix, or key prefix under "
                                             "landing/ (batch7/ and landing/batch7/ are the same)")
    approve = sub.add_parser("approve", help="promote a registered model on an operator's word, with the reason")
    approve.add_argument("version", help="the model version (model_versions.version)")
    approve.add_argument("--reason", required=True, help="who approves it and on what evidence (recorded)")
    people = sub.add_parser("identities", help="list, name, merge, split or forget identities "
                                               "(REALNESS_IDENTITY_ENABLED; docs/identities.md)")
    actions = people.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="every identity with its videos and embedded faces")
    named = actions.add_parser("name", help="give an identity a name (shown in reports and views)")
    named.add_argument("identity", type=int)
    named.add_argument("name", help="the name; empty clears it")
    merged = actions.add_parser("merge", help="make two identities one (the second joins the first)")
    merged.add_argument("identity", type=int)
    merged.add_argument("other", type=int)
    split = actions.add_parser("split", help="make one video's faces of an identity a new identity")
    split.add_argument("identity", type=int)
    split.add_argument("--video", required=True, help="the video id (sha256) whose faces are split off")
    forget = actions.add_parser("forget", help="delete one identity's embeddings, assignments and row for good")
    forget.add_argument("identity", type=int)
    forget.add_argument("--yes", action="store_true", help="confirm the deletion")
    sub.add_parser("status", help="what the ledger, the registry and the verdict tables hold")
    demo = sub.add_parser("demo", help="run the whole pipeline locally through Airflow on sample videos")
    demo.add_argument("--home", default=".realness-demo", help="where the demo keeps everything")
    demo.add_argument("--videos", type=int, default=8, help="real (and as many fake) sample videos")
    args = parser.parse_args(argv)
    commands = {"ingest": cmd_ingest, "train": cmd_train, "score": cmd_score, "report": cmd_report,
                "evaluate": cmd_evaluate, "status": cmd_status, "demo": cmd_demo, "approve": cmd_approve,
                "identities": cmd_identities}
    try:
        return commands[args.command](args)
    except Exception as exc:  # noqa: BLE001 - known faults become one line; anything else is re-raised
        line = explain(exc)
        if line is None:
            raise
        where = save_traceback(args.command)
        print(f"realness {args.command}: {line}" + (f" (traceback in {where})" if where else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
