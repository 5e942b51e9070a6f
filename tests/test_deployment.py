"""The deployment files (docker-compose.yml, docker/, .env.example) agree with the code they deploy.

Docker does not run here, so the compose file is read the way compose reads it: YAML with merge
keys, then ``${VAR}`` interpolated from ``.env`` (an operator's copy of ``.env.example``). Expected
values come from the code: the Airflow pin in requirements.txt, the settings in
``realness_tasks/config.py``, the variables and connection ids the DAGs and the plugin read, and
Airflow's own configuration schema. The start-up scripts under docker/ run for real where they can:
the PostgreSQL init script and airflow-init against the local PostgreSQL server.
"""

from __future__ import annotations

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
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
OPT_AIRFLOW = "/opt/airflow"  # AIRFLOW_HOME of the official image
PLACEHOLDER = "change-me"

AIRFLOW_COMPONENTS = ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                      "airflow-triggerer", "airflow-worker", "airflow-init")
SUPPORT_SERVICES = ("postgres", "redis", "minio", "minio-init", "nginx")

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
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


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
    """The environment a service's container starts with: its env_file (.env), then ``environment``."""
    env = env_example() if env is None else env
    service = compose(env)["services"][name]
    values: dict[str, str] = {}
    env_files = service.get("env_file", [])
    for env_file in [env_files] if isinstance(env_files, str) else env_files:
        assert env_file == ".env", f"{name} reads {env_file}; the deployment's settings live in .env"
        values.update(env)
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    values.update({key: "" if value is None else str(value) for key, value in environment.items()})
    return values


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


def test_every_airflow_service_runs_the_image_built_from_the_dockerfile():
    resolved = compose()
    common = resolved["x-airflow-common"]
    assert (ROOT / common["build"]["context"] / common["build"]["dockerfile"]).resolve() == DOCKERFILE
    for name in airflow_services():
        service = resolved["services"][name]
        assert service["image"] == common["image"], name
        assert service["build"] == common["build"], name


def test_airflow_runs_celery_on_the_compose_redis_and_postgres():
    postgres = service_env("postgres")
    redis_command = command_of("redis")
    redis_password = redis_command[redis_command.index("--requirepass") + 1]
    for name in airflow_services():
        env = service_env(name)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name

        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379), name
        assert unquote(broker.password) == redis_password, f"{name}: broker password is not Redis's"

        for key, scheme in (("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql+psycopg2"),
                            ("AIRFLOW__CELERY__RESULT_BACKEND", "db+postgresql")):
            url = urlsplit(env[key])
            assert (url.scheme, url.hostname) == (scheme, "postgres"), f"{name} {key}"
            assert (unquote(url.username), unquote(url.password), url.path.lstrip("/")) == (
                postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"]), f"{name} {key}"


def test_every_airflow_setting_in_compose_is_a_real_airflow_option():
    description = airflow_config_description()
    for name in airflow_services():
        for key in service_env(name):
            if key.startswith("AIRFLOW__"):
                section, option = key[len("AIRFLOW__"):].lower().split("__", 1)
                assert option in description.get(section, {}).get("options", {}), f"{name}: {key} is no Airflow option"


def test_execution_api_and_shared_secrets_are_set_for_every_airflow_component():
    api_port = int(airflow_default("api", "port"))
    api_service = next(name for name in airflow_services() if command_of(name)[:1] == ["api-server"])
    assert str(api_port) in [str(port) for port in compose()["services"][api_service]["expose"]]
    shared: dict[str, set[str]] = {}
    for name in airflow_services():
        env = service_env(name)
        url = urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert (url.hostname, url.port, url.path) == (api_service, api_port, "/execution/"), name
        for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY"):
            assert env.get(key), f"{name} has no {key}"
            shared.setdefault(key, set()).add(env[key])
    assert all(len(values) == 1 for values in shared.values()), "components disagree on a shared secret"


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
    minio_ports = [str(port).rsplit(":", 1)[-1] for port in compose()["services"]["minio"]["ports"]]
    assert endpoint.hostname == "minio" and str(endpoint.port) in minio_ports
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


# ---------------------------------------------------------------- the image

def test_dockerfile_installs_the_pinned_requirements_on_the_pinned_airflow():
    pin = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    base = next(rest for keyword, rest in dockerfile_instructions() if keyword == "FROM")
    match = re.fullmatch(r"apache/airflow:(?P<airflow>[\w.]+)-python(?P<python>\d+\.\d+)", base)
    assert match, f"base image {base} is not an official apache/airflow image"
    assert match["airflow"] == pin, f"image has Airflow {match['airflow']}, requirements.txt pins {pin}"
    assert match["python"] == f"{sys.version_info.major}.{sys.version_info.minor}", "requirements were frozen on another Python"

    requirements = dockerfile_copies()["requirements.txt"]
    installs = [rest for keyword, rest in dockerfile_instructions() if keyword == "RUN" and "pip install" in rest]
    assert any(re.search(rf"-r\s+{re.escape(requirements)}(\s|$)", rest) for rest in installs)
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


def test_build_context_keeps_what_the_dockerfile_copies():
    patterns = [line.strip() for line in (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert "*" in patterns, "the build context should exclude everything not copied (.venv is huge)"
    for source in dockerfile_copies():
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        included = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            if fnmatch(source, pattern.lstrip("!").rstrip("/")):
                included = negated
        assert included, f"{source} is excluded from the build context"


# ---------------------------------------------------------------- nginx, mounts, .env

def test_nginx_proxies_to_the_api_server():
    conf = (ROOT / "docker" / "nginx.conf").read_text()
    variables = dict(re.findall(r"set \$(\w+)\s+([^;]+);", conf))
    target = re.search(r"proxy_pass\s+([^;]+);", conf).group(1)
    upstream = urlsplit(variables.get(target.lstrip("$"), target))
    api_service = next(name for name in airflow_services() if command_of(name)[:1] == ["api-server"])
    assert (upstream.hostname, upstream.port) == (api_service, int(airflow_default("api", "port")))

    nginx = compose()["services"]["nginx"]
    assert "./docker/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in nginx["volumes"]
    listen = re.search(r"listen\s+(\d+);", conf).group(1)
    assert any(str(port).endswith(f":{listen}") for port in nginx["ports"])


def test_files_mounted_from_the_repository_exist():
    for name, service in raw_compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"


def test_env_example_lists_every_variable_compose_needs_and_nothing_else():
    text = "\n".join(compose_strings(raw_compose()))  # what compose interpolates: values, not comments
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
    secret_keys = [key for key in env_example() if re.search(r"PASSWORD|SECRET|FERNET", key)]
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


def test_airflow_init_refuses_placeholder_secrets(tmp_path):
    env = service_env("airflow-init")
    left = sorted(key for key, value in env.items() if PLACEHOLDER in value)
    env.update(PATH=os.environ["PATH"], HOME=str(tmp_path))
    done = subprocess.run(["bash", str(ROOT / "docker" / "airflow-init.sh")], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 1
    assert left and all(key in done.stderr for key in left), done.stderr
    assert "migrat" not in done.stdout.lower(), "it must stop before touching the database"


def run_verdict_db_init(admin_url, names: dict[str, str], env: dict[str, str]) -> None:
    postgres_env = {**service_env("postgres", env), **names}
    postgres_env.update(PATH=os.environ["PATH"], PGHOST=admin_url.host or "127.0.0.1", PGPORT=str(admin_url.port or 5432),
                        PGPASSWORD=admin_url.password or "", POSTGRES_USER=admin_url.username, POSTGRES_DB=admin_url.database)
    done = subprocess.run(["bash", str(ROOT / "docker" / "postgres" / "10-verdict-db.sh")], env=postgres_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_startup_creates_verdict_database_pools_and_admin(tmp_path, postgres_server_url, postgres_url):
    """docker/postgres/10-verdict-db.sh, then docker/airflow-init.sh, against the local PostgreSQL server."""
    import sqlalchemy as sa

    admin_url = sa.engine.make_url(postgres_server_url)
    env = operator_env()
    suffix = uuid.uuid4().hex[:8]
    names = {key: f"{env[key]}_{suffix}" for key in ("VERDICT_DB_NAME", "VERDICT_DB_USER", "ANALYST_DB_USER")}
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        run_verdict_db_init(admin_url, names, env)

        init_env = service_env("airflow-init", env)
        verdict_conn = json.loads(init_env["AIRFLOW_CONN_REALNESS_DB"])
        verdict_conn.update(host=admin_url.host or "127.0.0.1", port=admin_url.port or 5432,
                            login=names["VERDICT_DB_USER"], schema=names["VERDICT_DB_NAME"])
        passwords_file = tmp_path / Path(init_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]).relative_to(OPT_AIRFLOW)
        init_env.update(
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", HOME=str(tmp_path),
            AIRFLOW_HOME=str(tmp_path), PYTHONPATH=str(ROOT), AIRFLOW__CORE__PLUGINS_FOLDER=str(ROOT / "plugins"),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgres_url, AIRFLOW_CONN_REALNESS_DB=json.dumps(verdict_conn),
            AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords_file))
        done = subprocess.run(["bash", str(ROOT / "docker" / "airflow-init.sh")], env=init_env, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]

        metadata = sa.create_engine(postgres_url)
        with metadata.connect() as conn:
            pools = dict(conn.execute(sa.text("SELECT pool, slots FROM slot_pool")).all())
        metadata.dispose()
        for pool in routing("_POOL"):
            assert pools.get(pool) == int(init_env["HEAVY_POOL_SLOTS"]), f"pool {pool} not created: {pools}"

        assert json.loads(passwords_file.read_text()) == {init_env["AIRFLOW_ADMIN_USER"]: init_env["AIRFLOW_ADMIN_PASSWORD"]}

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

        analyst = sa.create_engine(verdict_url.set(username=names["ANALYST_DB_USER"], password=None))
        with analyst.connect() as conn:
            for relation in relations:
                conn.execute(sa.text(f'SELECT count(*) FROM "{relation}"')).scalar_one()
        with pytest.raises(sa.exc.DBAPIError), analyst.begin() as conn:
            conn.execute(sa.text("INSERT INTO schema_migrations (version) VALUES ('analyst-write')"))
        analyst.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{names["VERDICT_DB_NAME"]}" WITH (FORCE)'))
            for role in (names["ANALYST_DB_USER"], names["VERDICT_DB_USER"]):
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()
