"""The access proofs run on the embedded platform: SQLite files, and once on real PostgreSQL."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from fangkong_cli.databases import ensure_postgres_databases, service_database_urls
from fangkong_cli.services import SERVICE_NAMES


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def per_service(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    """Settings per service: {} for a SQLite file each under the data dir, or a PostgreSQL database each."""
    return _per_service(request, monkeypatch)


# The whole matrix on PostgreSQL takes about a minute: on demand (--long-faults); SQLite in CI.
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.long_fault])])
def matrix_per_service(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    return _per_service(request, monkeypatch)


def _per_service(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict]:
    if request.param == "sqlite":
        return {}
    for name in SERVICE_NAMES:
        monkeypatch.delenv(f"FANGKONG_{name.upper()}_DATABASE_URL", raising=False)
    base = request.getfixturevalue("postgres_url")
    urls = service_database_urls(base, SERVICE_NAMES)
    # A sync fixture (postgres_url runs its own event loop): create the databases on a thread.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, ensure_postgres_databases(base, urls.values())).result()
    return {name: {"database_url": url} for name, url in urls.items()}
