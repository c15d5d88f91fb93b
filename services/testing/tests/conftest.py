"""Fixtures for the testing service's tests: a running service and an event collector."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from fangkong_common.auth import Role
from fangkong_common.events.envelope import Envelope
from fangkong_common.testing import ServiceHarness, eventually, running
from testing.config import Settings
from testing.main import create_app

REGION = "440300"  # Shenzhen
DISTRICT = "440305"  # Nanshan


class Collector:
    """Reads the service's events off the real bus (memory or Kafka) with its own consumer group."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self._ids: set = set()

    async def handle(self, envelopes: list[Envelope]) -> None:
        # The bus delivers at least once (the relay and a test's flush may both publish a row):
        # count each event once, by its id, as an idempotent consumer would.
        for envelope in envelopes:
            if envelope.id not in self._ids:
                self._ids.add(envelope.id)
                self.envelopes.append(envelope)

    def of(self, event_type: str, barcodes: set[str] | None = None, key: str = "barcode") -> list[Envelope]:
        return [e for e in self.envelopes if e.type == event_type
                and (barcodes is None or e.payload.get(key) in barcodes)]


@pytest.fixture
async def svc(database_url: str) -> AsyncIterator[ServiceHarness]:
    settings = Settings(database_url=database_url, bus_url=f"memory://t-{uuid.uuid4().hex}", outbox_poll_seconds=0.05)
    async with running(create_app(settings)) as h:
        yield h


@pytest.fixture
async def events(svc: ServiceHarness) -> AsyncIterator[Collector]:
    collector = Collector()
    sub = await svc.bus.subscribe(["test.collected", "test.pool_positive", "test.positive", "test.negative",
                                   "testing.capacity_alert"], f"collector-{uuid.uuid4().hex[:8]}", collector.handle)
    yield collector
    await sub.stop()


def commander(h: ServiceHarness, region: str = REGION) -> dict:
    return h.headers(Role.commander, regions=[region])


async def make_site(h: ServiceHarness, **overrides) -> str:
    body = {"name": "南山区体育中心采样点", "region_code": DISTRICT, "latitude": 22.53, "longitude": 113.93,
            "swabs_per_hour": 600, "opens_at": "08:00", "closes_at": "20:00", **overrides}
    r = await h.client.post("/testing/sites", json=body, headers=commander(h))
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def make_lab(h: ServiceHarness, **overrides) -> str:
    body = {"name": "南山区第三方检测实验室", "region_code": DISTRICT, "latitude": 22.54, "longitude": 113.95,
            "tubes_per_day": 20_000, "reagent_stock": 100_000, "turnaround_hours": 24, **overrides}
    r = await h.client.post("/testing/labs", json=body, headers=commander(h))
    assert r.status_code == 201, r.text
    return r.json()["id"]


def staff(h: ServiceHarness, *site_ids: str) -> dict:
    return h.headers(Role.site_staff, regions=[DISTRICT], sites=list(site_ids))


def lab_staff(h: ServiceHarness, *lab_ids: str) -> dict:
    return h.headers(Role.lab, regions=[DISTRICT], sites=list(lab_ids))


def id_number(n: int) -> str:
    """A well-formed resident ID number (GB 11643 check digit)."""
    body = f"44030519900101{n:03d}"[:14] + f"{n % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]
    return body + check


class Kit:
    """The helpers above, handed to tests as a fixture (test modules cannot import conftest)."""

    REGION = REGION
    DISTRICT = DISTRICT
    commander = staticmethod(commander)
    make_site = staticmethod(make_site)
    make_lab = staticmethod(make_lab)
    staff = staticmethod(staff)
    lab_staff = staticmethod(lab_staff)
    id_number = staticmethod(id_number)
    eventually = staticmethod(eventually)


@pytest.fixture
def kit() -> type[Kit]:
    return Kit
