"""Test support every service's tests share: run an app with its lifespan,
sign tokens, feed it other services' events, wait for effects.

Not a mock of anything: the app runs with its real database and bus (whatever
URLs the test hands in: SQLite or PostgreSQL, memory or Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import httpx
from fastapi import FastAPI

from fangkong_common.auth import Role, issue_token
from fangkong_common.events.envelope import Envelope, EventPayload
from fangkong_common.identity import person_key


class ServiceHarness:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.settings = app.state.settings

    def token(self, role: Role | str, *, regions: Iterable[str] = (), grids: Iterable[str] = (),
              sites: Iterable[str] = (), sub: str | None = None) -> str:
        return issue_token(self.settings.jwt_secret.get_secret_value(), role=role, regions=regions, grids=grids,
                           sites=sites, sub=sub, issuer=self.settings.jwt_issuer,
                           audience=self.settings.jwt_audience)

    def headers(self, role: Role | str, **scope: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **scope)}"}

    def person_key(self, id_number: str, id_type: str = "resident_id") -> str:
        return person_key(id_type, id_number, self.settings.person_key_secret.get_secret_value())

    @property
    def database(self):
        return self.app.state.database

    @property
    def bus(self):
        return self.app.state.bus

    def session(self):
        return self.database.sessionmaker()

    async def publish(self, *payloads: EventPayload, source: str = "test", key: str | None = None) -> list[Envelope]:
        """Put other services' events on the bus, as they would."""
        envelopes = [Envelope.wrap(p, source=source, key=key or getattr(p, "person_key", None) or "k")
                     for p in payloads]
        await self.bus.publish(envelopes)
        return envelopes

    async def flush_outbox(self) -> int:
        """Publish what this service's outbox holds now (the relay would, shortly)."""
        return await self.app.state.relay.publish_pending()


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Await ``check`` until it returns something truthy (its value) or raises no AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = await check()
            if value:
                return value
            failure: BaseException | None = None
        except AssertionError as exc:
            failure = exc
        if time.monotonic() > deadline:
            if failure is not None:
                raise failure
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running(app: FastAPI, base_url: str = "http://svc") -> AsyncIterator[ServiceHarness]:
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url,
                                     timeout=60) as client:
            yield ServiceHarness(app, client)
