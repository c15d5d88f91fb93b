"""The quarantine API and consumers end to end, on SQLite and PostgreSQL (in-process bus)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from fangkong_common.auth import Role
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import ContactIdentified, PersonReturned, TestNegative, TestPositive
from fangkong_common.outbox import OutboxMessage
from fangkong_common.testing import ServiceHarness, eventually
from quarantine import service as svc
from quarantine.domain.planning import Facts, local_date, replan
from quarantine.domain.policy import parse_policy
from quarantine.models import Order, TestResult

WUHAN, HUANGSHI, YICHANG = "420100", "420200", "420500"
HOME = "420102"  # a district of the home city
SHANGHAI_NOON = timedelta(hours=4)  # 04:00 UTC is noon in Asia/Shanghai


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + SHANGHAI_NOON


def admin(h: ServiceHarness) -> dict:
    return h.headers(Role.admin)


async def events(h: ServiceHarness, topic: str) -> list[dict]:
    async with h.session() as session:
        rows = (await session.scalars(select(OutboxMessage.envelope).where(OutboxMessage.topic == topic)
                                      .order_by(OutboxMessage.seq))).all()
    return [json.loads(r)["payload"] for r in rows]


async def publish_at(h: ServiceHarness, when: datetime, *payloads) -> list[Envelope]:
    envelopes = [Envelope.wrap(p, source="registry", key=p.person_key, occurred_at=when) for p in payloads]
    await h.bus.publish(envelopes)
    return envelopes


async def order_count(h: ServiceHarness, **filters) -> int:
    async with h.session() as session:
        query = select(func.count()).select_from(Order)
        for name, value in filters.items():
            query = query.where(getattr(Order, name) == value)
        return await session.scalar(query)


async def orders_of(h: ServiceHarness, person: str, headers: dict | None = None) -> list[dict]:
    response = await h.client.get("/quarantine/orders", params={"person_id": person},
                                  headers=headers or admin(h))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def site(h: ServiceHarness, site_id: str, kind: str, region: str, capacity: int, supporting=()) -> dict:
    response = await h.client.post("/quarantine/sites", headers=h.headers(Role.commander, regions=[region]), json={
        "id": site_id, "name": f"{site_id} 隔离点", "kind": kind, "region_code": region, "capacity": capacity,
        "supporting_regions": list(supporting)})
    assert response.status_code == 201, response.text
    return response.json()


async def run_daily(h: ServiceHarness, day: str) -> dict:
    response = await h.client.post("/quarantine/scheduler/run", params={"at": at(day).isoformat()},
                                   headers=admin(h))
    assert response.status_code == 200, response.text
    return response.json()


def contact(h: ServiceHarness, n: int, exposure: str, region: str = HOME, degree: int = 1) -> ContactIdentified:
    return ContactIdentified(person_key=h.person_key(f"contact-{n}"), region_code=region, degree=degree,
                             source_person_key=h.person_key("case-0"), last_exposure_at=at(exposure))


async def test_returnee_gets_one_planned_order_visible_in_scope_only(service: ServiceHarness) -> None:
    h = service
    person = h.person_key("returnee-1")
    returned = PersonReturned(person_key=person, region_code=HOME, category="inbound_international",
                              origin_kind="international", origin_country="US", arrival_date=date(2026, 3, 1),
                              port_of_entry=WUHAN)
    await publish_at(h, at("2026-03-01"), returned)
    [order] = await eventually(lambda: orders_of(h, person))
    assert order["status"] == "active" and order["policy_id"] == "control-measures" and order["policy_version"] == 1
    assert [(s["kind"], s["place"], s["start_date"], s["end_date"], s["test_days"]) for s in order["stages"]] == [
        ("centralized", "port", "2026-03-01", "2026-03-14", []),
        ("centralized", "municipal_site", "2026-03-15", "2026-03-21", ["2026-03-15", "2026-03-21"]),
        ("home", "home", "2026-03-22", "2026-03-28", []),
    ]
    assert order["release_date"] == "2026-03-29" and order["current_stage"] == 0
    assert order["awaiting_site"] is True  # no port site configured here: the order says so
    [ordered] = await events(h, "quarantine.ordered")
    assert ordered["order_id"] == order["id"] and ordered["policy_version"] == 1 and len(ordered["stages"]) == 3

    # the same person and cause again (another event): still one active order
    await publish_at(h, at("2026-03-02"), returned)
    await h.publish(returned)
    await eventually(lambda: _inbox_has(h, 3))
    assert await order_count(h) == 1

    # scope: the province and the city see it, another city does not, a site's staff do not
    for regions, seen in (([HOME[:2] + "0000"], 1), ([WUHAN], 1), (["440300"], 0)):
        assert len(await orders_of(h, person, h.headers(Role.commander, regions=regions))) == seen
    assert len(await orders_of(h, person, h.headers(Role.site_staff, regions=[WUHAN], sites=["x"]))) == 0
    one = await h.client.get(f"/quarantine/orders/{order['id']}", headers=h.headers(Role.commander, regions=["440300"]))
    assert one.status_code == 404
    detail = (await h.client.get(f"/quarantine/orders/{order['id']}",
                                 headers=h.headers(Role.commander, regions=[WUHAN]))).json()
    assert detail["current"]["place"] == "port" and [c["kind"] for c in detail["changes"]] == ["planned"]
    assert (await h.client.get("/quarantine/orders")).status_code == 401
    assert (await h.client.get("/quarantine/orders", headers=h.headers(Role.lab, regions=[WUHAN]))).status_code == 403
    bad = await h.client.get("/quarantine/orders", params={"status": "bogus"}, headers=admin(h))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "status"]


async def _inbox_has(h: ServiceHarness, n: int) -> bool:
    from fangkong_common.inbox import InboxEntry

    async with h.session() as session:
        return (await session.scalar(select(func.count()).select_from(InboxEntry))) >= n


async def test_contacts_fill_the_home_city_then_supporting_cities_and_alert_low_capacity(
        service: ServiceHarness) -> None:
    h = service
    await site(h, "wh-hotel", "hotel", "420103", 2)
    await site(h, "yc-hotel", "hotel", "420502", 3, supporting=[WUHAN])
    await site(h, "hs-hotel", "hotel", "420202", 50)  # another city that does not support Wuhan
    await publish_at(h, at("2026-06-26"), *(contact(h, n, "2026-06-25") for n in range(6)))
    await eventually(lambda: order_count(h) if 0 else _count_is(h, 6))
    async with h.session() as session:
        placed = dict((await session.execute(select(Order.site_id, func.count()).group_by(Order.site_id))).all())
    assert placed == {"wh-hotel": 2, "yc-hotel": 3, None: 1}
    sites = {s["id"]: s for s in (await h.client.get("/quarantine/sites", headers=admin(h))).json()}
    assert (sites["wh-hotel"]["occupancy"], sites["yc-hotel"]["occupancy"], sites["hs-hotel"]["occupancy"]) == (2, 3, 0)
    assert sites["wh-hotel"]["capacity_low"] and not sites["hs-hotel"]["capacity_low"]
    low = await events(h, "site.capacity_low")
    assert sorted(e["site_id"] for e in low) == ["wh-hotel", "yc-hotel"]  # once per crossing
    # the supporting city's staff and commander see the guests in their hotel
    staff = h.headers(Role.site_staff, regions=[YICHANG], sites=["yc-hotel"])
    listed = (await h.client.get("/quarantine/orders", headers=staff)).json()
    assert listed["total"] == 3 and {o["site_id"] for o in listed["items"]} == {"yc-hotel"}
    yichang = h.headers(Role.commander, regions=[YICHANG])
    assert (await h.client.get("/quarantine/orders", params={"site_id": "yc-hotel"}, headers=yichang)).json()[
        "total"] == 3
    assert [s["id"] for s in (await h.client.get("/quarantine/sites", headers=staff)).json()] == ["yc-hotel"]
    # each room taken is announced (the dashboard's "held at a site"), counting for the home city
    held = await events(h, "quarantine.admitted")
    assert sorted(e["site_id"] for e in held) == ["wh-hotel"] * 2 + ["yc-hotel"] * 3
    assert {e["origin_region_code"] for e in held} == {HOME} and {e["site_kind"] for e in held} == {"hotel"}

    # a contact in the home city turns positive: stage ends, hotel room freed, hospital bed at once
    await site(h, "wh-hospital", "hospital", "420104", 1)
    await site(h, "yc-fangcang", "fangcang", "420503", 100, supporting=[WUHAN])
    async with h.session() as session:
        first = await session.scalar(select(Order).where(Order.site_id == "wh-hotel").order_by(Order.id).limit(1))
    positive = TestPositive(person_key=first.person_key, barcode="T-1", lab_id="lab-1", region_code="420103",
                            resulted_at=at("2026-06-28"))
    await h.bus.publish([Envelope.wrap(positive, source="testing", key=first.person_key,
                                       occurred_at=at("2026-06-28"))])
    async def hospital_admissions():
        return [e for e in await events(h, "quarantine.admitted") if e["site_kind"] != "hotel"]

    [admitted] = await eventually(hospital_admissions)
    assert admitted["site_id"] == "wh-hospital" and admitted["site_kind"] == "hospital"
    assert admitted["origin_region_code"] == HOME and admitted["region_code"] == "420104"
    [order] = await orders_of(h, first.person_key)
    assert order["status"] == "hospitalized" and order["stages"][0]["end_date"] == "2026-06-28"
    assert order["stages"][0]["test_days"] == ["2026-06-26"] and len(order["stages"]) == 1
    released = await events(h, "quarantine.released")
    assert [(e["order_id"], e["outcome"]) for e in released] == [(order["id"], "transferred_to_hospital")]
    wh = (await h.client.get("/quarantine/sites/wh-hotel", headers=admin(h))).json()
    assert wh["occupancy"] == 1

    # a second positive: the hospital is full, the supporting city's 方舱 takes them; they count for Wuhan
    second = h.person_key("walk-in-positive")
    await h.bus.publish([Envelope.wrap(TestPositive(person_key=second, barcode="T-2", lab_id="lab-1",
                                                    region_code=HOME, origin_region_code=HOME,
                                                    resulted_at=at("2026-06-28")), source="testing", key=second)])
    admitted = await eventually(lambda: _at_least(hospital_admissions(), 2))
    assert (admitted[1]["site_id"], admitted[1]["region_code"], admitted[1]["origin_region_code"]) == (
        "yc-fangcang", "420503", HOME)

    # the contact still waiting gets the freed room at the next daily run
    report = await run_daily(h, "2026-06-28")
    assert report["placed"] == 1
    assert (await h.client.get("/quarantine/sites/wh-hotel", headers=admin(h))).json()["occupancy"] == 2

    # classification: the backlog, the medical role, origin and treating cities in the event
    medical = h.headers(Role.medical, regions=[YICHANG])
    backlog = (await h.client.get("/quarantine/cases", params={"classified": "false"}, headers=medical)).json()
    assert [c["person_key"] for c in backlog] == [second]  # Yichang's doctors see the case they treat
    forbidden = await h.client.post(f"/quarantine/cases/{second}/classification",
                                    headers=h.headers(Role.commander, regions=[WUHAN]),
                                    json={"classification": "asymptomatic"})
    assert forbidden.status_code == 403
    invalid = await h.client.post(f"/quarantine/cases/{second}/classification", headers=medical,
                                  json={"classification": "probable"})
    assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "classification"]
    done = await h.client.post(f"/quarantine/cases/{second}/classification", headers=medical,
                               json={"classification": "asymptomatic", "severity": "mild"})
    assert done.status_code == 200, done.text
    [classified] = await events(h, "case.classified")
    assert (classified["origin_region_code"], classified["treating_region_code"], classified["classification"]) == (
        HOME, "420503", "asymptomatic")
    # discharge gives the 方舱 bed back; twice is a conflict
    assert (await h.client.get("/quarantine/sites/yc-fangcang", headers=admin(h))).json()["occupancy"] == 1
    out = await h.client.post(f"/quarantine/cases/{second}/discharge", headers=medical)
    assert out.status_code == 200 and out.json()["status"] == "discharged"
    assert (await h.client.get("/quarantine/sites/yc-fangcang", headers=admin(h))).json()["occupancy"] == 0
    assert (await h.client.post(f"/quarantine/cases/{second}/discharge", headers=medical)).status_code == 409
    wuhan_medical = h.headers(Role.medical, regions=[WUHAN])
    remaining = (await h.client.get("/quarantine/cases", params={"classified": "false"}, headers=wuhan_medical)).json()
    assert [c["person_key"] for c in remaining] == [first.person_key]


async def _count_is(h: ServiceHarness, n: int) -> bool:
    return await order_count(h) == n


async def _at_least(awaitable, n: int):
    items = await awaitable
    return items if len(items) >= n else None


async def test_daily_job_emits_due_tests_once_moves_stages_and_releases(service: ServiceHarness) -> None:
    h = service
    await site(h, "hotel", "hotel", "420103", 10)
    await publish_at(h, at("2026-06-26"), contact(h, 99, "2026-06-25"))
    [order] = await eventually(lambda: orders_of(h, contact(h, 99, "2026-06-25").person_key))
    assert order["site_id"] == "hotel"
    # day 1 test (2026-06-26): sent once however often the job runs
    first = await run_daily(h, "2026-06-26")
    again = await run_daily(h, "2026-06-26")
    assert (first["tests_due"], again["tests_due"]) == (1, 0)
    assert [e["due_date"] for e in await events(h, "quarantine.test_due")] == ["2026-06-26"]
    # days 4 and 7 come on their dates; a skipped day is caught up
    assert (await run_daily(h, "2026-07-03"))["tests_due"] == 2
    # centralized ends 07-09; on 07-10 home monitoring starts: room freed, closed-loop transfer requested
    moved = await run_daily(h, "2026-07-10")
    assert moved["stages_moved"] == 1 and moved["tests_due"] == 1  # the day-14 test (07-09), caught up
    [now] = await orders_of(h, order["person_key"])
    assert now["current_stage"] == 1 and now["site_id"] is None
    assert (await h.client.get("/quarantine/sites/hotel", headers=admin(h))).json()["occupancy"] == 0
    transfers = (await h.client.get("/quarantine/transfers", headers=admin(h))).json()
    assert [(t["from_place"], t["to_place"], t["status"]) for t in transfers] == [
        ("municipal_site", "home", "requested")]
    # release on the day after the last stage; twice is still one release
    assert (await run_daily(h, "2026-07-16"))["released"] == 0
    assert (await run_daily(h, "2026-07-17"))["released"] == 1
    assert (await run_daily(h, "2026-07-17"))["released"] == 0
    [done] = await orders_of(h, order["person_key"])
    assert done["status"] == "released"
    assert [e["outcome"] for e in await events(h, "quarantine.released")] == ["completed"]
    due = [e["due_date"] for e in await events(h, "quarantine.test_due")]
    assert due == ["2026-06-26", "2026-06-29", "2026-07-02", "2026-07-09", "2026-07-11", "2026-07-16"]


async def test_checkins_fever_and_missed_checkins_raise_alerts_and_tests(database_url: str) -> None:
    import uuid

    from fangkong_common.testing import running
    from quarantine.config import Settings
    from quarantine.main import create_app

    settings = Settings(database_url=database_url, bus_url=f"memory://q-{uuid.uuid4().hex}",
                        scheduler_interval_seconds=0, checkins_per_day=2)
    async with running(create_app(settings)) as h:
        await site(h, "hotel", "hotel", "420103", 10)
        today = local_date(datetime.now(UTC))
        exposure = datetime.combine(today - timedelta(days=3), datetime.min.time(), tzinfo=UTC)
        c = ContactIdentified(person_key=h.person_key("fever"), region_code=HOME, degree=1,
                              source_person_key=h.person_key("case"), last_exposure_at=exposure)
        # the order opened three days ago (Shanghai), so yesterday was a full day under watch
        await publish_at(h, datetime.now(UTC) - timedelta(days=3), c)
        [order] = await eventually(lambda: orders_of(h, c.person_key))
        staff = h.headers(Role.site_staff, regions=[WUHAN], sites=["hotel"])
        url = f"/quarantine/orders/{order['id']}/checkins"
        ok = await h.client.post(url, headers=staff, json={"temperature_c": 36.6})
        assert ok.status_code == 201 and ok.json()["alerts"] == [] and ok.json()["test_due"] is False
        fever = await h.client.post(url, headers=staff, json={"temperature_c": 37.3, "symptoms": ["咳嗽"]})
        assert fever.status_code == 201, fever.text
        assert fever.json()["alerts"] == ["fever", "symptoms"] and fever.json()["test_due"] is True
        due = await events(h, "quarantine.test_due")
        assert len(due) == 2 and {e["due_date"] for e in due} == {today.isoformat()}
        # a second fever the same day: recorded, no second alert or test
        assert (await h.client.post(url, headers=staff, json={"temperature_c": 38.0})).json()["test_due"] is False
        other = h.headers(Role.site_staff, regions=[WUHAN], sites=["elsewhere"])
        assert (await h.client.post(url, headers=other, json={"temperature_c": 36.5})).status_code == 404
        bad = await h.client.post(url, headers=staff, json={"temperature_c": "hot"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "temperature_c"]

        # yesterday nobody checked in: the daily job raises missed_checkin and a test, once
        first = await h.client.post("/quarantine/scheduler/run", headers=admin(h))
        second = await h.client.post("/quarantine/scheduler/run", headers=admin(h))
        assert (first.json()["missed_checkins"], second.json()["missed_checkins"]) == (1, 0)
        alerts = (await h.client.get("/quarantine/alerts", headers=h.headers(Role.commander, regions=[WUHAN]))).json()
        assert sorted(a["kind"] for a in alerts) == ["fever", "missed_checkin", "symptoms"]
        kinds_sent = len(await events(h, "quarantine.test_due"))
        assert kinds_sent >= 3  # fever, symptoms, missed check-in (plus any planned test due today)


async def test_transfers_move_requested_dispatched_arrived_and_refuse_other_moves(service: ServiceHarness) -> None:
    h = service
    await site(h, "from-hotel", "hotel", "420103", 10)
    await site(h, "to-hotel", "hotel", "420104", 10)
    person = h.person_key("moving")
    body = {"person_key": person, "region_code": HOME, "from_place": "口岸隔离酒店", "to_place": "市级隔离点",
            "from_site_id": "from-hotel", "to_site_id": "to-hotel", "vehicle": "鄂A·12345", "escort": "张医生"}
    staff = h.headers(Role.site_staff, regions=[WUHAN], sites=["to-hotel"])
    created = await h.client.post("/quarantine/transfers", headers=staff, json=body)
    assert created.status_code == 201, created.text
    transfer = created.json()
    assert transfer["status"] == "requested"
    url = f"/quarantine/transfers/{transfer['id']}"
    assert (await h.client.patch(url, headers=staff, json={"status": "arrived"})).status_code == 409
    dispatched = await h.client.patch(url, headers=staff, json={"status": "dispatched"})
    assert dispatched.status_code == 200 and dispatched.json()["dispatched_at"]
    assert (await h.client.patch(url, headers=staff, json={"status": "cancelled"})).status_code == 409
    arrived = await h.client.patch(url, headers=staff, json={"status": "arrived"})
    assert arrived.json()["status"] == "arrived" and arrived.json()["arrived_at"]
    assert (await h.client.patch(url, headers=staff, json={"status": "dispatched"})).status_code == 409
    bad = await h.client.patch(url, headers=staff, json={"status": "teleported"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "status"]
    missing = await h.client.post("/quarantine/transfers", headers=admin(h), json={**body, "vehicle": ""})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "vehicle"]
    outsider = h.headers(Role.site_staff, regions=[WUHAN], sites=["other"])
    assert (await h.client.post("/quarantine/transfers", headers=outsider, json=body)).status_code == 403
    assert (await h.client.patch(url, headers=outsider, json={"status": "arrived"})).status_code == 404
    assert (await h.client.post("/quarantine/transfers", headers=h.headers(Role.viewer, regions=[WUHAN]),
                                json=body)).status_code == 403


async def test_sites_validate_and_scope(service: ServiceHarness) -> None:
    h = service
    bad = await h.client.post("/quarantine/sites", headers=admin(h), json={
        "name": "x", "kind": "tent", "region_code": "4201", "capacity": -1})
    assert bad.status_code == 422
    assert {tuple(e["loc"]) for e in bad.json()["detail"]} == {
        ("body", "kind"), ("body", "region_code"), ("body", "capacity")}
    other = await h.client.post("/quarantine/sites", headers=h.headers(Role.commander, regions=["440300"]), json={
        "name": "x", "kind": "hotel", "region_code": HOME, "capacity": 5})
    assert other.status_code == 403
    await site(h, "dup", "hotel", HOME, 5)
    again = await h.client.post("/quarantine/sites", headers=admin(h), json={
        "id": "dup", "name": "x", "kind": "hotel", "region_code": HOME, "capacity": 5})
    assert again.status_code == 409
    assert (await h.client.get("/quarantine/sites", headers=h.headers(Role.commander, regions=["440300"]))).json() == []


async def test_negative_results_are_recorded_for_people_under_orders(service: ServiceHarness) -> None:
    h = service
    c = contact(h, 7, "2026-06-25")
    await publish_at(h, at("2026-06-26"), c)
    await eventually(lambda: orders_of(h, c.person_key))
    negative = TestNegative(barcode="P-1", lab_id="lab", region_code=HOME,
                            member_keys=[c.person_key, h.person_key("stranger")], resulted_at=at("2026-06-27"))
    await h.bus.publish([Envelope.wrap(negative, source="testing", key="P-1")] * 2)

    async def recorded():
        async with h.session() as session:
            return (await session.execute(select(TestResult.person_key, TestResult.result))).all()

    rows = await eventually(recorded)
    assert [tuple(r) for r in rows] == [(c.person_key, "negative")]


async def test_a_batch_of_negative_pools_is_recorded_once_per_person_and_tube(service: ServiceHarness) -> None:
    h = service
    first, second = contact(h, 11, "2026-06-25"), contact(h, 12, "2026-06-25")
    await publish_at(h, at("2026-06-26"), first, second)
    await eventually(lambda: orders_of(h, second.person_key))
    pools = [TestNegative(barcode=f"P-{n}", lab_id="lab", region_code=HOME,
                          member_keys=[person.person_key, h.person_key(f"stranger-{n}")], resulted_at=at("2026-06-27"))
             for n, person in ((1, first), (2, second), (3, first))]
    # One publish is one consumer batch; the first pool again under a new event id (a lab's resend).
    await h.bus.publish([Envelope.wrap(p, source="testing", key=p.barcode) for p in [*pools, pools[0]]])

    async def recorded():
        async with h.session() as session:
            rows = (await session.execute(select(TestResult.person_key, TestResult.barcode))).all()
        return sorted(tuple(r) for r in rows) if len(rows) >= 3 else None

    assert await eventually(recorded) == sorted([(first.person_key, "P-1"), (second.person_key, "P-2"),
                                                 (first.person_key, "P-3")])


NEW_VERSION = {
    "policy_id": "control-measures", "version": 2, "effective_from": None, "title": "第九版式管控",
    "basis": "《新型冠状病毒肺炎防控方案（第九版）》式：密接 7 天集中隔离 + 3 天居家健康监测",
    "categories": {"contact_degree_1": {"count_from": "exposure", "entry_test": True, "stages": [
        {"kind": "centralized", "place": "municipal_site", "days": 7, "test_days": [1, 2, 3, 5, 7]},
        {"kind": "monitoring", "place": "home", "days": 3, "test_days": [1, 3]}]}},
}


async def test_publishing_a_version_replans_active_orders_and_records_the_change(service: ServiceHarness) -> None:
    h = service
    await site(h, "hotel", "hotel", "420103", 10)
    now = datetime.now(UTC)
    today = local_date(now)
    c = ContactIdentified(person_key=h.person_key("replan"), region_code=HOME, degree=1,
                          source_person_key=h.person_key("case"), last_exposure_at=now - timedelta(days=4))
    await publish_at(h, now - timedelta(days=3), c)
    [before] = await eventually(lambda: orders_of(h, c.person_key))
    assert before["stages"][0]["days"] == 14

    headers = h.headers(Role.commander, regions=["420000"])
    document = {**NEW_VERSION, "effective_from": today.isoformat()}
    published = await h.client.post("/quarantine/policies", headers=headers, json=document)
    assert published.status_code == 201, published.text
    assert published.json()["replanned_orders"] == 1 and published.json()["applied_at"]

    after = (await h.client.get(f"/quarantine/orders/{before['id']}", headers=headers)).json()
    expected = replan([svc.stage_from_json(s) for s in before["stages"]], parse_policy(document),
                      Facts("contact_degree_1", local_date(now - timedelta(days=3)),
                            exposure_date=local_date(now - timedelta(days=4))), today)
    assert after["policy_version"] == 2
    assert after["stages"] == [svc.stage_json(s) for s in expected]
    assert after["stages"][0]["start_date"] == before["stages"][0]["start_date"]  # served days kept
    assert after["stages"][0]["days"] == 7 and after["stages"][1]["days"] == 3
    assert date.fromisoformat(after["release_date"]) < date.fromisoformat(before["release_date"])
    [change] = [c for c in after["changes"] if c["kind"] == "replanned"]
    assert change["detail"]["from_version"] == 1 and change["detail"]["to_version"] == 2
    ordered = await events(h, "quarantine.ordered")
    assert [e["policy_version"] for e in ordered] == [1, 2]

    # the same version again, an older one, a broken document, a YAML one in the future
    assert (await h.client.post("/quarantine/policies", headers=headers, json=document)).status_code == 409
    broken = await h.client.post("/quarantine/policies", headers=headers, json={
        **document, "version": 3, "categories": {"contact_degree_1": {"stages": [
            {"kind": "centralized", "place": "moon", "days": 7}]}}})
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["loc"] == ["body", "categories", "contact_degree_1", "stages", "0", "place"]
    future = (today + timedelta(days=30)).isoformat()
    yaml_text = (f"policy_id: control-measures\nversion: 3\neffective_from: {future}\ntitle: 未来\n"
                 "categories:\n  contact_degree_2:\n    stages:\n      - {kind: home, place: home, days: 7}\n")
    later = await h.client.post("/quarantine/policies", headers={**headers, "Content-Type": "application/yaml"},
                                content=yaml_text.encode())
    assert later.status_code == 201, later.text
    assert later.json()["applied_at"] is None and later.json()["replanned_orders"] == 0
    listed = (await h.client.get("/quarantine/policies", headers=headers)).json()
    assert [(p["version"], p["source"]) for p in listed] == [(1, "package"), (2, "api"), (3, "api")]
    # a version names what it changes; the other categories carry over
    assert listed[2]["categories"]["contact_degree_2"]["stages"][0]["kind"] == "home"
    assert listed[2]["categories"]["contact_degree_1"] == listed[1]["categories"]["contact_degree_1"]
    assert listed[2]["categories"]["inbound_international"] == listed[0]["categories"]["inbound_international"]
    # on its effective date the daily job applies it, once; unchanged plans just take the new version
    on_the_day = await h.client.post("/quarantine/scheduler/run", headers=admin(h), params={
        "at": (datetime.combine(today + timedelta(days=30), datetime.min.time(), tzinfo=UTC)
               + timedelta(hours=4)).isoformat()})
    assert on_the_day.json()["policies_applied"] == 1
    again = await h.client.post("/quarantine/scheduler/run", headers=admin(h))
    assert again.json()["policies_applied"] == 0
    assert (await h.client.get("/quarantine/policies", headers=headers)).json()[2]["applied_at"]
    assert (await h.client.post("/quarantine/policies", headers=h.headers(Role.site_staff, sites=["hotel"]),
                                json=document)).status_code == 403
    # new contacts today are planned under version 2
    fresh = ContactIdentified(person_key=h.person_key("fresh"), region_code=HOME, degree=1,
                              source_person_key=h.person_key("case"), last_exposure_at=now - timedelta(days=1))
    await publish_at(h, now, fresh)
    [new_order] = await eventually(lambda: orders_of(h, fresh.person_key))
    assert new_order["policy_version"] == 2 and [s["days"] for s in new_order["stages"]] == [7, 3]


async def test_an_arrival_ahead_is_placed_when_its_stage_begins(service: ServiceHarness) -> None:
    h = service
    await site(h, "port-hotel", "port", "420103", 5)
    person = h.person_key("arriving")
    await publish_at(h, at("2026-03-01"), PersonReturned(
        person_key=person, region_code=HOME, category="inbound_international", origin_kind="international",
        origin_country="SG", arrival_date=date(2026, 3, 3), port_of_entry=WUHAN))
    [order] = await eventually(lambda: orders_of(h, person))
    assert order["site_id"] is None and order["awaiting_site"] is True
    assert (await run_daily(h, "2026-03-02"))["placed"] == 0
    assert (await run_daily(h, "2026-03-03"))["placed"] == 1
    [order] = await orders_of(h, person)
    assert order["site_id"] == "port-hotel" and order["awaiting_site"] is False
    # 03-17 the municipal stage begins: the port room is freed, no hotel here yet -> waiting, transfer requested
    moved = await run_daily(h, "2026-03-17")
    assert moved["stages_moved"] == 1 and moved["placed"] == 0
    [order] = await orders_of(h, person)
    assert order["current"]["place"] == "municipal_site" and order["awaiting_site"] is True
    assert (await h.client.get("/quarantine/sites/port-hotel", headers=admin(h))).json()["occupancy"] == 0
    await site(h, "city-hotel", "hotel", "420104", 5)
    assert (await run_daily(h, "2026-03-18"))["placed"] == 1
    [transfer] = (await h.client.get("/quarantine/transfers", params={"person_id": person},
                                     headers=admin(h))).json()
    assert (transfer["from_site_id"], transfer["to_site_id"]) == ("port-hotel", "city-hotel")  # filled in later


async def test_risk_flags_open_monitoring_counted_from_leaving_the_area(service: ServiceHarness) -> None:
    from fangkong_common.events.schemas import PersonRiskFlagged

    h = service
    person = h.person_key("flagged")
    flag = PersonRiskFlagged(person_key=person, region_code=HOME, risk_area_id="ra-1", risk_area_region_code="320115",
                             level="high", window_start=at("2026-07-20"), window_end=at("2026-07-28"))
    await publish_at(h, at("2026-07-30"), flag, flag)
    [order] = await eventually(lambda: orders_of(h, person))
    assert (order["category"], order["cause"]) == ("risk_flagged_high", "risk_flagged")
    assert [(s["kind"], s["start_date"], s["end_date"], s["test_days"]) for s in order["stages"]] == [
        ("monitoring", "2026-07-30", "2026-08-11", ["2026-07-30"])]  # day 1 = 07-29, taken over on day 2
    assert order["site_id"] is None and order["awaiting_site"] is False


async def test_two_writers_racing_for_the_same_person_and_cause_open_one_order(service: ServiceHarness) -> None:
    import asyncio

    h = service
    request = svc.OrderRequest(person_key=h.person_key("raced"), region_code=HOME, cause="contact_degree_1",
                               facts=Facts("contact_degree_1", date(2026, 6, 26), exposure_date=date(2026, 6, 25)))

    async def writer() -> int:
        async with h.session() as session, session.begin():
            return len(await svc.open_orders(session, [request], at("2026-06-26")))

    opened = await asyncio.gather(writer(), writer())
    assert sorted(opened) == [0, 1]
    assert await order_count(h) == 1
    assert len(await events(h, "quarantine.ordered")) == 1
