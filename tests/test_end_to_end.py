"""The four services together, embedded as `fangkong up` runs them (one process, the
in-process bus, a SQLite file each): a returnee from abroad is registered, put under
a quarantine order, swabbed, found positive, sent to a hospital bed, traced, and the
command screen's numbers follow — every hop through public HTTP APIs and events only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from fangkong_cli.platform import create_platform
from fangkong_common.auth import Role, issue_token
from fangkong_common.testing import eventually
from registry.domain.idcard import make_resident_id

CITY, COUNTY = "440300", "440305"


async def test_a_positive_returnee_goes_from_registration_to_a_bed_and_onto_the_screen(tmp_path: Path) -> None:
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://e2e-{uuid.uuid4().hex}"})
    settings = platform.apps["registry"].state.settings
    secret = settings.jwt_secret.get_secret_value()

    def headers(role: Role, **scope) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(secret, role=role, **scope)}"}

    commander = headers(Role.commander, regions=[CITY])
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    async with platform.fallback.router.lifespan_context(platform.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://p",
                                     timeout=30) as client:
            hotel = await client.post("/quarantine/sites", headers=commander, json={
                "name": "南山隔离酒店", "kind": "hotel", "region_code": CITY, "capacity": 20})
            hospital = await client.post("/quarantine/sites", headers=commander, json={
                "name": "市第三人民医院", "kind": "hospital", "region_code": CITY, "capacity": 10})
            assert hotel.status_code == hospital.status_code == 201, (hotel.text, hospital.text)

            person = await client.post("/registry/persons", headers=commander, json={
                "id_number": make_resident_id(COUNTY, datetime(1988, 8, 8).date(), 21), "name": "归国人员",
                "phone": "13912345678", "region_code": COUNTY, "grid": "g1"})
            assert person.status_code == 201, person.text
            key = person.json()["id"]
            travel = await client.post(f"/registry/persons/{key}/travel", headers=commander, json={
                "origin_kind": "international", "origin_country": "GB", "arrival_date": today.isoformat(),
                "port_of_entry": CITY, "transport": {"kind": "flight", "number": "CZ304"}})
            assert travel.json()["category"] == "inbound_international"

            async def ordered():
                page = (await client.get("/quarantine/orders", params={"person_id": key}, headers=commander)).json()
                return page["items"]

            [order] = await eventually(ordered)
            assert [s["kind"] for s in order["stages"]][:2] == ["centralized", "centralized"]
            assert sum((datetime.fromisoformat(s["end_date"]) - datetime.fromisoformat(s["start_date"])).days + 1
                       for s in order["stages"]) == 28  # 14 port + 7 municipal + 7 home

            site = await client.post("/testing/sites", headers=commander, json={
                "name": "南山采样点", "region_code": COUNTY, "latitude": 22.53, "longitude": 113.93,
                "swabs_per_hour": 300})
            lab = await client.post("/testing/labs", headers=commander, json={
                "name": "南山检测中心", "region_code": COUNTY, "latitude": 22.54, "longitude": 113.95,
                "tubes_per_day": 20000, "reagent_stock": 100000})
            assert site.status_code == lab.status_code == 201, (site.text, lab.text)
            site_id, lab_id = site.json()["id"], lab.json()["id"]
            swabbed = datetime.now(UTC) - timedelta(hours=3)
            tubes = await client.post("/testing/tubes", headers=headers(Role.site_staff, regions=[COUNTY],
                                                                         sites=[site_id]), json={
                "tubes": [{"barcode": "E2E-0001", "ratio": 1, "members": [key], "site_id": site_id,
                           "collected_at": swabbed.isoformat()}]})
            assert tubes.status_code == 201, tubes.text
            result = await client.post("/testing/results", headers=headers(Role.lab, regions=[COUNTY],
                                                                           sites=[lab_id]), json={
                "results": [{"barcode": "E2E-0001", "result": "positive", "ct_value": 28.5, "lab_id": lab_id,
                             "tested_at": datetime.now(UTC).isoformat()}]})
            assert result.status_code == 200, result.text

            async def admitted():
                cases = (await client.get("/quarantine/cases", params={"classified": "false"},
                                          headers=commander)).json()
                return [c for c in cases if c["person_key"] == key and c["site_id"] == hospital.json()["id"]]

            await eventually(admitted)

            async def registry_knows_the_case():
                return (await client.get(f"/registry/persons/{key}", headers=commander)).json()["is_case"]

            await eventually(registry_knows_the_case)
            contact = await client.post("/registry/contacts", headers=commander, json={
                "person": {"id_number": make_resident_id(COUNTY, datetime(1990, 1, 2).date(), 33), "name": "同住家属",
                           "region_code": COUNTY, "grid": "g1"},
                "source_person_id": key, "exposure_at": datetime.now(UTC).isoformat(), "setting": "household",
                "reported_by": "流调组"})
            assert contact.json()["degree"] == 1

            async def contact_ordered():
                page = (await client.get("/quarantine/orders", params={"person_id": contact.json()["person_id"]},
                                         headers=commander)).json()
                return page["items"]

            await eventually(contact_ordered)

            async def screen_shows_it():
                kpis = (await client.get("/dashboard/kpis", params={"region_code": CITY},
                                         headers=commander)).json()
                by_name = {k["name"]: k for k in kpis["kpis"]}
                treated, isolated = by_name["treated"], by_name["isolated"]
                assert (treated["numerator"], treated["denominator"]) == (1, 1), kpis
                # The returnee's order ended at the hospital; the contact holds a hotel room.
                assert (isolated["numerator"], isolated["denominator"]) == (1, 1), kpis
                return kpis

            await eventually(screen_shows_it)
            screen = await client.get("/")
            assert screen.status_code == 200 and "echarts" in screen.text.lower()
