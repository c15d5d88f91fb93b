"""The registry's events over both buses: the in-process one and real Kafka."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from fangkong_common.auth import Role
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import TestPositive
from fangkong_common.testing import eventually, running

from registry.config import Settings
from registry.domain.idcard import make_resident_id
from registry.main import create_app
from registry.models import Case

SZ = "440305"


async def test_returnees_reach_the_bus_and_positives_become_cases_once(bus_url: str, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", bus_url=bus_url)
    async with running(create_app(settings)) as h:
        headers = h.headers(Role.commander, regions=[SZ])
        received: list[Envelope] = []

        async def collect(envelopes: list[Envelope]) -> None:
            received.extend(envelopes)

        subscription = await h.bus.subscribe([topics.PERSON_RETURNED], f"test-{uuid.uuid4().hex}", collect)
        try:
            number = make_resident_id(SZ, datetime(1990, 1, 1).date(), uuid.uuid4().int % 1000)
            person = (await h.client.post("/registry/persons", headers=headers, json={
                "id_number": number, "name": "归来", "region_code": SZ})).json()
            travel = await h.client.post(f"/registry/persons/{person['id']}/travel", headers=headers, json={
                "origin_kind": "international", "origin_country": "US", "arrival_date": "2022-03-20",
                "port_of_entry": "440300"})
            assert travel.status_code == 201

            async def delivered():
                return [e for e in received if e.key == person["id"]]

            [event] = await eventually(delivered)
            assert event.type == "person.returned" and event.source == "registry"
            assert event.parsed().category == "inbound_international"
        finally:
            await subscription.stop()

        positive = Envelope.wrap(TestPositive(person_key=person["id"], barcode="B1", lab_id="L1", region_code=SZ,
                                              resulted_at=datetime(2022, 3, 21, tzinfo=UTC)), source="testing",
                                 key=person["id"])
        await h.bus.publish([positive, positive])  # delivered twice
        await h.bus.publish_records([(topics.TEST_POSITIVE, b"x", b"{not json", [])])  # and a poison message
        other = uuid.uuid4().hex * 2
        later = Envelope.wrap(TestPositive(person_key=other, barcode="B2", lab_id="L1", region_code=SZ,
                                           resulted_at=datetime(2022, 3, 22, tzinfo=UTC)), source="testing",
                              key=other)
        await h.bus.publish([later])

        mine = {person["id"], later.key}

        async def cases():
            async with h.session() as session:
                return (await session.scalar(select(func.count()).select_from(Case)
                                             .where(Case.person_key.in_(mine)))) == 2

        # Both applied, the first once although delivered twice; the poison message did not stop the
        # consumer. (On the shared broker other tests' positives may arrive too: only ours are counted.)
        assert await eventually(cases)
