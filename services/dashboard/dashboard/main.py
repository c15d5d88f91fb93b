from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from fangkong_common.app import create_service_app
from dashboard import api, consumers, stream, webhooks
from dashboard.config import Settings

MIGRATIONS = Path(__file__).parent / "migrations"
STATIC = api.STATIC


def create_app(settings: Settings | None = None, *, webhook_transport: httpx.AsyncBaseTransport | None = None
               ) -> FastAPI:
    """``webhook_transport`` lets tests (or a proxying deployment) choose how deliveries leave."""
    signal = stream.ChangeSignal()
    app = create_service_app(
        name="dashboard",
        settings=settings or Settings(),
        api_router=api.router,
        consumers=consumers.build(signal.notify),
        background=[webhooks.delivery_job, stream.purge_job],
        migrations=MIGRATIONS,
        title="Fangkong dashboard 指挥大屏",
    )
    app.state.change_signal = signal
    app.state.webhook_transport = webhook_transport
    app.include_router(api.screen_router)
    app.mount("/dashboard/static", StaticFiles(directory=STATIC), name="dashboard-static")
    return app

