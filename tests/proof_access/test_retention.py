"""Retention: closed records older than FANGKONG_RETENTION_DAYS lose their personal data on the
services' own schedule, with an audit row; open or recent records keep theirs; every count the
screen and the registry show stays the same."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from fangkong_cli.platform import create_platform
from fangkong_common import clock
from fangkong_common.audit import PiiAuditEntry
from fangkong_common.auth import Role, issue_token
from fangkong_common.clock import CHINA_TZ
from fangkong_common.identity import make_resident_id
from fangkong_common.retention import ACTOR, ERASED
from fangkong_common.testing import eventually

pytestmark = pytest.mark.proof("access")
A, CITY = "440305", "440300"
DAYS = 180


async def test_closed_records_past_the_period_lose_pii_on_schedule_and_counts_stay(tmp_path: Path, per_service: dict,
                                                                                  proof) -> None:
    proof.injected(f"retention {DAYS} days, job every 0.2 s; people, a gathering, transfers, cases seeded at T0 "
                   "and T0+120 d; quarantine released at T0+30 d; clock moved to T0+211 d "
                   f"({'PostgreSQL' if per_service else 'SQLite'})")
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://ret-{uuid.uuid4().hex}",
                                "retention_days": DAYS, "retention_interval_seconds": 0.2,
                                # the quarantine daily job runs when the test says (it would re-plan mid-comparison)
                                "scheduler_interval_seconds": 0, "forecast_interval_seconds": 0},
                               per_service=per_service)
    secret = platform.apps["registry"].state.settings.jwt_secret.get_secret_value()

    def h(role: Role, **scope) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(secret, role=role, **scope)}"}

    admin, commander = h(Role.admin), h(Role.commander, regions=[CITY])
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    try:
        clock.move_to(t0, freeze=True)
        async with platform.fallback.router.lifespan_context(platform.fallback):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://p",
                                         timeout=60) as c:
                people = {}

                async def register(label: str, n: int, travel: bool = False) -> str:
                    body = {"id_number": make_resident_id(A, date(1985, 3, n), 300 + n), "name": f"保留{label}",
                            "phone": f"1391234{n:04d}", "region_code": A, "grid": "g1", "address": f"南山路{n}号"}
                    response = await c.post("/registry/persons", json=body, headers=commander)
                    assert response.status_code == 201, response.text
                    key = response.json()["id"]
                    people[label] = (key, body)
                    if travel:
                        day = clock.today().isoformat()
                        assert (await c.post(f"/registry/persons/{key}/travel", headers=commander, json={
                            "origin_kind": "international", "origin_country": "GB", "arrival_date": day,
                            "port_of_entry": CITY})).status_code == 201
                    return key

                hotel = await c.post("/quarantine/sites", headers=admin, json={
                    "name": "市隔离酒店", "kind": "hotel", "region_code": CITY, "capacity": 50})
                await c.post("/quarantine/sites", headers=admin, json={
                    "name": "市定点医院", "kind": "hospital", "region_code": CITY, "capacity": 50})
                await c.post("/quarantine/sites", headers=admin, json={
                    "name": "口岸酒店", "kind": "port", "region_code": CITY, "capacity": 50})
                old = await register("old", 1, travel=True)
                classified = await register("classified", 2)
                unclassified = await register("unclassified", 3)
                site = (await c.post("/testing/sites", headers=commander, json={
                    "name": "南山采样点", "region_code": A, "latitude": 22.5, "longitude": 113.9,
                    "swabs_per_hour": 100})).json()["id"]
                lab = (await c.post("/testing/labs", headers=commander, json={
                    "name": "南山检测", "region_code": A, "latitude": 22.5, "longitude": 113.9,
                    "tubes_per_day": 1000, "reagent_stock": 1000})).json()["id"]
                for n, key in enumerate((classified, unclassified)):
                    barcode = f"RET-{n}"
                    assert (await c.post("/testing/tubes", headers=h(Role.site_staff, regions=[A], sites=[site]),
                                         json={"tubes": [{"barcode": barcode, "ratio": 1, "members": [key],
                                                          "site_id": site,
                                                          "collected_at": clock.now().isoformat()}]})).status_code == 201
                    assert (await c.post("/testing/results", headers=h(Role.lab, regions=[A], sites=[lab]), json={
                        "results": [{"barcode": barcode, "result": "positive", "ct_value": 25, "lab_id": lab,
                                     "tested_at": clock.now().isoformat()}]})).status_code == 200

                async def quarantine_case() -> bool:
                    cases = (await c.get("/quarantine/cases", headers=admin)).json()
                    return {classified, unclassified} <= {x["person_key"] for x in cases}

                await eventually(quarantine_case)
                assert (await c.post(f"/quarantine/cases/{classified}/classification", headers=h(Role.medical, regions=[CITY]),
                                     json={"classification": "confirmed", "severity": "mild"})).status_code == 200
                gathering = (await c.post("/registry/gatherings", headers=commander, json={
                    "kind": "wedding", "organiser": "王组织", "organiser_phone": "13711112222", "place": "南山酒楼",
                    "region_code": A, "held_on": (clock.today() + timedelta(days=3)).isoformat(),
                    "expected_attendees": 40})).json()["id"]

                async def order_of(key: str) -> dict:
                    async def find():
                        items = (await c.get("/quarantine/orders", params={"person_id": key},
                                             headers=admin)).json()["items"]
                        return items[0] if items else None
                    return await eventually(find)

                async def transfer(key: str, note: str) -> str:
                    order = await order_of(key)
                    made = await c.post("/quarantine/transfers", headers=commander, json={
                        "person_key": key, "order_id": order["id"], "from_place": f"{note}家中住址",
                        "to_site_id": hotel.json()["id"], "to_place": "市隔离酒店", "vehicle": "粤B12345",
                        "escort": f"{note}护送员"})
                    assert made.status_code == 201, made.text
                    for status in ("dispatched", "arrived"):
                        assert (await c.patch(f"/quarantine/transfers/{made.json()['id']}", headers=commander,
                                              json={"status": status})).status_code == 200
                    return made.json()["id"]

                old_transfer = await transfer(old, "旧")

                async def registry_classified() -> bool:
                    return (await c.get(f"/registry/persons/{classified}", headers=commander)).json()["is_case"]

                await eventually(registry_classified)
                await _settle(platform)

                # T0+30 d: the old order is released (its 21+7 days are over).
                clock.move_to(t0 + timedelta(days=30), freeze=True)
                run = await c.post("/quarantine/scheduler/run", headers=admin)
                assert run.status_code == 200 and run.json()["released"] >= 1, run.text
                assert (await order_of(old))["status"] == "released"
                # T0+120 d: someone new arrives; their record is recent at the end.
                clock.move_to(t0 + timedelta(days=120), freeze=True)
                recent = await register("recent", 4, travel=True)
                recent_transfer = await transfer(recent, "新")
                await _settle(platform)

                # T0+211 d: the cutoff is T0+31 d. Freeze the job out while the "before" figures are read.
                platform.apps["registry"].state.settings.retention_days = 10_000
                platform.apps["quarantine"].state.settings.retention_days = 10_000
                clock.move_to(t0 + timedelta(days=211), freeze=True)
                before = await _figures(c, admin, commander, t0)
                platform.apps["registry"].state.settings.retention_days = DAYS
                platform.apps["quarantine"].state.settings.retention_days = DAYS

                async def scrubbed() -> list:
                    async with platform.apps["registry"].state.database.sessionmaker() as session:
                        return (await session.scalars(select(PiiAuditEntry).where(
                            PiiAuditEntry.subject == "retention:registry"))).all()

                [summary] = await eventually(scrubbed)

                async def quarantine_scrubbed() -> list:
                    async with platform.apps["quarantine"].state.database.sessionmaker() as session:
                        return (await session.scalars(select(PiiAuditEntry).where(
                            PiiAuditEntry.action == "erase"))).all()

                [q_summary] = await eventually(quarantine_scrubbed)
                if not per_service:
                    # Gone from the files too (database and WAL), not only from the rows.
                    gone = [people[label][1][f].encode() for label in ("old", "classified")
                            for f in ("id_number", "phone", "address")]

                    async def not_on_disk() -> bool:
                        files = b"".join(f.read_bytes() for f in tmp_path.glob("registry.db*"))
                        return not [raw for raw in gone if raw in files]

                    await eventually(not_on_disk, timeout=5)
                after = await _figures(c, admin, commander, t0)
                seen = {label: (await c.get(f"/registry/persons/{key}", headers=commander)).json()
                        for label, (key, _) in people.items()}
                transfers = {t["id"]: t for t in (await c.get("/quarantine/transfers", headers=admin)).json()}
                gatherings = {g["id"]: g for g in (await c.get("/registry/gatherings", headers=admin)).json()}
                trail = (await c.get("/registry/audit", params={"actor": ACTOR, "limit": 100},
                                     headers=h(Role.commander, regions=[A]))).json()
                await _settle(platform, 0.6)  # three more rounds of the job: nothing more to erase
                async with platform.apps["registry"].state.database.sessionmaker() as session:
                    runs = (await session.scalars(select(PiiAuditEntry).where(
                        PiiAuditEntry.subject == "retention:registry"))).all()
                # A closed person who comes back is registered afresh.
                again = await c.post("/registry/persons", json=people["old"][1], headers=commander)
    finally:
        clock.set_offset(timedelta(0))

    erased = {label for label, person in seen.items() if person["id_number"] == ERASED}
    assert erased == {"old", "classified"}, {k: v["id_number"] for k, v in seen.items()}
    for label in erased:
        assert all(seen[label][f] is None for f in ("name", "phone", "address", "birth_date")), seen[label]
    for label in ("unclassified", "recent"):  # an open case, a recent arrival: untouched
        assert seen[label]["id_number"] == people[label][1]["id_number"] and seen[label]["phone"]
    assert transfers[old_transfer]["from_place"] == ERASED and transfers[old_transfer]["escort"] == ERASED
    assert transfers[old_transfer]["to_place"] == "市隔离酒店"  # a site, no one's address
    assert transfers[recent_transfer]["from_place"] == "新家中住址"
    assert gatherings[gathering]["organiser"] == ERASED
    assert before == after, _diff(before, after)
    # ... and they are figures, not empty lists: four people, their orders, two cases, two transfers.
    assert before["persons total"] == 4 and len(before["orders"]) >= 2 and len(before["cases"]) == 2
    assert len(before["transfers"]) == 2
    assert "3 条" in summary.reason and "persons 2" in summary.reason and "gatherings 1" in summary.reason
    assert "transfers 1" in q_summary.reason
    assert {row["subject"] for row in trail} == {old, classified} and all(r["action"] == "erase" for r in trail)
    assert len(runs) == 1
    assert again.status_code == 200 and again.json()["id_number"] == people["old"][1]["id_number"]
    proof.measured(f"erased: {len(erased)} of {len(seen)} people (closed: released order, classified case), "
                   f"1 of {len(transfers)} transfers, "
                   f"1 gathering; kept: an unclassified case and a T0+120 d arrival; {len(before)} figures "
                   f"(KPIs, series, totals, progress, statuses) equal before/after; audit: 1 run row per service "
                   f"with its count + {len(trail)} per-person rows a commander queries; later runs erased 0"
                   + ("; the erased values are in neither registry.db nor its WAL" if not per_service else ""))


async def _settle(platform, seconds: float = 0.3) -> None:
    import asyncio

    from fangkong_cli.platform import drain

    await drain(platform.apps)
    await asyncio.sleep(seconds)


async def _figures(c: httpx.AsyncClient, admin: dict, commander: dict, t0: datetime) -> dict:
    """Every count a reader sees: the screen's KPIs and series, the registry's totals, the orders and transfers."""
    out = {}
    for offset in (0, 30, 120):
        day = (t0 + timedelta(days=offset)).astimezone(CHINA_TZ).date().isoformat()
        for region in (A, CITY):
            kpis = (await c.get("/dashboard/kpis", params={"region_code": region, "date": day},
                                headers=commander)).json()
            out[f"kpis {region} {day}"] = kpis
    first = t0.astimezone(CHINA_TZ).date()
    out["series"] = (await c.get("/dashboard/metrics", params={
        "region_code": CITY, "from": first.isoformat(), "to": (first + timedelta(days=130)).isoformat()},
        headers=commander)).json()
    persons = (await c.get("/registry/persons", params={"region_code": A, "limit": 500}, headers=admin)).json()
    out["persons"] = sorted((p["id"], p["region_code"], p["grid"], p["category"], p["sex"], p["is_case"],
                             p["contact_degree"]) for p in persons["items"])
    out["persons total"] = persons["total"]
    out["vaccination"] = (await c.get("/registry/vaccination-progress", params={"region_code": A},
                                      headers=admin)).json()
    orders = (await c.get("/quarantine/orders", params={"limit": 1000}, headers=admin)).json()["items"]
    out["orders"] = sorted((o["id"], o["status"], o["region_code"]) for o in orders)
    out["transfers"] = sorted((t["id"], t["status"]) for t in (await c.get("/quarantine/transfers",
                                                                            headers=admin)).json())
    out["cases"] = sorted((x["person_key"], x["status"], x.get("classification")) for x in
                          (await c.get("/quarantine/cases", headers=admin)).json())
    return out


def _diff(before: dict, after: dict) -> list:
    return [(k, before.get(k), after.get(k)) for k in before if before.get(k) != after.get(k)][:3]
