"""The daily job: releases, stage moves, due tests, missed check-ins (safe to run twice)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.events.schemas import (
    QuarantineReleased,
    QuarantineTestDue,
)

from quarantine.domain import checkins as checkin_rules
from quarantine.domain.planning import DAY, local_date
from quarantine.domain.policy import parse_policy
from quarantine.models import (
    ACTIVE,
    Checkin,
    Order,
    OrderChange,
    PolicyVersion,
    ScheduledTest,
)
from quarantine.service.alerts import raise_alerts, urgent_tests
from quarantine.service.cases import admit_waiting
from quarantine.service.common import chunked, event_envelope
from quarantine.service.policies import apply_policy
from quarantine.service.sites import free_rooms
from quarantine.service.stages import advance_stages


@dataclass
class DailyReport:
    day: date
    policies_applied: int = 0
    orders_replanned: int = 0
    stages_moved: int = 0
    placed: int = 0
    released: int = 0
    tests_due: int = 0
    missed_checkins: int = 0
    cases_admitted: int = 0


async def run_daily(session: AsyncSession, now: datetime, *, checkins_per_day: int = 2,
                    low_share: float = 0.10) -> DailyReport:
    """Everything the calendar drives. Safe to run twice the same day: each step only
    acts on what is still to do (and remembers what it emitted)."""
    today = local_date(now)
    report = DailyReport(today)
    # 1. versions that came into force since the last run
    due = (await session.scalars(select(PolicyVersion).where(PolicyVersion.applied_at.is_(None),
                                                             PolicyVersion.effective_from <= today)
                                 .order_by(PolicyVersion.effective_from, PolicyVersion.version))).all()
    for row in due:
        row.replanned_orders = await apply_policy(session, parse_policy(row.document), now)
        row.applied_at = now
        report.policies_applied += 1
        report.orders_replanned += row.replanned_orders
    # 2. tests due up to today of orders still active, before any release: a one-day order opened
    #    after its day's run (其他省外返回: one test) would otherwise be released untested
    report.tests_due = await _emit_due_tests(session, now)
    # 3. releases: the last stage has ended
    report.released = await _release_due(session, now, low_share)
    # 4. stage moves and rooms for those still waiting for one
    moved, placed = await advance_stages(session, now, low_share)
    report.stages_moved, report.placed = moved, placed
    # 5. positives still waiting for a bed
    report.cases_admitted = await admit_waiting(session, now, low_share)
    # 6. missed check-ins yesterday -> alert and a test now
    if checkins_per_day > 0:
        report.missed_checkins = await _missed_checkins(session, now, checkins_per_day)
    # 7. the tests step 6 asked for today
    report.tests_due += await _emit_due_tests(session, now)
    return report


async def _release_due(session: AsyncSession, now: datetime, low_share: float) -> int:
    today = local_date(now)
    released = (await session.execute(
        update(Order).where(Order.status == ACTIVE, Order.release_date <= today)
        .values(status="released", ended_at=now, updated_at=now, current_stage=None, awaiting_site=False)
        .returning(Order.id, Order.person_key, Order.region_code))).all()
    if not released:
        return 0
    ids = [r.id for r in released]
    for chunk in chunked(ids):
        await free_rooms(session, now, order_ids=chunk, low_share=low_share)
    await session.execute(insert(OrderChange.__table__), [{"order_id": r.id, "kind": "released", "at": now,
                                                 "detail": {"on": today.isoformat()}} for r in released])
    outbox.add(session, *(event_envelope(QuarantineReleased(order_id=uuid.UUID(r.id), person_key=r.person_key,
                                                       region_code=r.region_code, released_at=now,
                                                       outcome="completed"), r.person_key) for r in released))
    return len(released)


async def _emit_due_tests(session: AsyncSession, now: datetime) -> int:
    today = local_date(now)
    active = select(Order.id).where(Order.status == ACTIVE)
    due = (await session.execute(
        update(ScheduledTest).where(ScheduledTest.emitted_at.is_(None), ScheduledTest.due_date <= today,
                                    ScheduledTest.order_id.in_(active))
        .values(emitted_at=now)
        .returning(ScheduledTest.order_id, ScheduledTest.person_key, ScheduledTest.region_code,
                   ScheduledTest.due_date, ScheduledTest.stage_index))).all()
    outbox.add(session, *(event_envelope(QuarantineTestDue(order_id=uuid.UUID(r.order_id), person_key=r.person_key,
                                                      region_code=r.region_code, due_date=r.due_date,
                                                      stage_index=r.stage_index), r.person_key) for r in due))
    return len(due)


async def _missed_checkins(session: AsyncSession, now: datetime, per_day: int) -> int:
    """One alert (and one test now) per order whose person checked in fewer than ``per_day`` times
    yesterday in a check-in stage. Set-based: the orders are read as plain rows, the alerts, tests and
    events written in batches (one query per order took ~16 s at 15,000 orders on SQLite)."""
    today = local_date(now)
    yesterday = today - DAY
    orders = (await session.execute(select(
        Order.id, Order.person_key, Order.region_code, Order.site_id, Order.current_stage, Order.facts,
        Order.stages).where(Order.status == ACTIVE))).all()
    counts = dict((await session.execute(
        select(Checkin.order_id, func.count()).where(Checkin.local_date == yesterday)
        .group_by(Checkin.order_id))).all())
    due: list[dict] = []
    for order in orders:
        if date.fromisoformat(order.facts["order_date"]) >= yesterday:
            continue  # opened yesterday or later: a partial day is not a missed one
        stage = _stage_on(order.stages, yesterday)
        if stage is None or stage["kind"] not in checkin_rules.CHECKIN_KINDS:
            continue
        count = counts.get(order.id, 0)
        if not checkin_rules.missed(count, per_day):
            continue
        due.append({"id": order.id, "order_id": order.id, "person_key": order.person_key,
                    "region_code": order.region_code, "site_id": order.site_id,
                    "current_stage": order.current_stage,
                    "detail": f"{yesterday.isoformat()} 健康打卡 {count}/{per_day} 次"})
    raised = await raise_alerts(session, "missed_checkin", yesterday, due)
    await urgent_tests(session, raised, "missed_checkin", now)
    return len(raised)


def _stage_on(raw_stages: list[dict], day: date) -> dict | None:
    """The stage (as stored) that covers ``day``, as stage_index_on + Stage.covers decide it, without
    building the Stage objects (this runs over every active order)."""
    if not raw_stages:
        return None
    iso = day.isoformat()  # ISO dates compare as strings
    if iso < raw_stages[0]["start_date"]:
        return None  # before the first stage: index 0, which does not cover the day
    for raw in raw_stages:
        if iso <= raw["end_date"]:
            return raw if raw["start_date"] <= iso else None
    return None
