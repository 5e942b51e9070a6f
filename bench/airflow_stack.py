"""Airflow 3 as deployed: its components as separate processes around a PostgreSQL metadata database.

``airflow_stack()`` migrates a fresh metadata database with ``airflow db migrate`` and starts
``airflow api-server`` (task processes report to its Execution API), ``airflow dag-processor``,
``airflow scheduler`` and, for the CeleryExecutor, ``airflow celery worker``, each in its own
process group with its output in ``<home>/<component>.log``. Tests and the scan benchmark drive it
the way an operator does (the ``airflow`` CLI) and read the outcome from the metadata tables. Every
process group is terminated on exit, whatever happened inside.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.request import urlopen

import sqlalchemy as sa

from bench.common import ROOT, free_port, fresh_database

T = TypeVar("T")

FINAL_RUN_STATES = ("success", "failed")
STARTUP_TIMEOUT_S = 120
STOP_GRACE_S = 20
LOG_TAIL_CHARS = 3000


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment less its Airflow and Realness settings (the test session's own), plus ``extra``."""
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("AIRFLOW", "REALNESS_"))}
    return {**inherited, **extra}


@dataclass
class AirflowStack:
    home: Path
    env: dict[str, str]
    metadata_url: str
    api_url: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    engine: sa.Engine | None = None

    # --- driving it --------------------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 180) -> str:
        """Run one ``airflow`` CLI command against the stack; its stdout, or an error with its output."""
        done = subprocess.run([sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.home,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout[-LOG_TAIL_CHARS:]}\n{done.stderr[-LOG_TAIL_CHARS:]}")
        return done.stdout

    def start(self, name: str, *args: str) -> None:
        """Start ``airflow <args>`` in a new process group; output goes to ``<home>/<name>.log``."""
        with (self.home / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "airflow", *args], env=self.env, cwd=self.home, stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM every component's process group, wait, then SIGKILL whatever is left of each group."""
        for process in self.processes.values():
            _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # Task processes the component forked live in its group and may outlive it.
            _signal_group(process, signal.SIGKILL)
            process.wait()
        if self.engine is not None:
            self.engine.dispose()

    # --- reading it --------------------------------------------------------------------------

    def query(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Rows of a query on Airflow's metadata database."""
        if self.engine is None:
            self.engine = sa.create_engine(self.metadata_url, poolclass=sa.pool.NullPool)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(sql), params)]

    def wait_for(self, what: str, probe: Callable[[], T | None], timeout: float, poll_s: float = 1.0) -> T:
        """Poll ``probe`` until it returns something other than None/False; fail with the stack's logs on timeout
        or as soon as a component dies."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            dead = {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}
            if dead:
                raise AssertionError(f"while waiting for {what}, components exited {dead}\n{self.report()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.report()}")
            time.sleep(poll_s)

    def wait_for_dags(self, *dag_ids: str, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until the dag-processor has stored every DAG in ``dag_ids``; fail at once on import errors."""
        def parsed() -> bool:
            errors = self.query("SELECT filename, stacktrace FROM import_error")
            if errors:
                raise AssertionError(f"DAG import errors: {errors}")
            stored = {r["dag_id"] for r in self.query("SELECT dag_id FROM dag WHERE next_dagrun IS NOT NULL")}
            return stored >= set(dag_ids)

        self.wait_for(f"the dag-processor to parse {dag_ids}", parsed, timeout)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
        return rows[0]["state"] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """The final state of a DAG run, once it has one."""
        return self.wait_for(f"{dag_id} run {run_id} to finish",
                             lambda: (state := self.run_state(dag_id, run_id)) in FINAL_RUN_STATES and state,
                             timeout)

    def task_instances(self, dag_id: str, run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT task_id, map_index, state, start_date, end_date, pid, hostname, queue, executor, "
               "external_executor_id, try_number FROM task_instance WHERE dag_id = :d AND run_id = :r")
        if task_id is not None:
            sql += " AND task_id = :t"
        return self.query(sql + " ORDER BY task_id, map_index", d=dag_id, r=run_id, t=task_id)

    def component_log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def report(self, dag_id: str | None = None, run_id: str | None = None) -> str:
        """What to read when something went wrong: task states, task logs and the components' log tails."""
        parts = []
        if dag_id and run_id:
            parts.append(f"--- task instances of {dag_id} {run_id}")
            parts += [str({k: ti[k] for k in ("task_id", "map_index", "state", "try_number", "queue")})
                      for ti in self.task_instances(dag_id, run_id)]
        pattern = f"dag_id={dag_id}/**/*.log" if dag_id else "dag_id=*/**/*.log"
        for path in sorted((self.home / "logs").glob(pattern)):
            text = path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            parts.append(f"--- task log {path.relative_to(self.home)}\n{text}")
        for name in self.processes:
            parts.append(f"--- {name}.log (tail)\n{self.component_log(name)[-LOG_TAIL_CHARS:]}")
        return "\n".join(parts)


@contextmanager
def airflow_stack(workdir: Path, postgres_server_url: str, *, env: Mapping[str, str], celery_broker: str | None = None,
                  celery_queues: tuple[str, ...] = ("default",)) -> Iterator[AirflowStack]:
    """A running Airflow on a fresh PostgreSQL metadata database, with this repository's DAGs and plugins and
    ``env`` for its tasks: api-server, dag-processor and scheduler with the LocalExecutor or, given a
    ``celery_broker``, the CeleryExecutor and one Celery worker (concurrency 2) consuming ``celery_queues``."""
    home = workdir / "airflow"
    home.mkdir(parents=True)
    with ExitStack() as cleanup:
        metadata_url = cleanup.enter_context(fresh_database(postgres_server_url))
        port = free_port()
        api_url = f"http://127.0.0.1:{port}"
        celery = {}
        if celery_broker is not None:
            # Queue names stay the deployment's; a key prefix keeps concurrent sessions on one Redis apart.
            key_prefix = f"realness-test-{uuid.uuid4().hex[:8]}:"
            cleanup.callback(_delete_redis_keys, celery_broker, key_prefix)
            celery = {"AIRFLOW__CELERY__BROKER_URL": celery_broker,
                      "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
                      "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": key_prefix}
        stack = AirflowStack(home=home, metadata_url=metadata_url, api_url=api_url, env=clean_environment({
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor" if celery_broker is None else "CeleryExecutor",
            # Two task processes at once: parallel mapped tasks on a 2-core machine.
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Nothing runs before a test unpauses it.
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{api_url}/execution/",
            "AIRFLOW__API__WORKERS": "1",
            # The scheduler signs the tasks' tokens, the api-server checks them: one secret for both.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            # Files are parsed as soon as the dag-processor starts; the intervals bound how late it sees them.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            # Where the verdicts page starts an upload's ingest run: this stack's own api-server.
            "REALNESS_REPORT_AIRFLOW_API_URL": api_url,
            **celery,
            **env,
        }))
        stack.airflow("db", "migrate", timeout=300)
        cleanup.callback(stack.stop)
        stack.start("api-server", "api-server", "--port", str(port), "--host", "127.0.0.1")
        stack.start("dag-processor", "dag-processor")
        # Task logs are read from <home>/logs, so no component serves them over HTTP.
        stack.start("scheduler", "scheduler", "--skip-serve-logs")
        if celery_broker is not None:
            stack.start("celery-worker", "celery", "worker", "--concurrency", "2", "--queues", ",".join(celery_queues),
                        "--skip-serve-logs", "--without-gossip", "--without-mingle")
        stack.wait_for("the Execution API", lambda: _http_ok(f"{api_url}/execution/health"), STARTUP_TIMEOUT_S)
        yield stack


def _http_ok(url: str) -> bool:
    try:
        with urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _delete_redis_keys(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
