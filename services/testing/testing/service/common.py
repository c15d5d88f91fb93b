"""Helpers shared by the use cases of the testing service."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import clock
from fangkong_common.db import dialect_insert
from fangkong_common.errors import ServiceError

SOURCE = "testing"
CHUNK = 500


def utc_now() -> datetime:
    return clock.now()


def aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes (stored as UTC).
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class BatchRejected(ServiceError):
    """All-or-nothing batch: every item's problem, FastAPI-style (loc, msg, type)."""

    def __init__(self, errors: list[dict]) -> None:
        types = {e["type"] for e in errors}
        status = 403 if "forbidden" in types else 409 if types <= {"conflict"} else 422
        super().__init__(errors, status_code=status)


def err(loc: list, msg: str, type_: str = "value_error") -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": type_}


async def lock_for_writes(session: AsyncSession) -> None:
    """Serialise check-then-write use cases on SQLite: take the write lock before reading
    (PostgreSQL uses row locks instead).

    On PostgreSQL, plan each statement with its parameters: asyncpg prepares statements
    and, after five runs, PostgreSQL may keep a generic plan chosen while the tables were
    empty (a sequential scan of tube_members), which turns into seconds per batch at a
    million members.
    """
    if session.get_bind().dialect.name == "sqlite":
        await session.execute(text("UPDATE tubes SET status = status WHERE 1 = 0"))
    else:
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def chunk_size(session: AsyncSession) -> int:
    return 20_000 if session.get_bind().dialect.name == "postgresql" else CHUNK


def insert_ignore(session: AsyncSession, table):
    return dialect_insert(session, table).on_conflict_do_nothing()

