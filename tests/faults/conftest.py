"""Fixtures of the fault tests: brokers and database servers of their own (a test that stops
or restarts one cannot break the rest of the suite), and the four services as processes.

The fast tests share one platform on the session's Kafka and PostgreSQL; each works in a
region of its own, so their figures do not mix. The long ones (marked long_fault) start
their own Kafka or PostgreSQL and their own platform."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.multiprocess import MultiProcessPlatform

ROOT = Path(__file__).resolve().parents[2]


def script(name: str, *args: str) -> dict:
    completed = subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)} failed:\n{completed.stderr[-4000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


@dataclass
class OwnKafka:
    bootstrap: str
    directory: Path

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def stop(self) -> None:
        script("kafka", "stop", "--dir", str(self.directory))

    def start(self) -> None:
        script("kafka", "start", "--dir", str(self.directory))


@dataclass
class OwnPostgres:
    dsn: str
    directory: Path

    def database_url(self, name: str) -> str:
        return self.dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"

    def stop(self, mode: str = "fast") -> None:
        script("postgres", "stop", "--dir", str(self.directory), "--mode", mode)

    def start(self) -> None:
        script("postgres", "start", "--dir", str(self.directory))


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[OwnKafka]:
    directory = tmp_path / "kafka"
    directory.mkdir()
    info = script("kafka", "start", "--dir", str(directory))
    try:
        yield OwnKafka(info["bootstrap"], directory)
    finally:
        script("kafka", "kill", "--dir", str(directory))


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    directory = tmp_path / "postgres"
    directory.mkdir()
    info = script("postgres", "start", "--dir", str(directory))
    try:
        yield OwnPostgres(info["dsn"], directory)
    finally:
        script("postgres", "destroy", "--dir", str(directory))


def start_platform(kafka_url: str, database_url: str, directory: Path) -> MultiProcessPlatform:
    platform = MultiProcessPlatform(kafka_url=kafka_url, database_url=database_url, directory=directory)
    try:
        platform.start()
    except BaseException:
        platform.stop()
        raise
    return platform


def stop_platform(platform: MultiProcessPlatform) -> None:
    codes = platform.stop()
    if any(codes.values()):
        print(platform.logs())


@pytest.fixture(scope="session")
def shared_platform(kafka_broker, postgres_server, tmp_path_factory) -> Iterator[MultiProcessPlatform]:
    """One platform for the fast fault tests (each test in a region of its own)."""
    base = postgres_server.database_dsn(f"fl_{uuid.uuid4().hex[:8]}").replace(
        "postgresql://", "postgresql+asyncpg://", 1)
    platform = start_platform(kafka_broker.url, base, tmp_path_factory.mktemp("faults"))
    try:
        yield platform
    finally:
        stop_platform(platform)
