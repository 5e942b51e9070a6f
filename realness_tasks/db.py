"""The verdict database: SQLite by default, PostgreSQL in deployment, one SQL dialect for both.

Migrations are the numbered ``sql/migrations/*.sql`` files, applied in order and recorded in
``schema_migrations``; they use only SQL that both engines accept, so the tables are identical.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
MIGRATIONS_DIR = SQL_DIR / "migrations"


class DatabaseNotMigrated(RuntimeError):
    """A read-only handle found migrations missing, which only a writer (airflow-init, any task) applies."""


def create_db_engine(url: str, read_only: bool = False) -> Engine:
    """An engine for ``url``; SQLite gets a busy timeout so parallel tasks queue instead of failing.

    ``read_only``: every session refuses writes (PostgreSQL's ``default_transaction_read_only``, SQLite's
    ``query_only``), whatever the role may do, and a missing SQLite file's folder is not created.
    """
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:" and not read_only:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # WAL lets readers run beside the one writer
            cursor = dbapi_conn.cursor()
            if read_only:
                cursor.execute("PRAGMA query_only=ON")
            else:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    if read_only:
        return sa.create_engine(url, pool_pre_ping=True,
                                connect_args={"options": "-c default_transaction_read_only=on"})
    return sa.create_engine(url, pool_pre_ping=True)


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements (no semicolons inside literals in our DDL)."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def migrate(engine: Engine) -> list[str]:
    """Apply every migration not yet applied; returns the versions applied now."""
    applied_now: list[str] = []
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE IF NOT EXISTS schema_migrations "
                             "(version TEXT PRIMARY KEY, applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"))
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        version = path.stem
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":  # serialise concurrent migrators
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7210426)"))
            done = conn.execute(sa.text("SELECT 1 FROM schema_migrations WHERE version = :v"), {"v": version}).first()
            if done:
                continue
            for statement in split_statements(path.read_text()):
                conn.execute(sa.text(statement))
            conn.execute(sa.text("INSERT INTO schema_migrations (version) VALUES (:v)"), {"v": version})
            applied_now.append(version)
            log.info("applied migration %s", version)
    return applied_now


_migrated_urls: set[str] = set()
_migrating = threading.Lock()


def migrate_once(url: str, engine: Engine) -> None:
    """Apply the migrations to ``url``'s database once per process: every task and command opens the
    database several times, and each open need not read ``schema_migrations`` again. An in-memory
    SQLite database is a new database on every engine, so it is migrated every time."""
    if url.endswith(":memory:") or url.endswith("://"):
        migrate(engine)
        return
    with _migrating:
        if url not in _migrated_urls:
            migrate(engine)
            _migrated_urls.add(url)


def unapplied_migrations(engine: Engine) -> list[str]:
    """The migrations ``schema_migrations`` does not record (all of them when the table is missing)."""
    versions = [path.stem for path in sorted(MIGRATIONS_DIR.glob("*.sql"))]
    if not sa.inspect(engine).has_table("schema_migrations"):
        return versions
    with engine.connect() as conn:
        applied = set(conn.execute(sa.text("SELECT version FROM schema_migrations")).scalars())
    return [version for version in versions if version not in applied]


class Database:
    """A migrated database handle; every write happens inside :meth:`transaction`.

    A writer's handle (the default) applies missing migrations on the first open of its URL in the
    process (:func:`migrate_once`).

    ``migrate=False`` opens a read-only handle for a reader whose role may not change the schema (the
    verdicts page): it applies nothing, refuses writes, and raises :class:`DatabaseNotMigrated` when a
    migration is missing, instead of failing later on a missing table.
    """

    def __init__(self, url: str, migrate: bool = True):
        self.url = url
        self.engine = create_db_engine(url, read_only=not migrate)
        if migrate:
            migrate_once(url, self.engine)
            return
        missing = unapplied_migrations(self.engine)
        if missing:
            self.engine.dispose()
            raise DatabaseNotMigrated(
                f"the verdict database {url.split('@')[-1]} lacks migrations {', '.join(missing)}: a writer applies "
                "them (airflow-init, or any realness task or command)")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(sa.text(sql), dict(params or {}))]

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(sa.text(sql), params if params is not None else {})

    def dispose(self) -> None:
        self.engine.dispose()


def as_utc(value: datetime | str | None) -> datetime | None:
    """A naive UTC datetime from what the database or JSON gives back (SQLite returns strings)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value
