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
