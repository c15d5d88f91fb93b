"""Fixtures of the fault tests: brokers and database servers of their own (a test that stops
or restarts one cannot break the rest of the suite), and the four services as processes.

The fast tests share one platform on the session's Kafka and PostgreSQL; each works in a
region of its own, so their figures do not mix. The long ones (marked long_fault) start
their own Kafka or PostgreSQL and their own platform."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.infra import (
    OwnKafka,
    OwnPostgres,
    script,
    start_platform,
    stop_platform,
)
from tests.multiprocess import MultiProcessPlatform


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
