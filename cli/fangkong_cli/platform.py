"""The embedded platform: every service in one process, each under its prefix.

Requests are routed by path prefix without rewriting, as the compose gateway
does, so a service answers the same paths alone or embedded. Each service
keeps its own database (a SQLite file per service under the data dir, or its
own PostgreSQL database) and all share the process's bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from fangkong_common.bus import forget_memory_bus
from fangkong_common.bus.memory import MemoryBus
from fangkong_cli.services import SERVICES

log = logging.getLogger("fangkong.platform")


class PrefixDispatcher:
    """ASGI app sending ``/<service>/...`` to that service's app, the rest to ``fallback``."""

    def __init__(self, apps: dict[str, FastAPI], fallback: FastAPI, home: str | None = None) -> None:
        self.apps = apps
        self.fallback = fallback
        # The service that answers "/" (the command screen), when it runs here.
        self.home = apps.get(home) if home else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.fallback(scope, receive, send)
            return
        path = scope.get("path", "/")
        if path == "/" and self.home is not None:
            await self.home(scope, receive, send)
            return
        first = path.split("/", 2)[1] if path.count("/") else ""
        await self.apps.get(first, self.fallback)(scope, receive, send)


async def drain(apps: Mapping[str, FastAPI], *, timeout: float = 15.0) -> bool:
    """Before stopping: let every outbox publish and every consumer of the in-process bus
    catch up, so a clean stop loses nothing (the memory bus keeps no backlog across a
    restart; Kafka does, so there is nothing to wait for). True when everything settled."""
    buses = {id(a.state.bus): a.state.bus for a in apps.values() if isinstance(a.state.bus, MemoryBus)}
    if not buses:
        return True
    deadline = time.monotonic() + timeout
    quiet_rounds = 0
    while time.monotonic() < deadline:
        for service_app in apps.values():
            service_app.state.relay.wake()
        pending = sum([await a.state.relay.pending_count() for a in apps.values()])
        backlog = sum(bus.backlog() for bus in buses.values())
        # Twice quiet in a row: a consumer that just committed may still be writing its own outbox rows.
        quiet_rounds = quiet_rounds + 1 if pending == 0 and backlog == 0 else 0
        if quiet_rounds >= 2:
            return True
        await asyncio.sleep(0.05)
    log.warning("stopped before the in-process bus drained", extra={"pending": pending, "backlog": backlog})
    return False


def create_platform(
    settings_overrides: dict | None = None,
    names: Sequence[str] | None = None,
    per_service: Mapping[str, dict] | None = None,
) -> PrefixDispatcher:
    """``settings_overrides`` apply to every service, ``per_service[name]`` to one (its database URL)."""
    overrides = settings_overrides or {}
    apps = {name: SERVICES[name].create_app(SERVICES[name].settings(**{**overrides, **(per_service or {}).get(name, {})}))
            for name in (names or SERVICES)}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for service_app in apps.values():
                await stack.enter_async_context(service_app.router.lifespan_context(service_app))
            yield
            await simulations.aclose()  # a what-if comparison in progress stops with the platform
            await drain(apps)
            buses = {id(a.state.bus): a.state.bus for a in apps.values() if isinstance(a.state.bus, MemoryBus)}
        # The shared in-process bus outlives each service's stop; it (and its journal) ends with the platform.
        for bus in buses.values():
            forget_memory_bus(bus.url)

    root = FastAPI(title="Fangkong", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    # What-if comparisons for the command screen (issue 10): the platform's own routes, not a service's.
    from fangkong_cli.simulate import whatif_api

    simulations = whatif_api.mount(root, overrides)

    @root.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "services": sorted(apps)}

    @root.get("/docs", response_class=HTMLResponse)
    async def docs() -> str:
        links = "".join(f'<li><a href="/{name}/docs">{name}</a> (<a href="/{name}/openapi.json">OpenAPI</a>)</li>'
                        for name in apps)
        return f"<!doctype html><meta charset=utf-8><title>Fangkong API</title><h1>防控 API</h1><ul>{links}</ul>"

    @root.get("/metrics")
    async def metrics() -> Response:
        # One Prometheus registry per process: every embedded service's series.
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @root.get("/readyz")
    async def readyz() -> JSONResponse:
        checks = {}
        for name, service_app in apps.items():
            checks[name] = await service_app.state.database.ping() and await service_app.state.bus.ping()
        ready = all(checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                            status_code=200 if ready else 503)

    return PrefixDispatcher(apps, root, home="dashboard")
