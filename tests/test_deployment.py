"""The deployment files (docker-compose.yml, docker/, .env.example) agree with the code they deploy.

Docker does not run here, so the compose file is read the way compose reads it: YAML with merge
keys, then ``${VAR}`` interpolated from ``.env`` (an operator's copy of ``.env.example``), then
validated against the Compose Specification's JSON schema (vendored in tests/compose_spec/). Expected
values come from the code: the Airflow pin in requirements.txt, the settings in
``realness_tasks/config.py``, the variables and connection ids the DAGs and the plugin read, and
Airflow's own configuration schema. The start-up scripts under docker/ run for real where they can:
the preflight check, the PostgreSQL init script and airflow-init against the local PostgreSQL server,
nginx's start script.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import uuid
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
PUBLISH_FILE = ROOT / "docker-compose.publish.yml"
COMPOSE_SCHEMA = ROOT / "tests" / "compose_spec" / "compose-spec.json"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
OPT_AIRFLOW = "/opt/airflow"  # AIRFLOW_HOME of the official image
PLACEHOLDER = "change-me"
RUNTIME_REQUIREMENTS = ROOT / "requirements.txt"
DEV_REQUIREMENTS = ROOT / "requirements-dev.txt"
NGINX_DIR = ROOT / "docker" / "nginx"

AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                      "airflow-triggerer", "airflow-worker", "airflow-init")
SUPPORT_SERVICES = ("preflight", "postgres", "redis", "minio", "minio-init", "nginx")
# The optional file of further settings for every Airflow service: the operator's own, not read here.
AIRFLOW_ENV_FILE = {"path": "airflow.env", "required": False}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, and $$ (a literal $).
_INTERPOLATION = re.compile(r"\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\})")


# ---------------------------------------------------------------- reading the files as compose does

def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.groups()
        value = env.get(name)
        if operator in (None, "?", ":?"):
            if value is None or (operator == ":?" and value == ""):
                raise KeyError(f"{name} is not set ({argument or 'no default'})")
            return value
        if operator == ":-":
            return value or argument
        return argument if value is None else value

    return _INTERPOLATION.sub(substitute, text)


def resolve(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [resolve(item, env) for item in node]
    if isinstance(node, dict):
        return {key: resolve(value, env) for key, value in node.items()}
    return node


def compose_strings(node) -> list[str]:
    """Every key and value of the parsed compose file (comments are gone)."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        node = [text for pair in node.items() for text in pair]
    return [text for item in node for text in compose_strings(item)] if isinstance(node, list) else []


@cache
def raw_compose(path: Path = COMPOSE_FILE) -> dict:
    return yaml.safe_load(path.read_text())


@cache
def env_example() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE)


def operator_env() -> dict[str, str]:
    """.env as an operator fills it: every placeholder replaced by a generated secret."""
    from cryptography.fernet import Fernet

    env = dict(env_example())
    for key, value in env.items():
        if PLACEHOLDER in value:
            env[key] = Fernet.generate_key().decode() if "FERNET" in key else secrets.token_hex(16)
    return env


def compose(env: dict[str, str] | None = None) -> dict:
    """docker-compose.yml as ``docker compose config`` resolves it with ``env`` as .env."""
    return resolve(raw_compose(), env_example() if env is None else env)


def service_env(name: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a service's container starts with, from docker-compose.yml (its ``environment``).

    The only env_file allowed is the optional airflow.env, which holds the operator's own additions:
    a service never receives .env as a whole."""
    service = compose(env)["services"][name]
    env_files = service.get("env_file", [])
    assert env_files in ([], [AIRFLOW_ENV_FILE]), f"{name} reads {env_files}; only the optional airflow.env is allowed"
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def services_seeing(value: str, env: dict[str, str]) -> set[str]:
    """Services whose environment, command or healthcheck holds ``value`` (a secret of ``env``)."""
    resolved = compose(env)["services"]
    return {name for name, service in resolved.items()
            if any(value in text for text in compose_strings({key: service.get(key) or [] for key in
                                                               ("environment", "command", "healthcheck")}))}


def default_services() -> list[str]:
    """What a plain ``docker compose up`` starts: services without a profile."""
    return [name for name, service in raw_compose()["services"].items() if not service.get("profiles")]


def airflow_services() -> list[str]:
    return [name for name in raw_compose()["services"] if name.startswith("airflow-") or name == "flower"]


def command_of(name: str) -> list[str]:
    command = compose()["services"][name].get("command", [])
    return command.split() if isinstance(command, str) else list(command)


def worker_queues() -> dict[str, set[str]]:
    queues = {}
    for name in airflow_services():
        command = command_of(name)
        if command[:2] == ["celery", "worker"]:
            option = next(i for i, arg in enumerate(command) if arg in ("-q", "--queues"))
            queues[name] = set(command[option + 1].split(","))
    return queues


# ---------------------------------------------------------------- what the code reads

def code_variables() -> set[str]:
    """REALNESS_* names spelled out in the deployed code (DAGs, plugin, task library)."""
    names = set()
    for folder in ("dags", "plugins", "realness_tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(re.findall(r"""["'](REALNESS_[A-Z0-9_]+)["']""", path.read_text()))
    return names


def config_variables() -> set[str]:
    from realness_tasks.config import settings_table

    return set(re.findall(r"`(REALNESS_[A-Z0-9_]+)`", settings_table()))


def azure_example() -> str:
    """The AIRFLOW_CONN_AZURE_FACE example of .env.example, its <placeholders> filled in."""
    example = re.search(r"^#\s*AIRFLOW_CONN_AZURE_FACE=(\S+)", ENV_EXAMPLE.read_text(), re.M).group(1)
    return re.sub(r"<[^>]+>", lambda m: f"ph{m.start()}", example)


_PLUGIN_PROBE = """
import dataclasses, json, os, sys
import realness_airflow
out = {"routing": {name: value for name, value in vars(realness_airflow).items()
                   if name.endswith(("_POOL", "_QUEUE")) and isinstance(value, str)}}
c = realness_airflow.load_config()
out["config"] = {"store": c.resolved_store_uri, "s3": dataclasses.asdict(c.s3),
                 "db": c.resolved_database_url, "azure": c.azure.enabled}
os.environ["AIRFLOW_CONN_AZURE_FACE"] = sys.argv[1]
c = realness_airflow.load_config()
out["azure"] = {"endpoint": c.azure.endpoint, "key": c.azure.key}
print("RESULT " + json.dumps(out))
"""


@cache
def deployed_plugin() -> dict:
    """What plugins/realness_airflow.py computes in a worker container: its pools and queues, the
    configuration its load_config() builds, and that again with the documented Azure connection."""
    with tempfile.TemporaryDirectory() as home:
        env = {**service_env("airflow-worker"), "PATH": os.environ["PATH"], "HOME": home,
               "AIRFLOW_HOME": str(Path(home, "airflow")), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
        done = subprocess.run([sys.executable, "-c", _PLUGIN_PROBE, azure_example()], env=env, cwd=home,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def routing(suffix: str) -> set[str]:
    """Values of the plugin's *_POOL / *_QUEUE names (what the DAGs pass as pool= / queue=) when deployed."""
    return {value for name, value in deployed_plugin()["routing"].items() if name.endswith(suffix)}


def deployment_sets(suffix: str) -> set[str]:
    """REALNESS_*<suffix> variables the code reads; docker-compose.yml must set each, alike everywhere."""
    env = service_env("airflow-worker")
    names = {name for name in code_variables() | config_variables() if name.endswith(suffix)}
    unset = sorted(name for name in names if not env.get(name))
    assert not unset, f"the code reads {unset}, which docker-compose.yml does not set"
    for service in airflow_services():  # DAG files are parsed by the dag-processor and again on workers
        assert {name: service_env(service)[name] for name in names} == {name: env[name] for name in names}, service
    return names


def plugin_connection_ids() -> dict[str, str]:
    """{"AWS": "aws_default", ...}: the connection ids the plugin falls back to."""
    source = (ROOT / "plugins" / "realness_airflow.py").read_text()
    return dict(re.findall(r"""environ\.get\(["']REALNESS_([A-Z]+)_CONN_ID["'],\s*["']([^"']+)["']\)""", source))


@cache
def airflow_config_description() -> dict:
    from airflow.configuration import conf

    conf.load_providers_configuration()
    return conf.configuration_description


def airflow_default(section: str, key: str) -> str:
    return airflow_config_description()[section]["options"][key]["default"]


def dockerfile_instructions() -> list[tuple[str, str]]:
    instructions, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_copies() -> dict[str, str]:
    copies = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "COPY":
            *sources, destination = [arg for arg in rest.split() if not arg.startswith("--")]
            copies.update({source.rstrip("/"): destination.rstrip("/") for source in sources})
    return copies


# ---------------------------------------------------------------- services and executor

def test_compose_has_the_services_of_an_airflow_3_celery_deployment():
    services = raw_compose()["services"]
    missing = [name for name in AIRFLOW_COMPONENTS + SUPPORT_SERVICES if name not in services]
    assert not missing, f"docker-compose.yml lacks {missing}"
    assert "x-airflow-common" in raw_compose()
    commands = {name: command_of(name) for name in AIRFLOW_COMPONENTS}
    assert commands["airflow-apiserver"][0] == "api-server"
    assert commands["airflow-scheduler"] == ["scheduler"]
    assert commands["airflow-dag-processor"] == ["dag-processor"]
    assert commands["airflow-triggerer"] == ["triggerer"]
    assert worker_queues(), "no Celery worker service"


def test_compose_files_are_valid_against_the_compose_specification():
    """docker-compose.yml alone and with docker-compose.publish.yml, interpolated from a filled-in .env."""
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    env = operator_env()
    for path in (COMPOSE_FILE, PUBLISH_FILE):
        document = resolve(raw_compose(path), env)
        jsonschema.validate(document, schema)
    publish = raw_compose(PUBLISH_FILE)
    assert set(publish["services"]) <= set(raw_compose()["services"]), "the override names a service that does not exist"
    with pytest.raises(jsonschema.ValidationError):  # the schema does reject a broken file
        jsonschema.validate({"services": {"nginx": {"ports": {"80": 80}}}}, schema)


def test_every_airflow_service_runs_the_image_built_from_the_dockerfile():
    resolved = compose()
    common = resolved["x-airflow-common"]
    assert (ROOT / common["build"]["context"] / common["build"]["dockerfile"]).resolve() == DOCKERFILE
    for name in airflow_services() + ["preflight"]:
        service = resolved["services"][name]
        assert service["image"] == common["image"], name
        assert service["build"] == common["build"], name
        # The pinned tensorflow-cpu wheels are x86-64 only: an arm64 host must build and run amd64.
        assert service["platform"] == "linux/amd64", name


def test_airflow_runs_celery_on_the_compose_redis_and_postgres():
    """The metadata database (its owner role) where Airflow opens it; Celery's broker and its result
    backend (a database and role of its own) where Celery runs; never the cluster superuser."""
    postgres = service_env("postgres")
    redis_password = service_env("redis")["REDISCLI_AUTH"]
    expected = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": ("postgresql+psycopg2", "AIRFLOW_DB", METADATA_DB_HOLDERS),
        "AIRFLOW__CELERY__RESULT_BACKEND": ("db+postgresql", "CELERY_DB", CELERY_RESULT_HOLDERS),
    }
    for name in airflow_services():
        env = service_env(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        if name in CELERY_BROKER_HOLDERS:
            broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
            assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379), name
            assert unquote(broker.password) == redis_password, f"{name}: broker password is not Redis's"
        for key, (scheme, prefix, holders) in expected.items():
            if name not in holders:
                continue
            url = urlsplit(env[key])
            assert (url.scheme, url.hostname) == (scheme, "postgres"), f"{name} {key}"
            assert (unquote(url.username), unquote(url.password), url.path.lstrip("/")) == (
                postgres[f"{prefix}_USER"], postgres[f"{prefix}_PASSWORD"], postgres[f"{prefix}_NAME"]), f"{name} {key}"
            assert unquote(url.username) != "postgres", f"{name} connects as the cluster superuser"
    assert postgres["CELERY_DB_USER"] != postgres["AIRFLOW_DB_USER"], "the result backend has a role of its own"


def test_every_airflow_setting_in_compose_is_a_real_airflow_option():
    description = airflow_config_description()
    for name in airflow_services():
        for key in service_env(name):
            if key.startswith("AIRFLOW__"):
                section, option = key[len("AIRFLOW__"):].lower().split("__", 1)
                assert option in description.get(section, {}).get("options", {}), f"{name}: {key} is no Airflow option"


# Which Airflow components hold which Airflow secret. JWT: the scheduler's executor signs task tokens,
# the api-server checks them; triggerer and dag-processor call the execution API in process, unsigned.
# API secret key: the api-server signs its log requests with it, the log servers of workers and the
# triggerer check them. Metadata database and Fernet key: the components that open that database (and
# may decrypt what is stored there); not the Celery workers, which in Airflow 3 reach it through the
# execution API (the provider's `celery worker` skips the database check on Airflow 3), nor Flower.
# Celery: the scheduler sends and the workers take tasks, Flower watches the broker; the result backend
# is written by workers, read by the scheduler. Remote logs (the S3 key): written by workers and the
# triggerer, read by the api-server (which also serves the verdicts page from the store).
WORKERS = {"airflow-worker", "airflow-worker-training"}
METADATA_DB_HOLDERS = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                       "airflow-init", "airflow-cli"}
CELERY_BROKER_HOLDERS = {"airflow-scheduler", "flower", "airflow-cli"} | WORKERS
CELERY_RESULT_HOLDERS = {"airflow-scheduler"} | WORKERS
REMOTE_LOG_HOLDERS = {"airflow-apiserver", "airflow-triggerer"} | WORKERS
SECRET_HOLDERS = {
    "AIRFLOW__API_AUTH__JWT_SECRET": {"airflow-apiserver", "airflow-scheduler"},
    "AIRFLOW__API__SECRET_KEY": {"airflow-apiserver", "airflow-triggerer"} | WORKERS,
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": METADATA_DB_HOLDERS,
    "AIRFLOW__CORE__FERNET_KEY": METADATA_DB_HOLDERS,
    "AIRFLOW__CELERY__BROKER_URL": CELERY_BROKER_HOLDERS,
    "AIRFLOW__CELERY__RESULT_BACKEND": CELERY_RESULT_HOLDERS,
    "AIRFLOW_CONN_AWS_DEFAULT": REMOTE_LOG_HOLDERS,
    "AIRFLOW__LOGGING__REMOTE_LOGGING": REMOTE_LOG_HOLDERS,
}


def test_execution_api_and_secrets_reach_exactly_the_airflow_components_that_use_them():
    api_port = int(airflow_default("api", "port"))
    api_service = next(name for name in airflow_services() if command_of(name)[:1] == ["api-server"])
    assert str(api_port) in [str(port) for port in compose()["services"][api_service]["expose"]]
    shared: dict[str, set[str]] = {}
    for name in airflow_services():
        env = service_env(name)
        url = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (url.hostname, url.port, url.path) == (api_service, api_port, "/execution/"), name
        for key in SECRET_HOLDERS:
            if key in env:
                shared.setdefault(key, set()).add(env[key])
    assert all(len(values) == 1 for values in shared.values()), "components disagree on a shared secret"
    for key, holders in SECRET_HOLDERS.items():
        assert {name for name in airflow_services() if key in service_env(name)} == holders, key


def test_each_secret_reaches_only_the_services_that_need_it():
    """The filled-in .env's secrets, looked for in every service's environment, command and healthcheck.

    The preflight service sees every secret to check it for placeholders, with no network at all."""
    env = operator_env()
    workers = set(worker_queues())
    expected = {
        "MINIO_ROOT_PASSWORD": {"minio", "minio-init"},
        "AIRFLOW_JWT_SECRET": {"airflow-apiserver", "airflow-scheduler"},
        "AIRFLOW_ADMIN_PASSWORD": {"airflow-init"},
        "ANALYST_DB_PASSWORD": {"postgres"},
        "POSTGRES_SUPERUSER_PASSWORD": {"postgres"},
        "AIRFLOW_DB_PASSWORD": {"postgres"} | METADATA_DB_HOLDERS,
        "AIRFLOW_FERNET_KEY": METADATA_DB_HOLDERS,
        "CELERY_DB_PASSWORD": {"postgres"} | CELERY_RESULT_HOLDERS,
        "REDIS_PASSWORD": {"redis"} | CELERY_BROKER_HOLDERS,
        "VERDICT_DB_PASSWORD": {"postgres", "airflow-init"} | workers,
        "PAGE_DB_PASSWORD": {"postgres", "airflow-apiserver"},
        "S3_SECRET_ACCESS_KEY": {"minio-init"} | REMOTE_LOG_HOLDERS,
        "FLOWER_BASIC_AUTH": {"flower"},
    }
    assert workers == WORKERS
    for key, services in expected.items():
        assert services_seeing(env[key], env) == services | {"preflight"}, key
    assert compose(env)["services"]["preflight"]["network_mode"] == "none"


def test_no_secret_is_on_a_command_line_or_in_a_health_check():
    """`ps` and `docker inspect` show commands and health checks: secrets go in the environment or files."""
    env = operator_env()
    secrets_ = {key: value for key, value in env.items() if PLACEHOLDER in env_example().get(key, "")}
    for name, service in compose(env)["services"].items():
        shown = compose_strings({key: service.get(key) or [] for key in ("command", "entrypoint", "healthcheck")})
        leaked = sorted(key for key, value in secrets_.items() if any(value in text for text in shown))
        assert not leaked, f"{name} shows {leaked} on a command line or in its health check"


def test_redis_reads_its_password_from_a_file_only_it_can_read(tmp_path):
    """docker/redis-start.sh with stand-ins for chown and the image's entrypoint (Redis does not run here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "chown").write_text("#!/bin/sh\n")
    (bin_dir / "docker-entrypoint.sh").write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/argv"\n')
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    redis = compose(operator_env())["services"]["redis"]
    env = {**service_env("redis", operator_env()), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "REDIS_CONF": str(tmp_path / "redis.conf")}
    assert redis["entrypoint"] == ["/bin/sh", "/opt/realness/redis-start.sh"]
    assert "./docker/redis-start.sh:/opt/realness/redis-start.sh:ro" in redis["volumes"]

    done = subprocess.run(["sh", str(ROOT / "docker" / "redis-start.sh")], env=env, capture_output=True, text=True,
                          timeout=30)

    assert done.returncode == 0, done.stderr
    password = env["REDISCLI_AUTH"]
    assert (tmp_path / "argv").read_text().split() == ["redis-server", str(tmp_path / "redis.conf")]
    assert (tmp_path / "redis.conf").read_text() == f'requirepass "{password}"\n'
    assert (tmp_path / "redis.conf").stat().st_mode & 0o077 == 0


def test_jwt_issuer_is_set_and_alike_where_tokens_are_signed_and_checked():
    issuers = {name: service_env(name).get("AIRFLOW__API_AUTH__JWT_ISSUER") for name in airflow_services()}
    assert all(issuers.values()), f"jwt_issuer unset in {[name for name, value in issuers.items() if not value]}"
    assert len(set(issuers.values())) == 1


# ---------------------------------------------------------------- what the DAGs need from the deployment

def test_realness_variables_in_the_deployment_are_ones_the_code_reads():
    known = config_variables() | code_variables()
    text = "\n".join(compose_strings(raw_compose()))
    used = set(re.findall(r"\b(REALNESS_[A-Z0-9_]+)", text + ENV_EXAMPLE.read_text()))
    unknown = sorted(used - known)
    assert not unknown, f"nothing in the code reads {unknown} (typo, or a DAG not written yet?)"


def test_queues_the_dags_route_to_are_served_by_workers():
    assert deployment_sets("_QUEUE")
    env = service_env("airflow-worker")
    default_queue = env.get("AIRFLOW__OPERATORS__DEFAULT_QUEUE") or airflow_default("operators", "default_queue")
    served = worker_queues()
    needed = routing("_QUEUE") | {default_queue}
    assert needed <= set().union(*served.values()), f"no worker listens on {needed - set().union(*served.values())}"
    assert any(default_queue in queues for queues in served.values())


def test_pools_the_dags_use_are_named_by_the_deployment():
    from airflow.models.pool import Pool

    assert deployment_sets("_POOL")
    assert routing("_POOL") and Pool.DEFAULT_POOL_NAME not in routing("_POOL"), "TensorFlow tasks would be uncapped"


def test_connections_and_store_point_at_the_deployment_services():
    """The plugin's own load_config(), run in a worker's environment, reaches MinIO and the verdict database."""
    ids = plugin_connection_ids()
    assert {"AWS", "DB", "AZURE"} <= set(ids)
    env = service_env("airflow-worker")
    for kind in ("AWS", "DB"):
        assert env.get(f"AIRFLOW_CONN_{ids[kind].upper()}"), f"no AIRFLOW_CONN_ for the {ids[kind]} connection"
    assert f"AIRFLOW_CONN_{ids['AZURE'].upper()}" in env
    plain = deployed_plugin()["config"]

    bucket = env_example()["S3_BUCKET"]
    assert plain["store"].startswith(f"s3://{bucket}/"), "tasks on different machines need one shared store"
    endpoint = urlsplit(plain["s3"]["endpoint_url"])
    published_minio = [str(port).rsplit(":", 1)[-1] for port in resolve(raw_compose(PUBLISH_FILE), env_example())["services"]["minio"]["ports"]]
    assert endpoint.hostname == "minio" and str(endpoint.port) in published_minio
    minio_init = service_env("minio-init")
    assert (plain["s3"]["access_key_id"], plain["s3"]["secret_access_key"]) == (
        minio_init["S3_ACCESS_KEY_ID"], minio_init["S3_SECRET_ACCESS_KEY"]), "Airflow's key is not the one minio-init creates"

    database = urlsplit(plain["db"])
    postgres = service_env("postgres")
    assert (database.scheme, database.hostname, database.path.lstrip("/")) == (
        "postgresql+psycopg2", "postgres", postgres["VERDICT_DB_NAME"])
    assert (unquote(database.username), unquote(database.password)) == (
        postgres["VERDICT_DB_USER"], postgres["VERDICT_DB_PASSWORD"])
    assert plain["azure"] is False, "Azure Face must be off until AIRFLOW_CONN_AZURE_FACE is set"

    documented = urlsplit(azure_example())
    assert deployed_plugin()["azure"] == {"endpoint": f"https://{documented.hostname}", "key": documented.password}


def test_remote_logs_go_to_the_store_bucket():
    env = service_env("airflow-worker")
    logs = urlsplit(env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"])
    store = urlsplit(env["REALNESS_STORE_URI"])
    assert (logs.scheme, logs.netloc) == (store.scheme, store.netloc)
    assert env["AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID"] == plugin_connection_ids()["AWS"]


_PAGE_PROBE = """
import json
import realness_airflow
c = realness_airflow.load_config()
print("RESULT " + json.dumps({"db": c.resolved_database_url, "store": c.resolved_store_uri,
                              "upload_max_bytes": c.report.upload_max_bytes, "api_url": c.report.airflow_api_url}))
"""


@cache
def page_config() -> dict:
    """What the verdicts page's load_config() gives in the api-server's container."""
    with tempfile.TemporaryDirectory() as home:
        env = {**service_env("airflow-apiserver"), "PATH": os.environ["PATH"], "HOME": home,
               "AIRFLOW_HOME": str(Path(home, "airflow")), "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'plugins'}"}
        done = subprocess.run([sys.executable, "-c", _PAGE_PROBE], env=env, cwd=home, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, f"the verdicts page's configuration fails in the api-server: {done.stderr[-3000:]}"
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))[7:])


def test_verdicts_page_reads_the_verdict_database_with_its_read_only_role():
    """The api-server serves the page: it gets the verdict database, as the page's own role (created by
    docker/postgres/20-...), never the owner's credentials."""
    page = urlsplit(page_config()["db"])
    postgres = service_env("postgres")
    assert (page.scheme, page.hostname, page.path.lstrip("/")) == ("postgresql+psycopg2", "postgres",
                                                                   postgres["VERDICT_DB_NAME"])
    assert (unquote(page.username), unquote(page.password)) == (postgres["PAGE_DB_USER"], postgres["PAGE_DB_PASSWORD"])
    assert page_config()["store"] == deployed_plugin()["config"]["store"], "the page shows the tasks' store"
    assert postgres["PAGE_DB_USER"] not in (postgres["VERDICT_DB_USER"], postgres["ANALYST_DB_USER"])


def test_the_page_reaches_airflows_api_inside_the_api_server_and_users_at_the_base_url():
    """Uploads start their run at REALNESS_REPORT_AIRFLOW_API_URL: the api-server itself, not the
    address the request came through (nginx's). Airflow's own base_url is the address users open."""
    api_port = int(airflow_default("api", "port"))
    api_url = urlsplit(page_config()["api_url"])
    assert (api_url.scheme, api_url.hostname, api_url.port) == ("http", "localhost", api_port)
    env = operator_env()
    base_url = urlsplit(service_env("airflow-apiserver", env)["AIRFLOW__API__BASE_URL"])
    assert base_url.path in ("", "/"), "a path in base_url moves the whole UI under it"
    published = {port.rsplit(":", 2)[1] for port in compose(env)["services"]["nginx"]["ports"]}
    assert str(base_url.port or {"http": 80, "https": 443}[base_url.scheme]) in published
    for name in airflow_services():
        assert service_env(name, env)["AIRFLOW__API__BASE_URL"] == env["AIRFLOW_BASE_URL"], name


# ---------------------------------------------------------------- the image

def requirement_pins(path: Path) -> dict[str, str]:
    """{normalised name: version} of a requirements file's lines (its ``-r`` includes aside); all exact pins."""
    from packaging.utils import canonicalize_name

    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-r "):
            continue
        name, pinned, version = line.partition("==")
        assert pinned and version, f"{path.name}: {line} is not pinned to one version"
        pins[canonicalize_name(name)] = version
    return pins


def installed_requirements(distribution: str):
    """The requirements of an installed distribution that apply here (no extras), as packaging objects."""
    from importlib.metadata import PackageNotFoundError, requires
    from packaging.requirements import Requirement

    try:
        specs = requires(distribution) or []
    except PackageNotFoundError:
        return []
    return [req for req in map(Requirement, specs) if req.marker is None or req.marker.evaluate({"extra": ""})]


def dependency_closure(roots) -> set[str]:
    from packaging.utils import canonicalize_name

    seen, pending = set(), list(roots)
    while pending:
        name = canonicalize_name(pending.pop())
        if name not in seen:
            seen.add(name)
            pending.extend(req.name for req in installed_requirements(name))
    return seen


def imported_distributions() -> dict[str, set[str]]:
    """{top-level module: distributions providing it} for what the deployed code imports outside a
    ``try`` (where it imports optional packages), standard library and its own packages aside."""
    import ast
    from importlib.metadata import packages_distributions
    from packaging.utils import canonicalize_name

    modules = set()
    for folder in ("dags", "plugins", "realness_tasks"):
        for path in (ROOT / folder).rglob("*.py"):
            tree = ast.parse(path.read_text())
            optional = {id(node) for block in ast.walk(tree) if isinstance(block, ast.Try)
                        for statement in block.body for node in ast.walk(statement)}
            for node in ast.walk(tree):
                if id(node) in optional:
                    continue
                if isinstance(node, ast.Import):
                    modules.update(alias.name.split(".")[0] for alias in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    modules.add(node.module.split(".")[0])
    modules -= set(sys.stdlib_module_names) | {"__future__", "realness_tasks", "realness_airflow"}
    providers = packages_distributions()
    unlisted = modules - providers.keys()   # top_level.txt may omit a package (dlib-bin lists only its .so)
    if unlisted:
        from importlib.metadata import distributions

        for dist in distributions():
            for top in {f.parts[0].removesuffix(".py") for f in dist.files or []} & unlisted:
                providers.setdefault(top, []).append(dist.metadata["Name"])
    return {module: {canonicalize_name(name) for name in providers.get(module, [])} for module in modules}


def test_runtime_requirements_are_what_the_code_imports_and_dev_tools_stay_out():
    runtime, development = requirement_pins(RUNTIME_REQUIREMENTS), requirement_pins(DEV_REQUIREMENTS)
    assert "-r requirements.txt" in DEV_REQUIREMENTS.read_text().splitlines(), "the dev environment includes the runtime set"
    assert not runtime.keys() & development.keys(), f"pinned twice: {sorted(runtime.keys() & development.keys())}"
    installed_by_image = dependency_closure(runtime)
    for tool in ("pytest", "moto", "cfn-lint", "docker"):
        assert tool in development and tool not in installed_by_image, f"{tool} would be installed in the image"

    missing = {module: names for module, names in imported_distributions().items() if not names & installed_by_image}
    assert not missing, f"the code imports {missing}, which the runtime requirements do not bring"


def test_runtime_pins_are_installed_here_and_agree_with_what_airflow_and_its_providers_require():
    """The development environment tests the versions the image runs, and no package of the runtime
    set (Airflow and its providers above all) requires another version of a pinned one."""
    from importlib.metadata import version

    runtime = requirement_pins(RUNTIME_REQUIREMENTS)
    assert {name: version(name) for name in runtime} == runtime
    for distribution in dependency_closure(runtime):
        for req in installed_requirements(distribution):
            pinned = runtime.get(req.name.lower().replace("_", "-"))
            if pinned:
                assert req.specifier.contains(pinned, prereleases=True), f"{distribution} requires {req}, runtime pins {pinned}"


@pytest.mark.slow
def test_runtime_requirements_resolve_from_the_package_index(tmp_path):
    """pip resolves requirements.txt from scratch, as the image build does, keeping every pin
    (Airflow's own version above all). Airflow's constraints file is not reachable here (it lives on
    GitHub, not on the package index), so this stands in for installing against it."""
    index = subprocess.run([sys.executable, "-m", "pip", "index", "versions", "apache-airflow"],
                           capture_output=True, text=True, timeout=120)
    if index.returncode != 0:
        pytest.skip(f"the package index is not reachable: {index.stderr.strip()[-300:]}")
    report = tmp_path / "report.json"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                           "--report", str(report), "-r", str(RUNTIME_REQUIREMENTS)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    resolved = {item["metadata"]["name"].lower().replace("_", "-"): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    runtime = requirement_pins(RUNTIME_REQUIREMENTS)
    assert {name: resolved.get(name) for name in runtime} == runtime


def test_dockerfile_installs_the_runtime_requirements_on_the_pinned_airflow():
    pin = requirement_pins(RUNTIME_REQUIREMENTS)["apache-airflow"]
    base = next(rest for keyword, rest in dockerfile_instructions() if keyword == "FROM")
    match = re.fullmatch(r"apache/airflow:(?P<airflow>[\w.]+)-python(?P<python>\d+\.\d+)(@sha256:[0-9a-f]{64})?", base)
    assert match, f"base image {base} is not an official apache/airflow image"
    assert match["airflow"] == pin, f"image has Airflow {match['airflow']}, requirements.txt pins {pin}"
    assert match["python"] == f"{sys.version_info.major}.{sys.version_info.minor}", "requirements were frozen on another Python"

    requirements = dockerfile_copies()["requirements.txt"]
    assert DEV_REQUIREMENTS.name not in dockerfile_copies(), "test tools stay out of the image"
    installs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "pip install" in rest]
    assert any(re.search(rf"-r\s+{re.escape(requirements)}(\s|$)", rest) and '"apache-airflow==${AIRFLOW_VERSION}"' in rest
               for rest in installs), "pip must install the requirements with the image's own Airflow pinned"
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1] == "airflow", "the official image wants pip and the services to run as airflow"


def test_dockerfile_puts_the_code_where_airflow_and_python_find_it():
    copies = dockerfile_copies()
    assert copies["dags"] == f"{OPT_AIRFLOW}/dags"
    assert copies["plugins"] == f"{OPT_AIRFLOW}/plugins"
    library = Path(copies["realness_tasks"]).parent
    assert Path(copies["sql"]) == library / "sql", "realness_tasks finds its migrations at ../sql"
    environment = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "ENV")
    pythonpath = re.search(r"PYTHONPATH=(\S+)", environment).group(1).split(":")
    assert str(library) in pythonpath

    for name in airflow_services():  # a volume over the baked-in code would hide it
        for volume in compose()["services"][name].get("volumes", []):
            target = volume.split(":")[1]
            assert target not in (copies["dags"], copies["plugins"]), f"{name} mounts over {target}"


def build_context_excludes(path: str) -> bool:
    """Whether the root .dockerignore keeps ``path`` out of the build context, as Docker decides: the last
    pattern that matches the path or a folder above it wins."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    parts = path.strip("/").split("/")
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


def test_build_context_keeps_what_the_dockerfile_copies_and_nothing_else():
    """One ignore file, at the root, which BuildKit and the legacy builder both read."""
    assert not list((ROOT / "docker").glob("*.dockerignore")), "a Dockerfile-specific file would shadow the root one"
    for source in dockerfile_copies():
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not build_context_excludes(source), f"{source} is excluded from the build context"
    for private in (".env", "airflow.env", ".venv/bin/python", "out/report.html", ".realness/realness.db",
                    ".realness-demo/store", "test-artefacts/verdicts-page.png", "tests/test_db.py", ".git/config",
                    "docker/tls/privkey.pem", "realness_tasks/__pycache__/db.cpython-311.pyc"):
        assert build_context_excludes(private), f"{private} would be sent to the builder"


def realness_imports(module: str) -> set[str]:
    """The realness_tasks modules ``module`` imports, directly or not (``realness_tasks/x.py`` paths)."""
    import ast

    seen, pending = set(), [module]
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse((ROOT / path).read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
                [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            pending += [name.replace(".", "/") + ".py" for name in names
                        if name.startswith("realness_tasks.") and (ROOT / (name.replace(".", "/") + ".py")).exists()]
    return seen | {"realness_tasks/__init__.py"}


def test_code_changes_do_not_rerun_the_mtcnn_conversion():
    """The conversion (TensorFlow, minutes) is a layer that only the modules it imports come before."""
    steps = dockerfile_instructions()
    convert = next(i for i, (keyword, rest) in enumerate(steps) if keyword == "RUN" and "realness_tasks.mtcnn_lite" in rest)
    copied_before = set()
    for keyword, rest in steps[:convert]:
        if keyword == "COPY":
            copied_before.update(arg.rstrip("/") for arg in rest.split()[:-1] if not arg.startswith("--"))
    assert "realness_tasks" not in copied_before, "COPY realness_tasks/ before the conversion reruns it on every change"
    assert {path for path in copied_before if path.startswith("realness_tasks/")} == realness_imports(
        "realness_tasks/mtcnn_lite.py")
    assert any(keyword == "COPY" and rest.split()[-2].rstrip("/") == "realness_tasks"
               for keyword, rest in steps[convert:]), "the whole package is copied after the conversion"


# ---------------------------------------------------------------- ports, nginx, TLS, mounts

def published_ports(env: dict[str, str]) -> dict[str, list[str]]:
    return {name: [str(port) for port in service.get("ports", [])]
            for name, service in compose(env)["services"].items() if name in default_services()}


def test_only_nginx_publishes_a_port_and_on_the_configured_address():
    env = {**operator_env(), "AIRFLOW_HTTP_ADDRESS": "10.0.0.5"}
    published = {name: ports for name, ports in published_ports(env).items() if ports}
    assert list(published) == ["nginx"], f"a plain docker compose up publishes {published}"
    assert all(port.startswith("10.0.0.5:") for port in published["nginx"]), "nginx must not listen on every interface"
    assert {port.rsplit(":", 1)[1] for port in published["nginx"]} == {"80", "443"}
    flower = compose(env)["services"]["flower"]
    assert flower["profiles"] == ["flower"] and all(not port.startswith("0.0.0.0") for port in flower["ports"])


def test_publish_file_opens_the_stores_on_the_publish_address_only():
    env = {**operator_env(), "PUBLISH_ADDRESS": "10.0.0.5"}
    publish = resolve(raw_compose(PUBLISH_FILE), env)["services"]
    assert set(publish) == {"postgres", "redis", "minio"}
    ports = {name: sorted(port.split(":", 1)[1] for port in service["ports"]) for name, service in publish.items()}
    assert ports == {"postgres": ["5432:5432"], "redis": ["6379:6379"], "minio": ["9000:9000", "9001:9001"]}
    assert all(port.startswith("10.0.0.5:") for service in publish.values() for port in service["ports"])
    with pytest.raises(KeyError, match="PUBLISH_ADDRESS"):
        resolve(raw_compose(PUBLISH_FILE), {key: value for key, value in env.items() if key != "PUBLISH_ADDRESS"})


def nginx_site(tmp_path, with_certificate: bool) -> str:
    """The server blocks docker/nginx/start.sh picks, run with the container's paths under tmp_path."""
    tls = tmp_path / "tls"
    tls.mkdir()
    if with_certificate:
        (tls / "fullchain.pem").write_text("certificate")
        (tls / "privkey.pem").write_text("key")
    site = tmp_path / "default.conf"
    env = {**service_env("nginx"), "PATH": os.environ["PATH"], "NGINX_TLS_DIR": str(tls), "NGINX_SITE_CONF": str(site)}
    command = command_of("nginx")
    assert command[:2] == ["/bin/sh", "/etc/nginx/realness/start.sh"] and command[2] == "nginx"
    done = subprocess.run(["sh", str(NGINX_DIR / "start.sh"), "true"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return site.read_text()


def included(conf: str) -> str:
    """A server configuration with its include lines of docker/nginx/ replaced by the files' text."""
    return re.sub(r"include /etc/nginx/realness/([\w.]+);", lambda m: included((NGINX_DIR / m.group(1)).read_text()), conf)


def test_nginx_proxies_to_the_api_server():
    nginx = compose()["services"]["nginx"]
    assert "./docker/nginx:/etc/nginx/realness:ro" in nginx["volumes"]
    conf = included((NGINX_DIR / "http.conf").read_text())
    variables = dict(re.findall(r"set \$(\w+)\s+([^;]+);", conf))
    target = re.search(r"proxy_pass\s+([^;]+);", conf).group(1)
    upstream = urlsplit(variables.get(target.lstrip("$"), target))
    api_service = next(name for name in airflow_services() if command_of(name)[:1] == ["api-server"])
    assert (upstream.hostname, upstream.port) == (api_service, int(airflow_default("api", "port")))
    assert re.search(r"listen\s+80;", conf) and any(port.endswith(":80") for port in nginx["ports"])
    health = next(test for test in nginx["healthcheck"]["test"] if test.startswith("http"))
    assert f"location = {urlsplit(health).path}" in conf


def test_nginx_serves_plain_http_until_a_certificate_is_mounted(tmp_path):
    site = nginx_site(tmp_path, with_certificate=False)
    limit = re.search(r"client_max_body_size (\d+);", site).group(1)
    assert site == (NGINX_DIR / "http.conf").read_text().replace("@CLIENT_MAX_BODY_SIZE@", limit)
    assert "${TLS_CERT_DIR:-./docker/tls}:/etc/nginx/tls:ro" in raw_compose()["services"]["nginx"]["volumes"]
    assert (ROOT / "docker" / "tls").is_dir()


def test_nginx_serves_https_with_a_mounted_certificate(tmp_path):
    site = nginx_site(tmp_path, with_certificate=True)
    assert "@" not in site.replace("$request_uri", ""), "a placeholder was left unreplaced"
    conf = included(site)
    https_port = service_env("nginx")["AIRFLOW_HTTPS_PORT"]
    assert re.search(r"listen\s+443 ssl;", conf)
    assert "ssl_certificate /etc/nginx/tls/fullchain.pem;" in conf and "ssl_certificate_key /etc/nginx/tls/privkey.pem;" in conf
    assert f"return 301 https://$host:{https_port}$request_uri;" in conf
    assert conf.count("proxy_pass") == 1, "only the HTTPS server proxies; port 80 redirects"
    assert f":{https_port}:443" in " ".join(compose()["services"]["nginx"]["ports"])


@pytest.mark.parametrize("with_certificate", [False, True])
def test_nginx_lets_through_every_upload_the_verdicts_page_accepts(tmp_path, with_certificate):
    """One setting, REALNESS_REPORT_UPLOAD_MAX_BYTES, gives the page's limit and nginx's: nginx passes
    what the page accepts (the file and the form's other fields), so the page, not nginx's bare 413,
    answers a file that is too large."""
    from realness_tasks.verdicts_page import UPLOAD_CHUNK

    conf = included(nginx_site(tmp_path, with_certificate))
    limits = re.findall(r"client_max_body_size\s+([^;]+);", conf)
    page_limit = page_config()["upload_max_bytes"]
    assert limits and all(limit.isdigit() for limit in limits), limits
    assert {int(limit) for limit in limits} == {page_limit + UPLOAD_CHUNK}
    assert page_limit == int(service_env("nginx")["REALNESS_REPORT_UPLOAD_MAX_BYTES"])


def test_api_server_trusts_forwarded_headers_from_nginx_only():
    from uvicorn.middleware.proxy_headers import _TrustedHosts

    resolved = compose(operator_env())
    services, networks = resolved["services"], resolved["networks"]
    subnet = networks["proxy"]["ipam"]["config"][0]["subnet"]
    on_proxy = {name for name, service in services.items() if "proxy" in service.get("networks", [])}
    assert on_proxy == {"nginx", "airflow-apiserver"}
    trusted = _TrustedHosts(service_env("airflow-apiserver", operator_env())["FORWARDED_ALLOW_IPS"])
    assert not trusted.always_trust
    hosts = list(ipaddress.ip_network(subnet).hosts())
    assert str(hosts[0]) in trusted and str(hosts[-1]) in trusted, "nginx gets any address of the proxy subnet"
    assert "10.0.0.7" not in trusted and "172.17.0.2" not in trusted


def test_api_server_health_check_asks_the_monitor_endpoint():
    from airflow.api_fastapi.core_api.routes.public import public_router

    test = compose()["services"]["airflow-apiserver"]["healthcheck"]["test"]
    path = urlsplit(next(part for part in test if part.startswith("http"))).path
    routes = {route.path for route in public_router.routes}
    assert path == "/api/v2/monitor/health" and path in routes, "the health check must touch the metadata database"


def depends_on_closure(name: str) -> set[str]:
    """The services ``docker compose run`` / ``up`` starts before ``name``."""
    services = raw_compose()["services"]
    found, pending = set(), list(services[name].get("depends_on", {}))
    while pending:
        other = pending.pop()
        if other not in found:
            found.add(other)
            pending.extend(services[other].get("depends_on", {}))
    return found


def test_a_one_off_cli_command_does_not_run_airflow_init_again():
    """airflow-init resets the admin's password and migrates: `docker compose run airflow-cli ...` must not run it."""
    assert "airflow-init" not in depends_on_closure("airflow-cli")
    assert {"postgres", "redis"} <= depends_on_closure("airflow-cli")
    assert "airflow-init" in depends_on_closure("airflow-scheduler"), "the long-running services still wait for it"


def test_every_named_volume_is_used_and_the_workers_state_is_on_one():
    resolved = compose(operator_env())
    mounted: dict[str, set[str]] = {}
    for name, service in resolved["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if not source.startswith(("./", "/", "$")):
                mounted.setdefault(source, set()).add(name)
                assert source in resolved["volumes"], f"{name} mounts {source}, which is not declared"
    unused = sorted(set(resolved["volumes"]) - set(mounted))
    assert not unused, f"declared but mounted by no service: {unused}"
    for name in worker_queues():
        env = service_env(name)
        targets = {volume.split(":")[1] for volume in resolved["services"][name]["volumes"]}
        assert env.get("REALNESS_HOME") in targets, f"{name}: REALNESS_HOME (scratch, Azure cache) is in the container layer"


def duration_s(value: str) -> float:
    """A compose duration (``1h30m``, ``90s``, ``500ms``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    assert parts and "".join(number + unit for number, unit in parts) == value, f"not a duration: {value}"
    return sum(float(number) * units[unit] for number, unit in parts)


def test_workers_shut_down_warmly_with_time_for_their_running_tasks():
    """docker stop sends SIGTERM to Celery's main process alone (DUMB_INIT_SETSID=0): a warm shutdown
    that waits for the running tasks, for stop_grace_period (Docker's default, 10 s, kills them)."""
    services = compose()["services"]
    for name in worker_queues():
        assert service_env(name)["DUMB_INIT_SETSID"] == "0", name
        assert duration_s(services[name]["stop_grace_period"]) >= 30 * 60, name


def test_paths_in_deploy_md_settings_exist_in_the_containers():
    """A file a setting in docs/deploy.md points to lies on a volume of the workers, where it can be put."""
    doc = (ROOT / "docs" / "deploy.md").read_text()
    paths = re.findall(r"^REALNESS_\w+=(/\S+)$", doc, re.M)
    assert paths
    targets = {volume.split(":")[1] for name in worker_queues() for volume in compose()["services"][name]["volumes"]}
    for path in paths:
        assert any(path.startswith(target + "/") for target in targets), f"docs/deploy.md: no volume holds {path}"


def test_files_mounted_from_the_repository_exist():
    for name, service in compose(operator_env())["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def test_shell_scripts_keep_lf_line_endings_on_every_checkout():
    scripts = subprocess.run(["git", "ls-files", "*.sh", "docker"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    assert any(path.endswith(".sh") for path in scripts)
    attributes = subprocess.run(["git", "check-attr", "eol", "--", *scripts], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.splitlines()
    not_lf = [line for line in attributes if not line.endswith(": eol: lf")]
    assert not not_lf, not_lf


def test_images_are_pinned_and_minio_by_digest():
    resolved = compose(operator_env())["services"]
    for name, service in resolved.items():
        if "build" not in service:
            assert ":" in service["image"].rsplit("/", 1)[-1] and not service["image"].endswith(":latest"), name
    for name in ("minio", "minio-init"):  # MinIO publishes no more images: a tag could be re-pointed, a digest not
        assert re.search(r":RELEASE\.[\dTZ-]+@sha256:[0-9a-f]{64}$", resolved[name]["image"]), name
        assert resolved[name]["image"] == env_example()["MINIO_IMAGE" if name == "minio" else "MINIO_MC_IMAGE"]


def test_env_example_lists_every_variable_compose_needs_and_nothing_else():
    # What compose interpolates (values, not comments), in both compose files.
    text = "\n".join(compose_strings(raw_compose()) + compose_strings(raw_compose(PUBLISH_FILE)))
    assert not re.findall(r"\$(?![{$])", text.replace("$$", "")), "use ${VAR} (or $$ for a literal $)"
    references = _INTERPOLATION.findall(text)
    required = {name for name, operator, _ in references if name and operator in ("", "?", ":?")}
    example = env_example()
    assert not sorted(required - set(example)), f".env.example lacks {sorted(required - set(example))}"

    referenced = {name for name, _, _ in references if name}
    stale = sorted(key for key in example if key not in referenced and key not in config_variables() | code_variables())
    assert not stale, f".env.example sets {stale}, which nothing uses"
    compose(operator_env())  # interpolates without error once filled in


def test_secrets_in_env_example_are_placeholders():
    secret_keys = [key for key in env_example() if re.search(r"PASSWORD|SECRET|FERNET|AUTH", key)]
    assert secret_keys
    for key in secret_keys:
        assert PLACEHOLDER in env_example()[key], f"{key} in .env.example must be a {PLACEHOLDER} placeholder"


# ---------------------------------------------------------------- start-up scripts, run

def test_minio_init_provisions_the_bucket_and_key_airflow_uses(tmp_path):
    """docker/minio-init.sh with a recording stand-in for mc (MinIO's client does not run here)."""
    log = tmp_path / "mc.log"
    fake = tmp_path / "bin" / "mc"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\n')
    fake.chmod(0o755)
    filled = operator_env()
    env = service_env("minio-init", filled)
    env["PATH"] = f"{fake.parent}{os.pathsep}{os.environ['PATH']}"

    done = subprocess.run(["sh", str(ROOT / "docker" / "minio-init.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    worker = service_env("airflow-worker", filled)
    aws = json.loads(worker["AIRFLOW_CONN_AWS_DEFAULT"])
    bucket = urlsplit(worker["REALNESS_STORE_URI"]).netloc
    assert calls[0].split()[:3] == ["alias", "set", "bundled"] and calls[0].split()[3] == aws["extra"]["endpoint_url"]
    assert f"mb --ignore-existing bundled/{bucket}" in calls
    assert f"admin user add bundled {aws['login']} {aws['password']}" in calls
    assert f"admin policy attach bundled readwrite --user {aws['login']}" in calls

    log.unlink()
    env["S3_ENDPOINT_URL"] = "https://s3.eu-west-1.amazonaws.com"
    done = subprocess.run(["sh", str(ROOT / "docker" / "minio-init.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not log.exists(), "with AWS S3 the bundled MinIO is left alone"


def run_preflight(env: dict[str, str]) -> subprocess.CompletedProcess:
    container_env = {**service_env("preflight", env), "PATH": os.environ["PATH"]}
    return subprocess.run(["bash", str(ROOT / "docker" / "preflight.sh")], env=container_env, capture_output=True,
                          text=True, timeout=60)


def test_preflight_refuses_every_placeholder_secret_of_env_example():
    placeholders = sorted(key for key, value in env_example().items() if PLACEHOLDER in value)
    done = run_preflight(env_example())
    assert done.returncode == 1
    named = set(re.search(r"placeholder from \.env\.example: (.*)", done.stderr).group(1).split())
    assert named == set(placeholders), done.stderr
    assert run_preflight(operator_env()).returncode == 0, "a filled-in .env must pass"


def test_preflight_runs_before_any_service_stores_a_secret():
    services = raw_compose()["services"]
    assert services["preflight"]["entrypoint"][-1] == "/opt/realness/preflight.sh"
    for name in ("postgres", "minio", "redis"):
        assert services[name]["depends_on"]["preflight"] == {"condition": "service_completed_successfully"}, name

    def waits_for_preflight(name: str) -> bool:
        depends_on = services[name].get("depends_on", {})
        return "preflight" in depends_on or any(waits_for_preflight(other) for other in depends_on)

    stateful = [name for name, service in services.items()
                if any(not volume.startswith("./") for volume in service.get("volumes", []))]
    assert "postgres" in stateful and "minio" in stateful
    assert all(waits_for_preflight(name) for name in stateful), "a service with a volume could start before the check"


def run_postgres_init(admin_url, names: dict[str, str], env: dict[str, str], scripts: str = "*.sh") -> None:
    """The scripts of docker/postgres/ in order, as PostgreSQL's entrypoint runs them, as the superuser."""
    postgres_env = {**service_env("postgres", env), **names}
    postgres_env.update(PATH=os.environ["PATH"], PGHOST=admin_url.host or "127.0.0.1", PGPORT=str(admin_url.port or 5432),
                        PGPASSWORD=admin_url.password or "", POSTGRES_USER=admin_url.username, POSTGRES_DB=admin_url.database)
    for script in sorted((ROOT / "docker" / "postgres").glob(scripts)):
        done = subprocess.run(["bash", str(script)], env=postgres_env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"{script.name}: {done.stderr}"


def run_airflow_init(init_env: dict[str, str], tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(ROOT / "docker" / "airflow-init.sh")], env=init_env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


def admin_password_matches(metadata, username: str, password: str) -> bool:
    import sqlalchemy as sa
    from werkzeug.security import check_password_hash

    with metadata.connect() as conn:
        stored, roles = conn.execute(sa.text(
            "SELECT u.password, array_agg(r.name) FROM ab_user u JOIN ab_user_role ur ON ur.user_id = u.id "
            "JOIN ab_role r ON r.id = ur.role_id WHERE u.username = :name GROUP BY u.password"), {"name": username}).one()
    assert roles == ["Admin"] and password not in stored, "the admin must be an FAB Admin with a hashed password"
    return check_password_hash(stored, password)


def test_startup_creates_databases_roles_pools_and_admin(tmp_path, postgres_server_url):
    """The scripts of docker/postgres/, then docker/airflow-init.sh twice (the second time after
    the admin's password changed in .env), against the local PostgreSQL server, connecting as the
    roles the deployment gives Airflow and the tasks."""
    import sqlalchemy as sa

    from realness_tasks.db import Database

    admin_url = sa.engine.make_url(postgres_server_url)
    env = operator_env()
    suffix = uuid.uuid4().hex[:8]
    names = {key: f"{env[key]}_{suffix}" for key in ("AIRFLOW_DB_NAME", "AIRFLOW_DB_USER", "VERDICT_DB_NAME",
                                                      "VERDICT_DB_USER", "ANALYST_DB_USER", "PAGE_DB_USER",
                                                      "CELERY_DB_NAME", "CELERY_DB_USER")}
    roles = ("AIRFLOW_DB_USER", "VERDICT_DB_USER", "ANALYST_DB_USER", "PAGE_DB_USER", "CELERY_DB_USER")
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        run_postgres_init(admin_url, names, env)
        with admin.connect() as conn:
            superusers = set(conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolsuper OR rolcreaterole OR rolcreatedb")).scalars())
        assert not superusers & {names[role] for role in roles}

        init_env = service_env("airflow-init", env)
        metadata_url = admin_url.set(username=names["AIRFLOW_DB_USER"], password=None, database=names["AIRFLOW_DB_NAME"])
        verdict_conn = json.loads(init_env["AIRFLOW_CONN_REALNESS_DB"])
        verdict_conn.update(host=admin_url.host or "127.0.0.1", port=admin_url.port or 5432,
                            login=names["VERDICT_DB_USER"], schema=names["VERDICT_DB_NAME"])
        init_env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path),
            AIRFLOW_HOME=str(tmp_path), PYTHONPATH=str(ROOT), AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=metadata_url.render_as_string(hide_password=False),
            AIRFLOW_CONN_REALNESS_DB=json.dumps(verdict_conn))
        run_airflow_init(init_env, tmp_path)

        metadata = sa.create_engine(metadata_url)
        with metadata.connect() as conn:
            pools = dict(conn.execute(sa.text("SELECT pool, slots FROM slot_pool")).all())
        for pool in routing("_POOL"):
            assert pools.get(pool) == int(init_env["HEAVY_POOL_SLOTS"]), f"pool {pool} not created: {pools}"
        assert admin_password_matches(metadata, init_env["AIRFLOW_ADMIN_USER"], init_env["AIRFLOW_ADMIN_PASSWORD"])

        init_env["AIRFLOW_ADMIN_PASSWORD"] = secrets.token_hex(16)  # changed in .env, then docker compose up again
        run_airflow_init(init_env, tmp_path)
        assert admin_password_matches(metadata, init_env["AIRFLOW_ADMIN_USER"], init_env["AIRFLOW_ADMIN_PASSWORD"])
        metadata.dispose()

        verdict_url = admin_url.set(database=names["VERDICT_DB_NAME"])
        owner = sa.create_engine(verdict_url.set(username=names["VERDICT_DB_USER"], password=None))
        with owner.connect() as conn:
            applied = {row[0] for row in conn.execute(sa.text("SELECT version FROM schema_migrations"))}
            owners = set(conn.execute(sa.text("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars())
            relations = list(conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).scalars())  # views too
        owner.dispose()
        assert applied == {path.stem for path in (ROOT / "sql" / "migrations").glob("*.sql")}
        assert owners == {names["VERDICT_DB_USER"]}

        for reader in ("ANALYST_DB_USER", "PAGE_DB_USER"):   # SELECT on every table and view, nothing else
            engine = sa.create_engine(verdict_url.set(username=names[reader], password=None))
            with engine.connect() as conn:
                for relation in relations:
                    conn.execute(sa.text(f'SELECT count(*) FROM "{relation}"')).scalar_one()
            with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
                conn.execute(sa.text("SET TRANSACTION READ WRITE"))   # past the session's read-only default
                conn.execute(sa.text("INSERT INTO schema_migrations (version) VALUES ('reader-write')"))
            engine.dispose()
        page = Database(verdict_url.set(username=names["PAGE_DB_USER"], password=None).render_as_string(False),
                        migrate=False)   # what the verdicts page opens
        assert page.query("SELECT COUNT(*) AS n FROM latest_verdicts") == [{"n": 0}]
        page.dispose()

        celery = sa.create_engine(admin_url.set(username=names["CELERY_DB_USER"], password=None,
                                                database=names["CELERY_DB_NAME"]))
        with celery.begin() as conn:   # Celery's result backend creates its own tables
            conn.execute(sa.text("CREATE TABLE celery_taskmeta_probe (id INT)"))
        celery.dispose()
        with pytest.raises(sa.exc.DBAPIError):
            sa.create_engine(metadata_url.set(username=names["CELERY_DB_USER"])).connect()

        run_postgres_init(admin_url, names, env, scripts="20-*.sh")   # an existing volume runs it by hand: it converges
    finally:
        with admin.connect() as conn:
            for database in (names["VERDICT_DB_NAME"], names["AIRFLOW_DB_NAME"], names["CELERY_DB_NAME"]):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            for role in reversed(roles):
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_services_running_realness_code_require_exactly_the_connections_they_are_given():
    """A connection the Task SDK cannot find is then an error (not a silent local default), and no
    service requires one it does not receive."""
    for name in ("airflow-worker", "airflow-worker-training", "airflow-apiserver", "airflow-init"):
        env = service_env(name)
        required = [c for c in env.get("REALNESS_REQUIRED_CONNECTIONS", "").split(",") if c]
        database = env.get("REALNESS_DB_CONN_ID", plugin_connection_ids()["DB"])
        assert database in required, f"{name} does not require its verdict database connection {database}"
        for conn_id in required:
            assert env.get(f"AIRFLOW_CONN_{conn_id.upper()}"), f"{name} requires {conn_id} but is not given it"
