"""Background job: the forecast runs on its own every so often, so a coming backlog or a
reagent shortage raises its alert even when nobody opens the forecast page."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from sqlalchemy import select

from fangkong_common.auth import Principal, Role
from testing import service
from testing.models import CollectionSite, Lab

log = logging.getLogger("fangkong.testing.jobs")
SYSTEM = Principal(sub="testing-forecast-job", role=Role.admin)


async def forecast_once(app: FastAPI) -> list[str]:
    """One forecast per city (the 4-digit prefix of the region codes of sites and labs)."""
    settings = app.state.settings
    database = app.state.database
    async with database.sessionmaker() as session:
        codes = set(await session.scalars(select(CollectionSite.region_code).distinct()))
        codes |= set(await session.scalars(select(Lab.region_code).distinct()))
    emitted: list[str] = []
    for city in sorted({code[:4] + "00" for code in codes}):
        async with database.sessionmaker() as session, session.begin():
            result = await service.forecast(session, SYSTEM, settings, days=settings.forecast_days, region=city)
            emitted.extend(result["alerts_emitted"])
    return emitted


async def forecast_loop(app: FastAPI) -> None:
    interval = app.state.settings.forecast_interval_seconds
    while True:
        await asyncio.sleep(interval)
        try:
            emitted = await forecast_once(app)
            if emitted:
                log.info("capacity alerts raised", extra={"alerts": emitted})
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("scheduled forecast failed", extra={"error": repr(exc)})
