"""Fixtures for the whole tree: real Kafka and real PostgreSQL, started once per
test session by the project's own scripts (or taken from FANGKONG_TEST_KAFKA /
FANGKONG_TEST_DATABASE_URL), and the two-backend parametrisations."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent


def run_script(name: str, *args: str) -> dict:
    completed = subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)} failed:\n{completed.stderr[-4000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


@dataclass
class KafkaBroker:
    bootstrap: str
    directory: Path | None  # None: an external broker we may not stop

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    @property
    def controllable(self) -> bool:
        return self.directory is not None

    def stop(self) -> None:
        run_script("kafka", "stop", "--dir", str(self.directory))

    def start(self) -> None:
        run_script("kafka", "start", "--dir", str(self.directory))


@dataclass
class PostgresServer:
    dsn: str  # postgresql://user@host:port/db
    directory: Path | None

    def database_dsn(self, name: str) -> str:
        return self.dsn.rsplit("/", 1)[0] + f"/{name}"

    def stop(self, mode: str = "fast") -> None:
        run_script("postgres", "stop", "--dir", str(self.directory), "--mode", mode)

    def start(self) -> None:
        run_script("postgres", "start", "--dir", str(self.directory))


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    external = os.environ.get("FANGKONG_TEST_KAFKA")
    if external:
        yield KafkaBroker(external.removeprefix("kafka://"), None)
        return
    directory = tmp_path_factory.mktemp("kafka")
    info = run_script("kafka", "start", "--dir", str(directory))
    print(f"\nkafka started in {info['seconds']} s at {info['bootstrap']}")
    try:
        yield KafkaBroker(info["bootstrap"], directory)
    finally:
        run_script("kafka", "stop", "--dir", str(directory))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    external = os.environ.get("FANGKONG_TEST_DATABASE_URL")
    if external:
        yield PostgresServer(external.replace("postgresql+asyncpg://", "postgresql://"), None)
        return
    directory = tmp_path_factory.mktemp("postgres")
    info = run_script("postgres", "start", "--dir", str(directory))
    print(f"\npostgres started in {info['seconds']} s on port {info['port']}")
    try:
        yield PostgresServer(info["dsn"], directory)
    finally:
        run_script("postgres", "destroy", "--dir", str(directory))


def _create_database(server: PostgresServer, name: str) -> None:
    import asyncpg

    async def create() -> None:
        conn = await asyncpg.connect(server.dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the real server (asyncpg URL)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    _create_database(postgres_server, name)
    return postgres_server.database_dsn(name).replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.kafka)])
def bus_url(request: pytest.FixtureRequest) -> str:
    """Each bus test runs on the in-process bus and on the real Kafka broker."""
    if request.param == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    # A namespace of its own on the session's broker: no test reads another's events.
    return f"{request.getfixturevalue('kafka_broker').url}?namespace=t{uuid.uuid4().hex[:12]}"


# --- `scripts/verify`: what each proof test injected and measured, printed as one table ---------

LONG_OPTION = "--long-faults"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(LONG_OPTION, action="store_true", default=False,
                     help="also run the long fault runs (marked long_fault); scripts/verify passes it")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "proof(area): a test of issue 8's proof table "
                                       "(area: faults, bad input, access); scripts/verify runs these")
    config.addinivalue_line("markers", "long_fault: a fault run of minutes; only with --long-faults")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption(LONG_OPTION):
        return
    skip = pytest.mark.skip(reason=f"long fault run: on demand with scripts/verify ({LONG_OPTION})")
    for item in items:
        if item.get_closest_marker("long_fault"):
            item.add_marker(skip)


class Proof:
    """Notes for the verify table: what the test injected and what it measured. Call as the test
    goes; the last note of each kind wins, several measured notes are joined."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def injected(self, text: str) -> None:
        self._item.user_properties.append(("proof.injected", text))

    def measured(self, text: str) -> None:
        self._item.user_properties.append(("proof.measured", text))


@pytest.fixture
def proof(request: pytest.FixtureRequest) -> Proof:
    return Proof(request.node)


def _proof_rows(terminalreporter) -> list[dict]:
    rows: dict[str, dict] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            area = dict(report.user_properties).get("proof.area") if hasattr(report, "user_properties") else None
            if area is None:
                continue
            row = rows.setdefault(report.nodeid, {"area": area, "test": report.nodeid, "injected": "",
                                                  "measured": [], "result": "pass"})
            for key, value in report.user_properties:
                if key == "proof.injected":
                    row["injected"] = value
                elif key == "proof.measured" and value not in row["measured"]:
                    row["measured"].append(value)
            if report.failed:
                row["result"] = "FAIL"
            elif report.skipped and row["result"] == "pass":
                row["result"] = "skipped"
    return [dict(row, measured="; ".join(row["measured"])) for row in rows.values()]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    marker = item.get_closest_marker("proof")
    if marker is not None:
        item.user_properties.append(("proof.area", marker.args[0] if marker.args else "other"))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    rows = _proof_rows(terminalreporter)
    if not rows:
        return
    rows.sort(key=lambda row: (row["area"], row["test"]))
    lines = ["| area | test | injected | measured | result |", "|---|---|---|---|---|"]
    for row in rows:
        cells = [row["area"], row["test"].split("::", 1)[-1] + f" ({row['test'].split('::', 1)[0]})",
                 row["injected"], row["measured"], row["result"]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    table = "\n".join(lines)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "verify.md").write_text(table + "\n", encoding="utf-8")
    (artifacts / "verify.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    terminalreporter.section("proof table (test-artifacts/verify.md)")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich comes with the CLI; plain markdown otherwise
        terminalreporter.write_line(table)
        return
    rich_table = Table("area", "test", "injected", "measured", "result", show_lines=True)
    for row in rows:
        style = {"pass": "green", "FAIL": "bold red"}.get(row["result"], "yellow")
        rich_table.add_row(row["area"], row["test"], row["injected"], row["measured"],
                           f"[{style}]{row['result']}[/]")
    console = Console(file=terminalreporter._tw, width=max(terminalreporter._tw.fullwidth, 160),
                      force_terminal=terminalreporter._tw.hasmarkup)
    console.print(rich_table)
