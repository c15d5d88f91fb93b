from pathlib import Path

from fastapi import FastAPI

from fangkong_common.app import create_service_app
from fangkong_common.retention import retention_job

from registry import api, consumers
from registry.service import retention
from registry.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: Settings | None = None) -> FastAPI:
    return create_service_app(
        name="registry",
        settings=settings or Settings(),
        api_router=api.router,
        consumers=consumers.CONSUMERS,
        # Closed people past FANGKONG_RETENTION_DAYS lose their personal data, hourly by default.
        background=[retention_job(retention.scrub)],
        migrations=MIGRATIONS,
    )
