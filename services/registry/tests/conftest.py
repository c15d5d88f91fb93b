"""Fixtures for the registry tests: the service running on a real database and bus."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fangkong_common.testing import ServiceHarness, running

from registry.config import Settings
from registry.main import create_app


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[ServiceHarness]:
    """The registry on SQLite and on PostgreSQL, with an in-process bus."""
    async with running(create_app(Settings(database_url=database_url, bus_url=f"memory://reg-{id(database_url)}"))) as h:
        yield h


@pytest.fixture
async def sqlite_service(tmp_path) -> AsyncIterator[ServiceHarness]:
    async with running(create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}",
                                           bus_url=f"memory://reg-sqlite-{id(tmp_path)}"))) as h:
        yield h
