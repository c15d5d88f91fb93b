"""Small helpers shared by the runner's scenarios."""

from __future__ import annotations

import math
import sys
import uuid
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# The older scripts import `_components` as a top-level module; the runner imports them too.
for path in (str(BENCH), str(ROOT)):
    if path not in sys.path:
        sys.path.insert(0, path)


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile by the nearest-rank method (None for no samples, never a made-up number)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def asyncpg_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def sqlalchemy_url(url: str) -> str:
    url = asyncpg_dsn(url)
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def fresh_database(server_url: str, prefix: str) -> str:
    """A new empty database on the server (asyncpg DSN): each scenario starts from nothing."""
    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return asyncpg_dsn(server_url).rsplit("/", 1)[0] + f"/{name}"


async def drop_database(server_url: str, dsn: str) -> None:
    import asyncpg

    name = asyncpg_dsn(dsn).rsplit("/", 1)[1]
    conn = await asyncpg.connect(asyncpg_dsn(server_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
