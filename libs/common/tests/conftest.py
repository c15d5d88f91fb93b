"""Shared fixtures and helpers for the fangkong_common unit tests."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from fangkong_common.db import Base, create_engine


@pytest.fixture(autouse=True)
def _clean_fangkong_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FANGKONG_* variable of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("FANGKONG_"):
            monkeypatch.delenv(name)


def fake_person_key(seed: str | int) -> str:
    """A valid person key (64 lower-case hex chars) that is stable for ``seed``."""
    return hashlib.sha256(f"person-{seed}".encode()).hexdigest()


@pytest.fixture
def make_key():
    """``make_key(seed)``: a valid, stable person key (tests cannot import conftest under importlib)."""
    return fake_person_key


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'common.db'}"


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    """A file SQLite engine with the common tables (outbox, inbox) created."""
    import fangkong_common.inbox  # noqa: F401 - registers InboxEntry on Base

    engine = create_engine(sqlite_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
