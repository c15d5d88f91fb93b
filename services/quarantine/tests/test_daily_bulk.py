"""The daily job over many orders at once (it works set-based: these pin what one order at a time did)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from fangkong_common.outbox import OutboxMessage
from fangkong_common.testing import ServiceHarness
from quarantine import service as svc
from quarantine.domain.planning import Facts
from quarantine.models import Alert, Checkin, Order, Placement, ScheduledTest, Site, Transfer

NOON = timedelta(hours=4)  # 04:00 UTC is noon in Asia/Shanghai


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC) + NOON


async def _open(h: ServiceHarness, prefix: str, n: int, facts: Facts, opened: str) -> list[str]:
    requests = [svc.OrderRequest(person_key=h.person_key(f"{prefix}-{i}"), region_code="420102",
                                 cause=f"bulk:{prefix}", facts=facts) for i in range(n)]
    async with h.session() as session, session.begin():
        await svc.open_orders(session, requests, at(opened))
    return [r.person_key for r in requests]


async def _run(h: ServiceHarness, day: str) -> svc.DailyReport:
    async with h.session() as session, session.begin():
        return await svc.run_daily(session, at(day), checkins_per_day=2)


async def _count(h: ServiceHarness, query) -> int:
    async with h.session() as session:
        return await session.scalar(query)


async def test_missed_checkins_over_many_orders_one_alert_and_test_per_person_and_day(
        service: ServiceHarness) -> None:
    h = service
    async with h.session() as session, session.begin():
        await svc.create_site(session, site_id="hotel", name="酒店", kind="hotel", region_code="420103",
                              capacity=90, supporting_regions=[])
    contact = Facts("contact_degree_1", date(2026, 6, 26), exposure_date=date(2026, 6, 25))
    twice = await _open(h, "twice", 40, contact, "2026-06-26")
    once = await _open(h, "once", 40, contact, "2026-06-26")
    never = await _open(h, "never", 40, contact, "2026-06-26")  # 120 contacts, 90 rooms: some wait for one
    fresh = await _open(h, "fresh", 10, Facts("contact_degree_1", date(2026, 6, 30),
                                              exposure_date=date(2026, 6, 29)), "2026-06-30")
    watched = await _open(h, "watched", 10, Facts("domestic_key_region", date(2026, 6, 26),
                                                  arrival_date=date(2026, 6, 26)), "2026-06-26")
    async with h.session() as session, session.begin():
        ids = dict((await session.execute(select(Order.person_key, Order.id))).all())
        for key, times in [*((k, 2) for k in twice), *((k, 1) for k in once)]:
            for n in range(times):
                when = at("2026-06-30") + timedelta(hours=n)
                session.add(Checkin(order_id=ids[key], at=when, local_date=date(2026, 6, 30), temperature_c=36.5,
                                    symptoms=[], recorded_by="test"))

    first = await _run(h, "2026-07-01")
    missed = set(once) | set(never)  # not the fresh orders (a partial day), nor health monitoring
    assert first.missed_checkins == len(missed) == 80
    async with h.session() as session:
        alerts = (await session.execute(select(Alert.person_key, Alert.order_id, Alert.site_id, Alert.detail)
                                        .where(Alert.kind == "missed_checkin",
                                               Alert.on_date == date(2026, 6, 30)))).all()
        sites = dict((await session.execute(select(Order.id, Order.site_id))).all())
        urgent = (await session.scalars(select(ScheduledTest.order_id).where(
            ScheduledTest.reason == "missed_checkin", ScheduledTest.due_date == date(2026, 7, 1)))).all()
    assert sorted(a.person_key for a in alerts) == sorted(missed)  # exactly one each
    assert all(a.order_id == ids[a.person_key] and a.site_id == sites[a.order_id] for a in alerts)
    assert {a.person_key: a.detail for a in alerts}[once[0]] == "2026-06-30 健康打卡 1/2 次"
    assert {a.person_key: a.detail for a in alerts}[never[0]] == "2026-06-30 健康打卡 0/2 次"
    assert sorted(urgent) == sorted(ids[k] for k in missed)
    assert any(sites[ids[k]] is None for k in missed) and any(sites[ids[k]] for k in missed)
    assert not set(fresh) & missed and not set(watched) & missed
    today_due = await _due_today(h)
    assert sorted(e["order_id"] for e in today_due) == sorted(ids[k] for k in missed)

    outbox_before = await _count(h, select(func.count()).select_from(OutboxMessage))
    again = await _run(h, "2026-07-01")
    assert (again.missed_checkins, again.tests_due, again.stages_moved, again.released) == (0, 0, 0, 0)
    assert await _count(h, select(func.count()).select_from(Alert)) == 80
    assert await _count(h, select(func.count()).select_from(OutboxMessage)) == outbox_before

    # the next day nobody checked in: every watched contact misses again, once
    assert (await _run(h, "2026-07-02")).missed_checkins == 130
    assert (await _run(h, "2026-07-02")).missed_checkins == 0


async def _due_today(h: ServiceHarness) -> list[dict]:
    async with h.session() as session:
        rows = (await session.scalars(select(OutboxMessage.envelope)
                                      .where(OutboxMessage.topic == "quarantine.test_due"))).all()
    return [p for p in (json.loads(r)["payload"] for r in rows) if p["due_date"] == "2026-07-01"]


async def test_stage_moves_over_many_orders_free_every_room_and_request_every_transfer(
        service: ServiceHarness) -> None:
    h = service
    async with h.session() as session, session.begin():
        await svc.create_site(session, site_id="hotel", name="酒店", kind="hotel", region_code="420103",
                              capacity=50, supporting_regions=[])
    contact = Facts("contact_degree_1", date(2026, 6, 26), exposure_date=date(2026, 6, 25))
    keys = await _open(h, "c", 60, contact, "2026-06-26")  # 50 placed, 10 waiting for a room
    async with h.session() as session:
        assert await session.scalar(select(Site.occupancy)) == 50
    # centralized ends 07-09: on 07-10 all 60 move to home monitoring, the 50 rooms come back
    moved = await _run(h, "2026-07-10")
    assert moved.stages_moved == 60 and moved.placed == 0
    async with h.session() as session:
        assert await session.scalar(select(Site.occupancy)) == 0
        assert await session.scalar(select(func.count()).select_from(Placement)
                                    .where(Placement.released_at.is_(None))) == 0
        orders = (await session.execute(select(Order.person_key, Order.current_stage, Order.site_id,
                                               Order.awaiting_site))).all()
        transfers = (await session.execute(select(Transfer.person_key, Transfer.from_place, Transfer.to_place,
                                                  Transfer.from_site_id, Transfer.status))).all()
    assert {(o.current_stage, o.site_id, o.awaiting_site) for o in orders} == {(1, None, False)}
    assert sorted(t.person_key for t in transfers) == sorted(keys)
    assert {(t.from_place, t.to_place, t.status) for t in transfers} == {("municipal_site", "home", "requested")}
    assert sum(1 for t in transfers if t.from_site_id == "hotel") == 50
    again = await _run(h, "2026-07-10")
    assert (again.stages_moved, again.placed) == (0, 0)
    assert await _count(h, select(func.count()).select_from(Transfer)) == 60


async def test_a_one_day_order_opened_after_its_days_run_is_tested_before_its_release(
        service: ServiceHarness) -> None:
    """其他省外返回: one day of monitoring and one test. Opened in the afternoon, after that day's
    run, the next run releases it — and must ask for its test first, or it is never asked."""
    h = service
    assert (await _run(h, "2026-07-01")).tests_due == 0
    returnees = await _open(h, "other-province", 3, Facts("domestic_other", date(2026, 7, 1),
                                                          arrival_date=date(2026, 7, 1)), "2026-07-01")
    report = await _run(h, "2026-07-02")
    assert (report.released, report.tests_due) == (3, 3)
    async with h.session() as session:
        ids = dict((await session.execute(select(Order.id, Order.person_key))).all())
        rows = (await session.scalars(select(OutboxMessage.envelope)
                                      .where(OutboxMessage.topic == "quarantine.test_due"))).all()
    due = [json.loads(r)["payload"] for r in rows]
    assert sorted(ids[p["order_id"]] for p in due) == sorted(returnees)
    assert {p["due_date"] for p in due} == {"2026-07-01"}
    assert (await _run(h, "2026-07-02")).tests_due == 0  # asked once


async def test_a_risk_flag_of_an_area_still_in_force_opens_an_order_counted_from_the_flag(
        service: ServiceHarness) -> None:
    """The registry sends an open window's end as a far-future instant; the order counts from the
    day of the flag (nobody was exposed later) instead of overflowing the calendar."""
    from fangkong_common.events.envelope import Envelope
    from fangkong_common.events.schemas import PersonRiskFlagged
    from quarantine.consumers import open_orders

    h = service
    person = h.person_key("risk-open-window")
    flagged = at("2026-07-03")
    event = Envelope.wrap(PersonRiskFlagged(
        person_key=person, region_code="420102", risk_area_id="area-1", risk_area_region_code="110105",
        level="medium", window_start=flagged - timedelta(days=14),
        window_end=datetime(9999, 12, 30, tzinfo=UTC)), source="registry", key=person, occurred_at=flagged)
    async with h.session() as session, session.begin():
        await open_orders(session, [event])
    async with h.session() as session:
        order = (await session.execute(select(Order.release_date, Order.facts)
                                       .where(Order.person_key == person))).one()
    assert order.facts["exposure_date"] == "2026-07-03"
    # 14 days of monitoring after the exposure day, released the morning after
    assert order.release_date == date(2026, 7, 18)
