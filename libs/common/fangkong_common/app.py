"""The skeleton every service shares: lifespan (database, migrations, bus,
outbox relay, consumers), health, readiness, metrics, correlation ids.

A service's ``create_app`` calls ``create_service_app`` with its own router,
consumers and migrations; nothing here knows any particular service.
"""

from __future__ import annotations

import contextlib
import time
import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AwareDatetime, BaseModel, Field, model_validator

from fangkong_common import clock, metrics
from fangkong_common.auth import CurrentPrincipal, Principal, Role, require_roles
from fangkong_common.bus import Subscription, create_bus
from fangkong_common.db import Database
from fangkong_common.errors import install_error_handlers
from fangkong_common.aio import cancel_and_wait
from fangkong_common.inbox import Apply, ApplyBatch, idempotent_batch_handler, idempotent_handler
from fangkong_common.logs import correlation_id, new_correlation_id
from fangkong_common.migrations import upgrade
from fangkong_common.outbox import OutboxRelay
from fangkong_common.settings import CommonSettings


@dataclass(frozen=True)
class ConsumerSpec:
    """A consumer group of this service: each new event is applied once, in a
    transaction with its inbox row."""

    group: str
    topics: Sequence[str]
    apply: Apply | None = None
    # For high-volume groups: the batch's new events applied together (set-based writes).
    apply_batch: ApplyBatch | None = None
    max_batch: int = 500

    def __post_init__(self) -> None:
        if (self.apply is None) == (self.apply_batch is None):
            raise ValueError(f"consumer group {self.group}: give exactly one of apply and apply_batch")

    def handler(self, sessionmaker):
        if self.apply_batch is not None:
            return idempotent_batch_handler(sessionmaker, self.group, self.apply_batch)
        return idempotent_handler(sessionmaker, self.group, self.apply)


# A background job of a service (a scheduler, a sweeper): started after the
# consumers with the running app, cancelled at shutdown.
BackgroundTask = Callable[[FastAPI], Awaitable[None]]


class CorrelationMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): correlation id in and out,
    request count and latency per route."""

    def __init__(self, app, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-correlation-id")
        cid = incoming.decode(errors="replace")[:64] if incoming else new_correlation_id()
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-correlation-id", cid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "GET")
            metrics.HTTP_REQUESTS.labels(self.service, method, path, str(status["code"])).inc()
            metrics.HTTP_LATENCY.labels(self.service, method, path).observe(time.perf_counter() - started)
            correlation_id.reset(token)


class ErrorOut(BaseModel):
    """Every error answer: a message, or FastAPI's list of {loc, msg, type} for a 422."""

    detail: str | list[dict[str, Any]] | dict[str, Any]


# Answers every authenticated route may give besides its own: documented once, so a client (and
# schemathesis) reading the OpenAPI schema knows them. 422 stays FastAPI's own (HTTPValidationError).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body is not parseable (e.g. broken JSON)"},
    401: {"model": ErrorOut, "description": "no token, or an expired, tampered or foreign one"},
    403: {"model": ErrorOut, "description": "the role or the region of the token does not allow it"},
    404: {"model": ErrorOut, "description": "not found, or outside the caller's regions"},
    409: {"model": ErrorOut, "description": "conflicts with the current state"},
    503: {"model": ErrorOut, "description": "the database or the bus is unavailable; retry (Retry-After)"},
}


class ClockOut(BaseModel):
    now: AwareDatetime
    offset_seconds: float
    frozen: bool
    controllable: bool


class ClockIn(BaseModel):
    """Where to put the clock: a moment, or an offset from the wall clock (0 = real time)."""

    now: AwareDatetime | None = None
    offset_seconds: float | None = Field(default=None, ge=-10 * 365 * 86400, le=10 * 365 * 86400)
    frozen: bool = Field(default=False, description="stop the clock at `now` (exact simulated times)")

    @model_validator(mode="after")
    def _exactly_one(self) -> "ClockIn":
        if (self.now is None) == (self.offset_seconds is None):
            raise ValueError("give either now or offset_seconds")
        if self.frozen and self.now is None:
            raise ValueError("frozen needs now: the moment to stop the clock at")
        return self


def _clock_out(request: Request) -> ClockOut:
    return ClockOut(now=clock.now(), offset_seconds=clock.offset().total_seconds(), frozen=clock.frozen(),
                    controllable=request.app.state.settings.clock_controllable)


def _clock_router(name: str) -> APIRouter:
    """The simulation clock (fangkong_common.clock), per process: embedded, the four services share it."""
    router = APIRouter(prefix=f"/{name}", tags=["ops"])

    @router.get("/clock", response_model=ClockOut)
    async def read_clock(request: Request, _caller: CurrentPrincipal) -> ClockOut:
        return _clock_out(request)

    @router.put("/clock", response_model=ClockOut, responses={409: {"description": "clock control is off"}})
    async def move_clock(request: Request, body: ClockIn,
                         _admin: Annotated[Principal, Depends(require_roles(Role.admin))]) -> ClockOut:
        if not request.app.state.settings.clock_controllable:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                "clock control is off (FANGKONG_CLOCK_CONTROL=false or production)")
        if body.now is not None:
            clock.move_to(body.now, freeze=body.frozen)
        else:
            clock.set_offset(timedelta(seconds=body.offset_seconds or 0.0))
        return _clock_out(request)

    return router


def _ops_router(name: str) -> APIRouter:
    router = APIRouter(tags=["ops"])

    async def healthz() -> dict:
        return {"status": "ok", "service": name}

    async def readyz(request: Request) -> JSONResponse:
        database_ok = await request.app.state.database.ping()
        bus_ok = await request.app.state.bus.ping()
        ready = database_ok and bus_ok
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "service": name,
             "checks": {"database": database_ok, "bus": bus_ok}},
            status_code=200 if ready else 503,
        )

    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # At the root for the container's probes, and under the service's prefix so
    # a gateway (or the embedded platform) routing by prefix reaches them too.
    for prefix, in_schema in (("", True), (f"/{name}", False)):
        router.add_api_route(f"{prefix}/healthz", healthz, methods=["GET"], include_in_schema=in_schema)
        router.add_api_route(f"{prefix}/readyz", readyz, methods=["GET"], include_in_schema=in_schema,
                             responses={503: {"description": "database or bus not reachable"}})
    # Prometheus only at the root: /<service>/metrics is the services' own namespace (the
    # dashboard's time series live there). The embedded platform serves the one registry at /metrics.
    router.add_api_route("/metrics", metrics_endpoint, methods=["GET"], response_class=Response,
                         responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}})
    return router


def create_service_app(
    *,
    name: str,
    settings: CommonSettings,
    api_router: APIRouter | None = None,
    consumers: Sequence[ConsumerSpec] = (),
    background: Sequence[BackgroundTask] = (),
    migrations: Path | None = None,
    title: str | None = None,
    version: str = "0.1.0",
) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database(settings.effective_database_url)
        if settings.auto_migrate and migrations is not None:
            await upgrade(database.engine, migrations)
        bus = create_bus(settings.bus_url, partitions=settings.bus_partitions, client_id=name)
        await bus.start()
        relay = OutboxRelay(database, bus, service=name, batch_size=settings.outbox_batch_size,
                            poll_seconds=settings.outbox_poll_seconds)
        relay.start()
        subscriptions: list[Subscription] = []
        for spec in consumers:
            subscriptions.append(
                await bus.subscribe(spec.topics, spec.group,
                                    spec.handler(database.sessionmaker),
                                    max_batch=spec.max_batch)
            )
        app.state.database = database
        app.state.bus = bus
        app.state.relay = relay
        app.state.subscriptions = subscriptions
        tasks = [asyncio.create_task(job(app), name=f"{name}-{getattr(job, '__name__', 'job')}")
                 for job in background]
        try:
            yield
        finally:
            for task in tasks:
                await cancel_and_wait(task)
            for subscription in subscriptions:
                await subscription.stop()
            await relay.stop()
            await bus.stop()
            await database.dispose()

    # The API pages live under the service's prefix, so the gateway and the embedded
    # platform (which route by prefix) reach every service's own page.
    app = FastAPI(title=title or f"Fangkong {name}", version=version, lifespan=lifespan,
                  docs_url=f"/{name}/docs", redoc_url=f"/{name}/redoc", openapi_url=f"/{name}/openapi.json",
                  swagger_ui_oauth2_redirect_url=f"/{name}/docs/oauth2-redirect")
    app.state.settings = settings
    app.state.service_name = name
    install_error_handlers(app)
    app.include_router(_ops_router(name))
    app.include_router(_clock_router(name), responses=ERROR_RESPONSES)
    if api_router is not None:
        app.include_router(api_router, responses=ERROR_RESPONSES)
    app.add_middleware(CorrelationMiddleware, service=name)
    return app
