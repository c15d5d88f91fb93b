"""Fixtures of the bad-input proofs (issue 8): each service in-process on its own SQLite file
and an in-process bus, and tokens signed with its own settings."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest
from fangkong_common.auth import issue_token
from fangkong_common.testing import ServiceHarness, running
from fastapi import FastAPI

# --import-mode=importlib puts no test folder on sys.path: make the shared helpers importable.
sys.path.insert(0, str(Path(__file__).parent))

SERVICES = ("registry", "quarantine", "testing", "dashboard")


def build_app(service: str, directory: Path, **overrides) -> FastAPI:
    main = importlib.import_module(f"{service}.main")
    config = importlib.import_module(f"{service}.config")
    settings = config.Settings(database_url=f"sqlite+aiosqlite:///{directory / (service + '.db')}",
                               bus_url=f"memory://proof-input-{service}-{uuid.uuid4().hex[:8]}",
                               log_level="WARNING", **overrides)
    return main.create_app(settings)


def bearer(app: FastAPI, role: str, regions: Iterable[str] = ()) -> dict[str, str]:
    settings = app.state.settings
    token = issue_token(settings.jwt_secret.get_secret_value(), role=role, regions=regions,
                        issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    return {"Authorization": f"Bearer {token}"}


async def _service(name: str, tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    async with running(build_app(name, tmp_path)) as harness:
        yield harness


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    async for harness in _service("registry", tmp_path):
        yield harness


@pytest.fixture
async def quarantine(tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    async for harness in _service("quarantine", tmp_path):
        yield harness


@pytest.fixture
async def testing_service(tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    async for harness in _service("testing", tmp_path):
        yield harness


@pytest.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[ServiceHarness]:
    async for harness in _service("dashboard", tmp_path):
        yield harness
