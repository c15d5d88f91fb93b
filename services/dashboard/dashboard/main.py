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
    _contract_before_ops(app)
    return app


def _contract_before_ops(app: FastAPI) -> None:
    """The issue fixes GET /dashboard/metrics as the time series, while the shared skeleton also
    serves Prometheus there (and at /metrics). Match the contract first: Prometheus stays at /metrics."""
    def is_ops(route) -> bool:
        inner = getattr(route, "original_router", None)
        return inner is not None and any(getattr(r, "path", "") == "/healthz" for r in inner.routes)

    ops = [r for r in app.router.routes if is_ops(r)]
    app.router.routes[:] = [r for r in app.router.routes if not is_ops(r)] + ops
