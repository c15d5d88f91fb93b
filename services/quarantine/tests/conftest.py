"""Fixtures for the quarantine tests: the service on a real database and bus, scheduler off
(tests run the daily job themselves, as of chosen dates)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from fangkong_common.testing import ServiceHarness, running
from quarantine.config import Settings
from quarantine.main import create_app


@pytest.fixture
async def service(database_url: str) -> AsyncIterator[ServiceHarness]:
    """The quarantine service on SQLite and on PostgreSQL, with an in-process bus."""
    settings = Settings(database_url=database_url, bus_url=f"memory://q-{uuid.uuid4().hex}",
                        scheduler_interval_seconds=0, checkins_per_day=0)
    async with running(create_app(settings)) as h:
        yield h
