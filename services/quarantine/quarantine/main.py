import asyncio
import logging
from pathlib import Path

from fastapi import FastAPI

from fangkong_common import clock
from fangkong_common.app import create_service_app
from fangkong_common.retention import retention_job
from quarantine import api, consumers, service
from quarantine.service import retention
from quarantine.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger("fangkong.quarantine")


async def daily_scheduler(app: FastAPI) -> None:
    """The daily job, run at start and then every interval: each run does only what is
    still to do, so waking often is harmless and a missed night is caught up."""
    settings: Settings = app.state.settings
    if settings.scheduler_interval_seconds <= 0:
        return
    while True:
        try:
            async with app.state.database.sessionmaker() as session, session.begin():
                report = await service.run_daily(session, clock.now(),
                                                 checkins_per_day=settings.checkins_per_day,
                                                 low_share=settings.capacity_low_share)
            log.info("daily run", extra={"report": report.__dict__ | {"day": report.day.isoformat()}})
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the scheduler must outlive a failed run
            log.exception("daily run failed; retrying at the next interval")
        await asyncio.sleep(settings.scheduler_interval_seconds)


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        name="quarantine",
        settings=settings or Settings(),
        api_router=api.router,
        consumers=consumers.CONSUMERS,
        # Closed transfers past FANGKONG_RETENTION_DAYS lose addresses and escort, hourly by default.
        background=[daily_scheduler, retention_job(retention.scrub)],
        migrations=MIGRATIONS,
    )
