"""The platform as separate processes on real Kafka and PostgreSQL (what compose deploys)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from fangkong_common.auth import Role
from fangkong_common.testing import eventually
from registry.domain.idcard import make_resident_id
from tests.multiprocess import MultiProcessPlatform

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
CITY, COUNTY = "440300", "440305"


async def test_a_returnee_registered_in_one_process_is_ordered_by_another_and_counted_by_a_third(
    multiprocess_platform: MultiProcessPlatform,
) -> None:
    platform = multiprocess_platform
    commander = platform.headers(Role.commander, regions=[CITY])
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    async with httpx.AsyncClient(timeout=30) as client:
        person = await client.post(f"{platform.url('registry')}/registry/persons", headers=commander, json={
            "id_number": make_resident_id(COUNTY, date(1985, 5, 5), 7), "name": "归国人员",
            "region_code": COUNTY, "grid": "g1"})
        assert person.status_code == 201, person.text
        key = person.json()["id"]
        travel = await client.post(f"{platform.url('registry')}/registry/persons/{key}/travel", headers=commander,
                                   json={"origin_kind": "international", "origin_country": "GB",
                                         "arrival_date": today.isoformat(), "port_of_entry": CITY,
                                         "transport": {"kind": "flight", "number": "CZ304"}})
        assert travel.status_code in (200, 201), travel.text

        async def ordered():
            page = (await client.get(f"{platform.url('quarantine')}/quarantine/orders", params={"person_id": key},
                                     headers=commander)).json()
            return page["items"]

        [order] = await eventually(ordered, timeout=60)
        assert order["person_key"] == key

        async def counted():
            regions = (await client.get(f"{platform.url('dashboard')}/dashboard/regions",
                                        params={"region_code": CITY}, headers=commander)).json()
            return regions

        assert await eventually(counted, timeout=60)
    assert platform.stop() == {name: 0 for name in platform.services}, platform.logs()
