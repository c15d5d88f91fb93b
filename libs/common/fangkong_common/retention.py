"""Retention: closed records older than ``FANGKONG_RETENTION_DAYS`` lose their personal data.

Each service that keeps personal data says what "closed" means for it and how to scrub a
record (a ``Scrub``); this module runs it on a schedule as a background job, in one
transaction with an audit row that says how many records it erased. Rows are never
deleted: counts, aggregates and the keys that join them stay as they were.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import clock
from fangkong_common.audit import PiiAuditEntry
from fangkong_common.logs import correlation_id

log = logging.getLogger("fangkong.retention")

# Strings that cannot be NULL (an ID number column) get this marker instead.
ERASED = "[已删除]"
ACTOR = "retention-job"
# A Scrub erases what is closed before ``cutoff`` and returns the records erased per kind
# (e.g. {"persons": 12, "gatherings": 3}).
Scrub = Callable[[AsyncSession, datetime], Awaitable[dict[str, int]]]


def cutoff(retention_days: int, now: datetime | None = None) -> datetime:
    return (now or clock.now()) - timedelta(days=retention_days)


async def run_once(app: FastAPI, scrub: Scrub, *, now: datetime | None = None) -> dict[str, int]:
    """One scrub over what is past the period as of ``now`` (the platform clock), with its audit row."""
    settings = app.state.settings
    before = cutoff(settings.retention_days, now)
    database = app.state.database
    sqlite = database.engine.dialect.name == "sqlite"
    async with database.sessionmaker() as session, session.begin():
        if sqlite:
            # Zero the bytes the old values occupied (SQLite otherwise leaves them in free space).
            await session.execute(text("PRAGMA secure_delete=ON"))
        counts = await scrub(session, before)
        total = sum(counts.values())
        if total:
            detail = ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items()))
            await session.execute(insert(PiiAuditEntry), [{
                "at": clock.now(), "actor": ACTOR, "role": "system", "action": "erase",
                "subject": f"retention:{settings.service_name}", "fields": "count",
                "reason": f"{total} 条已结案记录超过 {settings.retention_days} 天，个人信息已删除 "
                          f"(closed before {before.isoformat(timespec='seconds')}: {detail})",
                "path": None, "correlation_id": correlation_id.get()}])
    if total:
        if sqlite:
            # The WAL still holds the pages as they were: fold it into the file and empty it.
            async with database.engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        log.info("retention scrub", extra={"erased": counts, "cutoff": before.isoformat()})
    return counts


def retention_job(scrub: Scrub):
    """A background task (fangkong_common.app) running ``scrub`` every FANGKONG_RETENTION_INTERVAL_SECONDS."""

    async def retention(app: FastAPI) -> None:
        interval = app.state.settings.retention_interval_seconds
        if interval <= 0:
            return
        while True:
            try:
                await run_once(app, scrub)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("retention scrub failed; retrying at the next interval")
            await asyncio.sleep(interval)

    return retention
