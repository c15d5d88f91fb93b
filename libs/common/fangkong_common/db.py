"""Async SQLAlchemy 2: engine, sessions, naming convention, one session per request.

PostgreSQL through asyncpg in deployments, SQLite through aiosqlite in the
embedded mode. Tables every service has (outbox, inbox) hang off ``Base``;
each service declares its own models on its own base built with
``naming_metadata()`` and hands both metadatas to Alembic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import MetaData, bindparam, event, func, select, text
from sqlalchemy import types as sqltypes
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def naming_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    """Base of the tables every service owns a copy of (outbox, inbox)."""

    metadata = naming_metadata()


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def _dialect_name(target) -> str:
    name = target if isinstance(target, str) else getattr(target, "dialect", None) and target.dialect.name
    return name or target.get_bind().dialect.name


def one_of(target, column, values):
    """``column IN values`` for a batch of keys (thousands). On PostgreSQL it is sent as
    ``IN (SELECT unnest($1))`` with the values as one array parameter: SQLAlchemy renders an IN list
    bind by bind at every execution (a fifth of the dashboard projection's time, py-spy), and the
    plain ``= ANY($1)`` form, planned generically on a table not analyzed yet, is a sequential scan
    comparing every row with every key (dashboard stalls of 5–28 s on a fresh database). A join
    with the unnested keys is an index probe per key whatever the statistics say.
    ``target`` as for ``dialect_insert``."""
    values = list(values)
    if _dialect_name(target) == "postgresql":
        return column.in_(select(func.unnest(bindparam(None, values, type_=ARRAY(column.type)))))
    return column.in_(values)


def dialect_insert(target, table):
    """INSERT with ON CONFLICT for the database in use (PostgreSQL or SQLite).

    ``target``: a session, a connection or a dialect name. An ORM class is inserted
    as its Core table, so an executemany stays a plain cursor.executemany.
    """
    name = _dialect_name(target)
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        raise ValueError(f"Fangkong runs on PostgreSQL or SQLite, not {name}")
    return insert(getattr(table, "__table__", table))


class _SqliteUtcDateTime(SQLITE_DATETIME):
    """SQLite keeps no UTC offset: SQLAlchemy would store 07:30+08:00 as "07:30", read back as
    07:30 UTC, eight hours off. Every aware moment is stored in UTC (values read back stay naive
    UTC on SQLite, as the services expect)."""

    def bind_processor(self, dialect):
        process = super().bind_processor(dialect)

        def bind(value):
            if isinstance(value, datetime) and value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            return process(value) if process else value

        return bind


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        dialect = engine.sync_engine.dialect
        dialect.colspecs = {**dialect.colspecs, sqltypes.DateTime: _SqliteUtcDateTime}

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - trivial
            cursor = dbapi_connection.cursor()
            # WAL lets readers go on while the relay or a consumer writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_async_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as "not ready"
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request, committed once when the handler succeeded.

    Used with ``scope="function"`` (``DbSession``) so the commit runs when the
    path operation returns, before the response is built: a client never sees
    a 2xx for a write that did not commit (and the outbox row commits with it).
    With the default request scope FastAPI would send the 200 first.
    """
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]
