"""The live feed: Server-Sent Events of every counter change the caller may see.

Changes are read from ``dash_change`` (written with the counters, in the consumer's
transaction), so any replica serves every change and a reconnecting client resumes
from ``Last-Event-ID``. In the process that applied the batch a signal wakes the
stream at once; other replicas notice within ``stream_poll_seconds``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta

from fastapi import FastAPI, Request
from sqlalchemy import delete, func, select

from dashboard.domain.rules import CHINA_TZ
from dashboard.models import Change, Fact, Moment
from fangkong_common.auth import Principal, within_region

log = logging.getLogger("fangkong.dashboard.stream")


class ChangeSignal:
    """Wakes every open stream of this process when a batch of changes commits."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


async def latest_seq(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.coalesce(func.max(Change.seq), 0))) or 0)


async def events(request: Request, principal: Principal, region_code: str | None, since: int | None,
                 max_events: int | None) -> AsyncIterator[str]:
    app = request.app
    settings = app.state.settings
    signal: ChangeSignal = app.state.change_signal
    last = since if since is not None else await latest_seq(app)
    sent = 0
    yield f"retry: 3000\nevent: hello\ndata: {json.dumps({'since': last, 'region_code': region_code})}\n\n"
    idle = 0.0
    while True:
        async with app.state.database.sessionmaker() as session:
            query = select(Change).where(Change.seq > last).order_by(Change.seq).limit(500)
            if region_code:
                query = query.where(within_region(Change.region_code, region_code))
            rows = (await session.execute(query)).scalars().all()
        for row in rows:
            last = row.seq
            if not principal.can_see(row.region_code):
                continue
            data = {"seq": row.seq, "metric": row.metric, "region_code": row.region_code,
                    "day": row.day.isoformat(), "dimension": row.dimension, "delta": row.delta}
            yield f"id: {row.seq}\nevent: change\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
            sent += 1
            if max_events is not None and sent >= max_events:
                return
        if rows:
            idle = 0.0
            continue
        if await request.is_disconnected():
            return
        await signal.wait(settings.stream_poll_seconds)
        idle += settings.stream_poll_seconds
        if idle >= settings.stream_heartbeat_seconds:
            idle = 0.0
            yield ": keep-alive\n\n"  # proxies close idle connections


async def purge(app: FastAPI, now: datetime | None = None, facts_before: date | None = None) -> None:
    """Forget live-feed rows older than their retention (wall clock) and person facts more than
    ``fact_retention_days`` older than the newest fact (event time, not wall clock: a replay of
    last year's topics must match facts exactly as the live run did). Derived states keep what
    old facts set (they only ever move earlier)."""
    settings = app.state.settings
    now = now or datetime.now(UTC)
    async with app.state.database.sessionmaker() as session, session.begin():
        await session.execute(delete(Change).where(Change.at < now - timedelta(hours=settings.change_retention_hours)))
        if facts_before is None:
            newest = await session.scalar(select(func.max(Fact.day)))
            if newest is None:
                return
            facts_before = newest - timedelta(days=settings.fact_retention_days)
        await session.execute(delete(Fact).where(Fact.day < facts_before))
        # Swabs kept for "returnee registered → first test" go with the facts (a swab is one per
        # tube member: the bulk of the outcome moments); measured intervals keep their ends.
        await session.execute(delete(Moment).where(Moment.kind == "swab", Moment.at < datetime.combine(
            facts_before, time(0), CHINA_TZ)))


async def purge_job(app: FastAPI) -> None:
    """Background job: purge every ten minutes."""
    while True:
        try:
            await purge(app)
        except Exception:  # noqa: BLE001 - try again next round
            log.exception("purge failed")
        await asyncio.sleep(600)
