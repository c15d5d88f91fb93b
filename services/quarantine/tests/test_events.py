"""Consumers over both buses (in-process and real Kafka): each event applied once, one active
order per person and cause, one admission per positive, and what we emit reaches the bus."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from fangkong_common.auth import Role
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import ContactIdentified, PersonReturned, TestPositive
from fangkong_common.testing import eventually, running
from quarantine.config import Settings
from quarantine.main import create_app
from quarantine.models import Case, Order, Placement


async def test_consumers_apply_each_event_once_and_emit_through_the_outbox(bus_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'q.db'}", bus_url=bus_url,
                        scheduler_interval_seconds=0)
    async with running(create_app(settings)) as h:
        received: list[Envelope] = []
        person = h.person_key("idempotent-contact")

        async def collect(envelopes: list[Envelope]) -> None:
            # The broker is shared by the whole test session: keep this test's person only.
            received.extend(e for e in envelopes if e.key == person)

        subscription = await h.bus.subscribe([topics.QUARANTINE_ORDERED, topics.QUARANTINE_ADMITTED],
                                             f"test-{uuid.uuid4().hex}", collect)
        try:
            admin = h.headers(Role.admin)
            for body in ({"id": "hotel", "kind": "hotel", "capacity": 5},
                         {"id": "hospital", "kind": "hospital", "capacity": 5}):
                created = await h.client.post("/quarantine/sites", headers=admin, json={
                    **body, "name": body["id"], "region_code": "420103"})
                assert created.status_code == 201
            when = datetime(2026, 6, 26, 4, tzinfo=UTC)
            c = ContactIdentified(person_key=person, region_code="420102", degree=1,
                                  source_person_key=h.person_key("case"), last_exposure_at=when)
            first = Envelope.wrap(c, source="registry", key=person, occurred_at=when)
            other_event_same_cause = Envelope.wrap(c, source="registry", key=person, occurred_at=when)
            returned = Envelope.wrap(PersonReturned(
                person_key=person, region_code="420102", category="domestic_other", origin_kind="domestic",
                origin_region_code="110101", arrival_date=when.date()), source="registry", key=person,
                occurred_at=when)
            await h.bus.publish([first, first, other_event_same_cause])
            await h.bus.publish([first, returned])  # redelivered, and a second cause for the same person

            async def orders():
                async with h.session() as session:
                    rows = (await session.execute(select(Order.cause, Order.site_id).where(
                        Order.person_key == person).order_by(Order.cause))).all()
                return rows if len(rows) >= 2 else None

            rows = await eventually(orders)
            assert [tuple(r) for r in rows] == [("contact_degree_1", "hotel"), ("returned:domestic_other", None)]

            positive = Envelope.wrap(TestPositive(person_key=person, barcode="B-1", lab_id="lab",
                                                  region_code="420103", resulted_at=when),
                                     source="testing", key=person, occurred_at=when)
            await h.bus.publish([positive, positive])
            await h.bus.publish([positive])

            async def delivered():
                ordered = [e for e in received if e.type == topics.QUARANTINE_ORDERED]
                admitted = [e for e in received if e.type == topics.QUARANTINE_ADMITTED
                            and e.parsed().site_kind == "hospital"]
                return (ordered, admitted) if len(ordered) >= 2 and admitted else None

            ordered, admitted = await eventually(delivered, timeout=60)
            await asyncio.sleep(1.0)  # room for any duplicate to show up
            assert len([e for e in received if e.type == topics.QUARANTINE_ORDERED]) == 2
            # one for the hotel room of the contact order, one for the hospital bed: no duplicate
            assert sorted(e.parsed().site_kind for e in received if e.type == topics.QUARANTINE_ADMITTED) == [
                "hospital", "hotel"]
            assert all(e.source == "quarantine" and e.key == person for e in received)
            assert admitted[0].parsed().origin_region_code == "420102"
            async with h.session() as session:
                # (other tests' positives on the shared broker reach this service too: count this person's)
                assert await session.scalar(select(func.count()).select_from(Case)
                                            .where(Case.person_key == person)) == 1
                open_beds = (await session.execute(select(Placement.site_id).where(
                    Placement.released_at.is_(None), Placement.person_key == person))).scalars().all()
                assert open_beds == ["hospital"]  # the hotel room was given back
                statuses = sorted((await session.scalars(select(Order.status)
                                                         .where(Order.person_key == person))).all())
                assert statuses == ["hospitalized", "hospitalized"]
        finally:
            await subscription.stop()
