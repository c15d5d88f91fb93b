"""Fixtures of the cross-service tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.multiprocess import MultiProcessPlatform


@pytest.fixture
def multiprocess_platform(kafka_broker, postgres_server, tmp_path) -> Iterator[MultiProcessPlatform]:
    """The four services as separate processes on the session's real Kafka (a namespace of their
    own) and real PostgreSQL (a database each), stopped with SIGTERM at the end."""
    base = postgres_server.database_dsn(f"mp_{uuid.uuid4().hex[:8]}").replace("postgresql://", "postgresql+asyncpg://", 1)
    platform = MultiProcessPlatform(kafka_url=kafka_broker.url, database_url=base, directory=tmp_path)
    try:
        platform.start()
        yield platform
    finally:
        codes = platform.stop()
        print(platform.logs() if any(codes.values()) else "")
