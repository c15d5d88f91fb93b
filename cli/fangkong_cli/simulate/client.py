"""The simulator's only way into the platform: the public HTTP APIs.

One ``Api`` per run: a bounded number of requests in flight, counts of requests
and records sent, the per-service base URLs (one gateway or embedded platform,
or one process per service), and the platform's controllable clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import httpx

SERVICES = ("registry", "quarantine", "testing", "dashboard")


class SimulationError(RuntimeError):
    """The platform refused or did not do what the scenario needs (the message says what)."""


@dataclass
class Target:
    """Where the platform answers and how to sign in.

    ``url``: the embedded platform or a gateway (every service under its prefix).
    ``service_urls``: a base URL per service for the multi-process platform (no gateway).
    ``transport``: an ASGI transport for an in-process platform (tests, ``fangkong up --demo``).
    """

    token: str
    url: str = "http://127.0.0.1:8000"
    service_urls: dict[str, str] = field(default_factory=dict)
    transport: httpx.AsyncBaseTransport | None = None
    concurrency: int = 16
    timeout: float = 120.0

    def base(self, service: str) -> str:
        return self.service_urls.get(service, self.url).rstrip("/")

    def bases(self) -> list[str]:
        """Distinct processes: one for the embedded platform, four without a gateway."""
        return list(dict.fromkeys(self.base(s) for s in SERVICES))


@dataclass
class ClockState:
    now: datetime
    offset_seconds: float
    controllable: bool


class Api:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.requests = 0
        self.records = 0
        self._gate = asyncio.Semaphore(max(1, target.concurrency))
        self._client = httpx.AsyncClient(transport=target.transport, timeout=target.timeout,
                                         headers={"Authorization": f"Bearer {target.token}"})
        self.clock_controllable: bool | None = None
        self.freeze = True

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def call(self, service: str, method: str, path: str, *, json: Any = None, params: dict | None = None,
                   records: int = 0, ok: Iterable[int] = (200, 201), base: str | None = None) -> Any:
        """One request; its JSON answer. Anything but ``ok`` is a SimulationError naming the request."""
        url = f"{base or self.target.base(service)}{path}"
        async with self._gate:
            for attempt in range(3):
                try:
                    response = await self._client.request(method, url, json=json, params=params)
                    break
                except httpx.TransportError as exc:
                    # A busy single-process platform may drop a connection; a few retries, then give up.
                    if attempt == 2:
                        raise SimulationError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
                    await asyncio.sleep(0.5 * (attempt + 1))
        self.requests += 1
        self.records += records
        if response.status_code not in set(ok):
            raise SimulationError(f"{method} {url} → {response.status_code}: {response.text[:500]}")
        if not response.content:
            return None
        if "json" in response.headers.get("content-type", ""):
            return response.json()
        return response.text

    async def gather(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        """Run calls concurrently (the semaphore bounds them); results in the order given."""
        return list(await asyncio.gather(*calls))

    # --- the clock -------------------------------------------------------------

    async def clock(self) -> ClockState | None:
        """The platform's clock, or None when it has no clock endpoint (an older platform)."""
        try:
            body = await self.call("registry", "GET", "/registry/clock")
        except SimulationError as exc:
            if "→ 404" in str(exc):
                return None
            raise
        return ClockState(datetime.fromisoformat(body["now"]), float(body.get("offset_seconds", 0.0)),
                          bool(body.get("controllable", False)))

    async def set_clock(self, moment: datetime | None) -> bool:
        """Put every service's clock at ``moment`` (None: back to the wall clock). False when
        the installation does not let the clock be moved (it then runs on the wall clock)."""
        if self.clock_controllable is False:
            return False
        # Frozen at the step's instant: what the platform stamps during the step (orders, admissions,
        # events) carries exactly the simulated time the ground truth records.
        body = {"offset_seconds": 0} if moment is None else {"now": moment.astimezone(UTC).isoformat(),
                                                              "frozen": self.freeze}
        # Embedded: one process, one clock. Without a gateway: each service's own process.
        bases = self.target.bases()
        try:
            for service in SERVICES:
                base = self.target.base(service)
                if base not in bases:
                    continue
                bases.remove(base)
                await self.call(service, "PUT", f"/{service}/clock", json=body, base=base)
        except SimulationError as exc:
            if "→ 422" in str(exc) and self.freeze:
                self.freeze = False  # a platform whose clock cannot stop: it runs on from each step
                return await self.set_clock(moment)
            if "→ 409" in str(exc) or "→ 404" in str(exc) or "→ 405" in str(exc):
                self.clock_controllable = False
                return False
            raise
        self.clock_controllable = True
        return True

    # --- Prometheus --------------------------------------------------------------

    async def events_published(self) -> int | None:
        """Sum of ``fangkong_bus_published_total`` over the platform's processes (None if unreadable)."""
        total = 0.0
        try:
            for base in self.target.bases():
                text = await self.call("registry", "GET", "/metrics", base=base)
                total += sum(float(v) for v in _PUBLISHED.findall(text or ""))
        except SimulationError:
            return None
        return int(total)


_PUBLISHED = re.compile(r"^fangkong_bus_published_total\{[^}]*\}\s+([0-9.eE+-]+)$", re.MULTILINE)


async def wait_for(check: Callable[[], Awaitable[Any]], *, what: str, timeout: float = 120.0,
                   interval: float = 0.05, max_interval: float = 1.0) -> Any:
    """Poll ``check`` until it returns something truthy; SimulationError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    value = None
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SimulationError(f"等待超时 (timed out after {timeout:.0f} s) waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval)
        interval = min(max_interval, interval * 1.5)
