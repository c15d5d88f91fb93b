"""The embedded platform, seeded through its public HTTP API in four places, for the access proofs.

Regions: two sibling districts of one city (A = 440305 南山, B = 440306 宝安), the city
itself (P = 440300, where the city's quarantine sites are) and a district of another
city (C = 110105 朝阳). Every record made in a place is remembered as a *marker* (ids,
person keys, ID numbers, names, phones, region code): a caller that may not see that
place must never find one of them in any response.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from fangkong_cli.platform import create_platform
from fangkong_common import clock
from fangkong_common.auth import Role, issue_token
from fangkong_common.identity import make_resident_id
from fangkong_common.testing import eventually

A, B, P, C = "440305", "440306", "440300", "110105"
TAGS = {A: "南山", B: "宝安", P: "深圳市", C: "朝阳"}


@dataclass
class Place:
    code: str
    grid: str = ""
    persons: list[str] = field(default_factory=list)  # person keys: [returnee, contact]
    ids: dict[str, str] = field(default_factory=dict)  # what -> record id, for path parameters
    markers: set[str] = field(default_factory=set)  # strings only this place's records carry
    pii: dict[str, str] = field(default_factory=dict)  # raw ID number, phone or address -> the person's key


    def pii_of(self, kind: str) -> str:
        """The returnee's raw ID number (or phone, address), as registered."""
        return next(value for value, key in self.pii.items() if key == self.persons[0]
                    and (kind != "id_number" or len(value) == 18 and value[:6] == self.code))


@dataclass
class Seeded:
    client: httpx.AsyncClient
    secret: str
    places: dict[str, Place]
    platform: object

    @property
    def pii(self) -> dict[str, str]:
        return {value: key for place in self.places.values() for value, key in place.pii.items()}

    def token(self, role: Role | str, **scope) -> str:
        return issue_token(self.secret, role=role, **scope)

    def headers(self, role: Role | str, **scope) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **scope)}"}


async def _ok(response: httpx.Response, *codes: int) -> dict:
    assert response.status_code in (codes or (200, 201)), (response.request.method, response.request.url,
                                                           response.status_code, response.text[:500])
    return response.json()


async def seed_place(s: Seeded, place: Place, n: int) -> None:
    """One district's worth of records, each through the API a user of that district would use."""
    c, admin, code, tag = s.client, s.headers(Role.admin), place.code, TAGS[place.code]
    commander = s.headers(Role.commander, regions=[code])
    today = clock.today()
    place.grid = f"grid-{code}"
    place.markers.add(code)
    people = []
    for i, role in enumerate(("returnee", "contact")):
        number = make_resident_id(code, date(1980 + n, 1 + i, 10 + i), 100 + n * 10 + i)
        name, phone = f"{tag}{role}{n}{i}", f"139{code[-3:]}{n}{i:04d}"
        people.append({"id_number": number, "name": name, "phone": phone, "region_code": code,
                       "grid": place.grid, "address": f"{tag}街道{n}{i}号"})
        place.markers |= {number, name, phone}
    returnee = (await _ok(await c.post("/registry/persons", json=people[0], headers=commander)))["id"]
    await _ok(await c.post(f"/registry/persons/{returnee}/travel", headers=commander, json={
        "origin_kind": "international", "origin_country": "GB", "arrival_date": today.isoformat(),
        "port_of_entry": code[:4] + "00", "transport": {"kind": "flight", "number": f"CZ{n}04"}}))
    place.ids["person_id"] = returnee
    place.pii |= {people[0][f]: returnee for f in ("id_number", "phone", "address")}

    checkpoint = await _ok(await c.post("/registry/checkpoints", headers=commander, json={
        "name": f"{tag}卡口", "region_code": code, "kind": "road"}))
    await _ok(await c.post(f"/registry/checkpoints/{checkpoint['id']}/passes", headers=commander, json={
        "passes": [{"person_id": returnee, "temperature_c": 36.5, "passed_at": datetime.now(UTC).isoformat()}]}))
    gathering = await _ok(await c.post("/registry/gatherings", headers=commander, json={
        "kind": "wedding", "organiser": f"{tag}组织人", "organiser_phone": f"137{code[-3:]}{n}0000",
        "place": f"{tag}酒楼", "region_code": code, "held_on": (today + timedelta(days=3)).isoformat(),
        "expected_attendees": 50}))
    await _ok(await c.post("/registry/vaccinations", headers=commander, json={
        "person_id": returnee, "vaccine": "CoronaVac", "dose_number": 1, "vaccinated_on": today.isoformat()}))
    await _ok(await c.put("/registry/vaccination-targets", headers=commander, json={
        "region_code": code, "age_group": "18+", "target_people": 1000 + n, "deadline": "2027-12-31"}))
    area = await _ok(await c.post("/registry/risk-areas", headers=commander, json={
        "region_code": code, "name": f"{tag}风险区", "level": "medium",
        "effective_from": (today + timedelta(days=30)).isoformat()}))
    place.ids |= {"checkpoint_id": checkpoint["id"], "gathering_id": gathering["id"], "area_id": area["id"]}
    place.markers |= {checkpoint["id"], gathering["id"], f"{tag}卡口", f"{tag}组织人", f"{tag}酒楼"}

    site = await _ok(await c.post("/testing/sites", headers=commander, json={
        "name": f"{tag}采样点", "region_code": code, "latitude": 22.5, "longitude": 113.9, "swabs_per_hour": 300}))
    lab = await _ok(await c.post("/testing/labs", headers=commander, json={
        "name": f"{tag}检测中心", "region_code": code, "latitude": 22.5, "longitude": 113.9,
        "tubes_per_day": 20000, "reagent_stock": 100000}))
    place.ids |= {"testing_site": site["id"], "lab_id": lab["id"]}
    barcode = f"ACC-{code}-{n}"
    place.markers |= {site["id"], lab["id"], barcode, f"{tag}采样点", f"{tag}检测中心"}
    swabbed = datetime.now(UTC) - timedelta(hours=3)
    await _ok(await c.post("/testing/tubes", headers=s.headers(Role.site_staff, regions=[code], sites=[site["id"]]),
                           json={"tubes": [{"barcode": barcode, "ratio": 1, "members": [returnee],
                                            "site_id": site["id"], "collected_at": swabbed.isoformat()}]}))
    await _ok(await c.post("/testing/results", headers=s.headers(Role.lab, regions=[code], sites=[lab["id"]]),
                           json={"results": [{"barcode": barcode, "result": "positive", "ct_value": 28.0,
                                              "lab_id": lab["id"], "tested_at": datetime.now(UTC).isoformat()}]}))

    async def is_case():
        return (await c.get(f"/registry/persons/{returnee}", headers=commander)).json()["is_case"]

    await eventually(is_case)  # a contact is traced from a case
    contact = await _ok(await c.post("/registry/contacts", headers=commander, json={
        "person": people[1], "source_person_id": returnee, "exposure_at": datetime.now(UTC).isoformat(),
        "setting": "household", "reported_by": f"{tag}流调组"}))
    place.persons = [returnee, contact["person_id"]]
    place.pii |= {people[1][f]: contact["person_id"] for f in ("id_number", "phone", "address")}
    place.markers |= set(place.persons)

    unit = f"unit-{code}"
    await _ok(await c.post("/dashboard/units", headers=commander, json={
        "unit_id": unit, "name": f"{tag}街道办", "region_code": code}))
    await _ok(await c.post("/dashboard/unit-reports", headers=commander, json={
        "unit_id": unit, "date": today.isoformat(), "zero": True}))
    rect = await _ok(await c.post("/dashboard/rectifications", headers=commander, json={
        "region_code": code, "unit_id": unit, "finding": f"{tag}漏报", "owner": f"{tag}负责人",
        "deadline": (today + timedelta(days=2)).isoformat()}))
    await _ok(await c.put("/dashboard/vaccination-targets", headers=commander, json={
        "region_code": code, "age_group": "18+", "target": 500 + n, "deadline": "2027-12-31"}))
    hook = await _ok(await c.post("/dashboard/webhooks", headers=commander, json={
        "url": f"https://hook-{code}.example/h", "event_types": ["test.positive"], "secret": "x" * 20}))
    place.ids |= {"unit_id": unit, "rectification_id": rect["id"], "webhook_id": hook["id"]}
    place.markers |= {unit, rect["id"], hook["id"], f"hook-{code}", f"{tag}街道办", f"{tag}漏报", f"{tag}负责人"}
    del admin


async def finish_place(s: Seeded, place: Place) -> None:
    """After the events flowed: the orders (returnee and contact), the case, a transfer."""
    c, commander = s.client, s.headers(Role.commander, regions=[place.code])
    admin = s.headers(Role.admin)

    async def orders():
        page = (await c.get("/quarantine/orders", params={"limit": 1000}, headers=admin)).json()
        mine = {o["person_key"]: o for o in page["items"] if o["person_key"] in place.persons}
        return mine if len(mine) == len(place.persons) else None

    mine = await eventually(orders)
    place.ids["order_id"] = mine[place.persons[0]]["id"]
    place.markers |= {o["id"] for o in mine.values()}

    async def case():
        cases = (await c.get("/quarantine/cases", headers=admin)).json()
        return [x for x in cases if x["person_key"] == place.persons[0]]

    await eventually(case)
    contact_order = mine[place.persons[1]]
    transfer = await _ok(await c.post("/quarantine/transfers", headers=commander, json={
        "person_key": place.persons[1], "order_id": contact_order["id"], "from_place": f"{TAGS[place.code]}家中",
        "to_place": "隔离酒店", "vehicle": f"粤B{place.code[-3:]}", "escort": f"{TAGS[place.code]}护送员"}))
    place.ids["transfer_id"] = transfer["id"]
    place.markers |= {transfer["id"], f"{TAGS[place.code]}家中", f"{TAGS[place.code]}护送员"}


@contextlib.asynccontextmanager
async def seeded_platform(tmp_path: Path, *, settings: dict | None = None,
                          per_service: dict | None = None) -> AsyncIterator[Seeded]:
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://access-{uuid.uuid4().hex}",
                                **(settings or {})}, per_service=per_service)
    secret = platform.apps["registry"].state.settings.jwt_secret.get_secret_value()
    async with platform.fallback.router.lifespan_context(platform.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://p",
                                     timeout=60) as client:
            s = Seeded(client, secret, {code: Place(code) for code in (A, B, P, C)}, platform)
            admin = s.headers(Role.admin)
            # The quarantine sites are the city's (P) and the other city's (C): a district sees
            # its own people's orders, not a city hotel's other guests.
            city_sites = {}
            for code in (P, C):
                for kind in ("hotel", "hospital", "port"):
                    site = await _ok(await client.post("/quarantine/sites", headers=admin, json={
                        "name": f"{TAGS[code]}{kind}", "kind": kind, "region_code": code, "capacity": 50}))
                    city_sites.setdefault(code, []).append(site["id"])
                    # The site's name marks it; its id does not: a district's own orders and cases
                    # name the city site its people stay at, which is theirs to know.
                    s.places[code].markers.add(f"{TAGS[code]}{kind}")
                s.places[code].ids["site_id"] = city_sites[code][0]
            for n, code in enumerate((A, B, C), start=1):
                await seed_place(s, s.places[code], n)
            for code in (A, B, C):
                await finish_place(s, s.places[code])
            yield s
