"""One configuration object for every stage of Realness.

Every setting has a documented default and is read from an environment variable named
``REALNESS_<SECTION>_<FIELD>`` (top-level settings: ``REALNESS_<FIELD>``); the sections, one per
stage, are in ``realness_tasks/settings.py``. Under Airflow, ``plugins/realness_airflow.py`` adds
what the Airflow connections hold (S3 credentials and endpoint, the verdict database, the Azure
Face key) as overrides, so secrets only ever come from connections or the environment.
``python -m realness_tasks.config`` prints the table of settings that ``docs/configuration.md`` holds.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from realness_tasks.settings import (AzureSettings, ConfigurationError, CropSettings, DetectionSettings,
                                     FoundationSettings, IdentitySettings, ReportSettings, S3Settings,
                                     SamplingSettings, ScoringSettings, TrainingSettings, setting)


@dataclass(frozen=True)
class RealnessConfig:
    """Everything a Realness task needs to know, resolved once per task."""

    home: str = setting(str(Path.home() / ".realness"), "Working directory for local state (embedded store, database, scratch).")
    store_uri: str = setting("", "Object store root: s3://bucket/prefix or file:///path; empty: file://<home>/store.")
    landing_prefix: str = setting("landing/", "Where new videos arrive.")
    sidecar_max_megabytes: int = setting(16, "Largest metadata.json (label sidecar) discovery reads, in MB (every "
                                             "run re-reads each sidecar); a larger one is BAD_SIDECAR with its size "
                                             "and is not read: split it per folder, or raise this.")
    faces_prefix: str = setting("faces/", "Validated face shards (Hive-partitioned by date).")
    staging_prefix: str = setting("staging/", "Shards waiting for validation.")
    quarantine_prefix: str = setting("quarantine/", "Shards that failed validation, with the report beside them.")
    models_prefix: str = setting("models/", "Model registry.")
    features_prefix: str = setting("features/", "Foundation-encoder features of the face crops, one Parquet file per "
                                                "video and encoder, keyed by each crop's sha256.")
    verdicts_prefix: str = setting("verdicts/", "Verdicts exported as Parquet, partitioned by date.")
    reports_prefix: str = setting("reports/", "Run summaries; per-video HTML reports under videos/.")
    videos_per_task: int = setting(0, "Videos per mapped ingest task; 0 chooses batches from the listed sizes "
                                      "(see megabytes_per_task). Each task's start-up (Airflow's, ~0.3 s of imports "
                                      "and MTCNN) is shared by a batch; validation is one task per run (~2 s of "
                                      "Great Expectations once).")
    megabytes_per_task: int = setting(48, "Automatic batching: about this much video per mapped ingest task (small "
                                          "clips are grouped, a large video gets a task of its own).")
    min_tasks_per_run: int = setting(2, "Automatic batching: at least this many mapped ingest tasks when there are "
                                        "as many videos, so that parallel task slots all get work.")
    max_tasks_per_run: int = setting(64, "Most mapped ingest tasks per run (Airflow's max_map_length also applies).")
    heavy_pool: str = setting("default_pool", "Airflow pool of the compute-heavy tasks (detection, training, scoring).")
    detection_queue: str = setting("default", "Celery queue of the detection and scoring tasks.")
    training_queue: str = setting("default", "Celery queue of the training task.")
    ingest_schedule: str = setting("0 1 * * *", "Cron schedule of realness_ingest.")
    train_schedule: str = setting("0 3 * * 0", "Cron schedule of realness_train (new face shards also trigger it).")
    score_schedule: str = setting("0 5 * * *", "Cron schedule of realness_score's sweep (new shards and a new champion "
                                               "also trigger it).")
    database_url: str = setting("", "Verdict database (SQLAlchemy URL); empty: sqlite:///<home>/realness.db.")
    allow_embedded_database: bool = setting(False, "Allow a SQLite verdict database with a remote (s3://) store; "
                                                   "off, such a task refuses to run instead of writing to a local file.")
    required_connections: str = setting("", "Comma-separated Airflow connection ids that must exist (e.g. aws_default,"
                                            "realness_db): a task fails when one is not found instead of using the "
                                            "environment's settings. Needed to tell a missing connection from a "
                                            "lookup that failed: Airflow's Task SDK reports both as not defined. "
                                            "Empty: none required.")
    s3: S3Settings = field(default_factory=S3Settings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    detection: DetectionSettings = field(default_factory=DetectionSettings)
    azure: AzureSettings = field(default_factory=AzureSettings)
    crop: CropSettings = field(default_factory=CropSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    foundation: FoundationSettings = field(default_factory=FoundationSettings)
    identity: IdentitySettings = field(default_factory=IdentitySettings)
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    report: ReportSettings = field(default_factory=ReportSettings)

    def __post_init__(self) -> None:
        check_store_uri(self.store_uri)
        check_database_url(self.database_url)

    @property
    def required_connection_ids(self) -> tuple[str, ...]:
        """The Airflow connection ids that must exist, from ``required_connections``."""
        return tuple(c.strip() for c in self.required_connections.split(",") if c.strip())

    @property
    def resolved_store_uri(self) -> str:
        """The object store root, ``<home>/store`` when none is set."""
        return self.store_uri or Path(self.home, "store").resolve().as_uri()

    @property
    def resolved_database_url(self) -> str:
        """The verdict database, ``<home>/realness.db`` when none is set."""
        return self.database_url or f"sqlite:///{Path(self.home, 'realness.db').resolve()}"

    @property
    def resolved_networks_dir(self) -> Path:
        """Where MTCNN's converted networks are cached, ``<home>/weights`` when none is set."""
        return Path(self.detection.networks_dir or Path(self.home, "weights"))

    def check_database_placement(self) -> None:
        """Refuse an embedded (SQLite) verdict database beside a remote object store.

        On a worker that shares an S3 store with other workers, a local SQLite file is invisible to
        every other task: ledger rows and verdicts written there are lost to the pipeline while the
        task succeeds. ``allow_embedded_database`` permits it (one machine, tests).
        """
        remote = self.resolved_store_uri.startswith("s3://")
        if remote and self.resolved_database_url.startswith("sqlite") and not self.allow_embedded_database:
            raise ConfigurationError(
                f"the verdict database is a local SQLite file ({self.resolved_database_url}) but the object store is "
                f"remote ({self.resolved_store_uri}): set the realness_db connection or REALNESS_DATABASE_URL to the "
                "shared database, or REALNESS_ALLOW_EMBEDDED_DATABASE=true if a local file is really meant")

    def check_store_root(self) -> None:
        """Refuse a local ``REALNESS_STORE_URI`` that is not an existing folder.

        A typo would otherwise give a new, empty store: ingest would list nothing and succeed. The
        default store (``<home>/store``) is Realness's own and is made on first use.
        """
        if not self.store_uri or urlparse(self.store_uri).scheme == "s3":
            return
        root = local_store_path(self.store_uri)
        if not root.is_dir():
            raise ConfigurationError(f"REALNESS_STORE_URI={self.store_uri!r}: {root} is not an existing folder; create "
                                     "it, or correct the setting")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RealnessConfig:
        """Build the configuration from ``REALNESS_*`` variables, then apply ``overrides``.

        ``overrides`` use the same nesting as the dataclasses: ``s3={"endpoint_url": ...}``.
        """
        environ = os.environ if environ is None else environ
        values = _read_section(cls, "REALNESS_", environ)
        for name, value in overrides.items():
            if isinstance(value, Mapping):
                values[name] = dataclasses.replace(values[name], **{k: v for k, v in value.items() if v is not None})
            elif value is not None:
                values[name] = value
        return cls(**values)

    def redacted(self) -> dict[str, Any]:
        """The configuration as a dict with secrets masked, for logs and run reports."""
        return _redact(self)


STORE_SCHEMES = ("s3", "file", "")
DATABASE_SCHEMES = ("sqlite", "postgresql")


def local_store_path(uri: str) -> Path:
    """The folder a ``file://`` URI or a bare path names."""
    parsed = urlparse(uri)
    return Path(unquote(parsed.path) if parsed.scheme else uri)


def check_store_uri(uri: str) -> None:
    """Refuse a store URI that no store can open (an unknown scheme, ``s3://`` without a bucket)."""
    parsed = urlparse(uri)
    if parsed.scheme not in STORE_SCHEMES:
        raise ConfigurationError(f"REALNESS_STORE_URI={uri!r}: the scheme {parsed.scheme!r} is not supported; use "
                                 "s3://bucket/prefix or file:///path")
    if parsed.scheme == "s3" and not parsed.netloc:
        raise ConfigurationError(f"REALNESS_STORE_URI={uri!r} names no bucket: use s3://bucket/prefix")


def check_database_url(url: str) -> None:
    """Refuse a database URL of an engine the migrations are not written for (only its scheme is shown)."""
    scheme = url.split("://", 1)[0] if "://" in url else url
    if url and scheme.split("+", 1)[0] not in DATABASE_SCHEMES:
        raise ConfigurationError(f"REALNESS_DATABASE_URL (or the realness_db connection) uses {scheme!r}: the "
                                 "verdict database is sqlite:///path or postgresql+psycopg2://user@host/db")


def _section_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _read_section(cls: type, prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    hints = _section_types(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            values[f.name] = kind(**_read_section(kind, f"{prefix}{f.name.upper()}_", environ))
            continue
        raw = environ.get(f"{prefix}{f.name.upper()}")
        if raw is not None:
            values[f.name] = _parse(raw, kind, f"{prefix}{f.name.upper()}")
    return values


def _parse(raw: str, kind: Any, name: str) -> Any:
    optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        if raw.strip() == "":
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    try:
        if kind is bool:
            if raw.strip().lower() in ("1", "true", "yes", "on"):
                return True
            if raw.strip().lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from exc


def _redact(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = _redact(value)
        elif f.metadata.get("secret") and value:
            out[f.name] = "***"
        else:
            out[f.name] = value
    return out


def settings_table() -> str:
    """Markdown table of every setting: variable, default, meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]

    def walk(cls: type, prefix: str) -> None:
        hints = _section_types(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name.upper()}_")
                continue
            default = f.default
            if f.name == "home":
                default = "~/.realness"
            shown = "" if default in (None, "") else f"`{default}`"
            rows.append(f"| `{prefix}{f.name.upper()}` | {shown} | {f.metadata.get('doc', '')} |")

    walk(RealnessConfig, "REALNESS_")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
