"""A task's run resources: its configuration, the object store and the verdict database.

Every DAG task and ``realness`` command that needs both opens them with :func:`run_resources`,
which disposes the database's connection pool when the block ends, also when something built
inside the block (a detector, a scorer) fails. Configuration checks (the database's placement
beside the store, the local store folder) belong to whoever builds ``cfg``: the Airflow plugin's
``load_config()`` and the command line's ``_config()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from realness_tasks.config import RealnessConfig
from realness_tasks.db import Database
from realness_tasks.storage import ObjectStore, open_store


@dataclass(frozen=True)
class RunResources:
    """What a task works with: its configuration, the object store and the verdict database."""

    cfg: RealnessConfig
    store: ObjectStore
    db: Database


def open_run_resources(cfg: RealnessConfig) -> tuple[ObjectStore, Database]:
    """The store and the database ``cfg`` names; the caller disposes the database (see :func:`run_resources`)."""
    return open_store(cfg.resolved_store_uri, cfg.s3), Database(cfg.resolved_database_url)


@contextmanager
def run_resources(cfg: RealnessConfig) -> Iterator[RunResources]:
    """Open the store and the database for one task or command; the database is disposed on leaving the block."""
    store, db = open_run_resources(cfg)
    try:
        yield RunResources(cfg, store, db)
    finally:
        db.dispose()
