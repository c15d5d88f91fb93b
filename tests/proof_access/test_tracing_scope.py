"""Contact tracing crosses regions outward from one's own chain, never into another's: the
matrix found a district commander could write contacts (and so quarantine orders) between two
people of another district."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from fangkong_common.auth import Role
from fangkong_common.events.schemas import TestPositive
from fangkong_common.identity import make_resident_id
from fangkong_common.testing import eventually, running
from registry.config import Settings
from registry.main import create_app

pytestmark = pytest.mark.proof("access")
SZ, WUHAN = "440305", "420102"
EXPOSED = "2022-03-18T10:00:00+08:00"


def person(code: str, n: int) -> dict:
    return {"id_number": make_resident_id(code, date(1990, 5, n), 500 + n), "name": f"协查{n}", "region_code": code,
            "grid": "g1"}


async def test_tracers_cross_regions_from_their_own_chain_only(tmp_path: Path, proof) -> None:
    proof.injected("a Shenzhen case, its close contact living in Wuhan; contacts recorded by each city's commander "
                   "and a doctor from their own chain and from the other city's")
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/r.db", bus_url=f"memory://trace-{id(tmp_path)}")
    async with running(create_app(settings)) as h:
        admin = h.headers(Role.admin)
        sz, wuhan = (h.headers(Role.commander, regions=[code]) for code in (SZ, WUHAN))
        doctor_sz = h.headers(Role.medical, regions=[SZ])
        cases = {}
        for code, n in ((SZ, 1), (WUHAN, 2)):
            cases[code] = (await h.client.post("/registry/persons", json=person(code, n), headers=admin)).json()["id"]
            await h.publish(TestPositive(person_key=cases[code], barcode=f"T{n}", lab_id="lab", region_code=code,
                                         resulted_at=datetime(2022, 3, 20, tzinfo=UTC)))

        async def both_cases() -> bool:
            got = [(await h.client.get(f"/registry/persons/{k}", headers=admin)).json()["is_case"]
                   for k in cases.values()]
            return all(got)

        await eventually(both_cases)

        async def contact(headers: dict, body: dict, source: str) -> int:
            response = await h.client.post("/registry/contacts", headers=headers, json={
                "person": body, "source_person_id": source, "exposure_at": EXPOSED, "setting": "transport",
                "reported_by": "流调组"})
            return response.status_code

        outcomes = {
            # Shenzhen traces its case's contact who lives in Wuhan (协查): allowed.
            "sz: own case -> contact in wuhan": await contact(sz, person(WUHAN, 3), cases[SZ]),
            # ... and that contact's own contact (次密接), source in Wuhan but the chain is Shenzhen's: allowed.
            "sz: own chain, source in wuhan -> 2nd degree": await contact(
                sz, person(WUHAN, 4), h.person_key(person(WUHAN, 3)["id_number"])),
            # Wuhan traces the contact living in Wuhan further: its own person, allowed.
            "wuhan: own resident (sz chain) -> 2nd degree": await contact(
                wuhan, person(WUHAN, 5), h.person_key(person(WUHAN, 3)["id_number"])),
            # Shenzhen writing into Wuhan's own chain (a Wuhan case): refused.
            "sz: wuhan's case -> contact": await contact(sz, person(WUHAN, 6), cases[WUHAN]),
            "sz doctor: wuhan's case -> contact in sz": await contact(doctor_sz, person(SZ, 7), cases[WUHAN]),
            "wuhan: sz's case -> contact in sz": await contact(wuhan, person(SZ, 8), cases[SZ]),
        }
    allowed = {k for k, v in outcomes.items() if v in (200, 201)}
    refused = {k for k, v in outcomes.items() if v == 403}
    assert allowed == {k for k in outcomes if k.startswith(("sz: own", "wuhan: own"))}, outcomes
    assert refused == set(outcomes) - allowed, outcomes
    proof.measured(f"{len(allowed)} contacts from the tracer's own chain recorded (across cities); "
                   f"{len(refused)} into another city's chain refused (403)")
