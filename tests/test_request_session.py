"""One session per request, committed once: a failed commit is never a 2xx."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common import outbox
from fangkong_common.db import Base, Database, DbSession
from fangkong_common.events.envelope import Envelope
from fangkong_common.outbox import OutboxMessage


class NotesBase(DeclarativeBase):
    pass


class Note(NotesBase):
    __tablename__ = "note"
    key: Mapped[str] = mapped_column(String(20), primary_key=True)


def notes_app(database: Database) -> FastAPI:
    app = FastAPI()
    app.state.database = database

    @app.post("/notes/{key}")
    async def create(key: str, session: DbSession) -> dict:
        session.add(Note(key=key))  # flushed only at commit: a duplicate fails there
        outbox.add(session, Envelope(type="note.created", source="test", key=key, payload={"key": key}))
        return {"created": key}

    @app.post("/notes/{key}/fail")
    async def create_then_fail(key: str, session: DbSession) -> dict:
        session.add(Note(key=key))
        await session.flush()
        raise RuntimeError("the use case failed after writing")

    return app


async def test_commit_happens_before_the_response_and_failures_write_nothing(database_url: str) -> None:
    database = Database(database_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(NotesBase.metadata.create_all)
        await conn.run_sync(Base.metadata.create_all)
    transport = httpx.ASGITransport(app=notes_app(database), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.post("/notes/a")).status_code == 200
            duplicate = await client.post("/notes/a")
            assert duplicate.status_code == 500, "a commit that failed must not answer 2xx"
            assert (await client.post("/notes/b/fail")).status_code == 500
        async with database.sessionmaker() as session:
            assert list(await session.scalars(select(Note.key))) == ["a"]
            assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 1
    finally:
        await database.dispose()
