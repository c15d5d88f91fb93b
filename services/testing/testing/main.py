from pathlib import Path

from fastapi import FastAPI

from fangkong_common.app import create_service_app
from testing import api, consumers, jobs
from testing.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    return create_service_app(
        name="testing",
        settings=settings,
        api_router=api.router,
        consumers=consumers.CONSUMERS,
        background=[jobs.forecast_loop] if settings.forecast_interval_seconds > 0 else [],
        migrations=MIGRATIONS,
    )
