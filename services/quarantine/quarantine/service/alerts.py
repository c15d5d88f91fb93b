"""Alerts and immediate tests (fever, symptoms, missed check-ins, no bed)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from collections.abc import Sequence

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.events.schemas import (
    QuarantineTestDue,
)

from quarantine.domain.planning import local_date
from quarantine.models import (
    Alert,
    Order,
    ScheduledTest,
)
from quarantine.service.common import event_envelope


async def urgent_test(session: AsyncSession, order: Order, reason: str, now: datetime) -> bool:
    """A test due now (fever, symptoms, missed check-in); one per order, reason and day."""
    today = local_date(now)
    exists = await session.scalar(select(ScheduledTest.id).where(
        ScheduledTest.order_id == order.id, ScheduledTest.due_date == today, ScheduledTest.reason == reason))
    if exists is not None:
        return False
    session.add(ScheduledTest(order_id=order.id, person_key=order.person_key, region_code=order.region_code,
                              due_date=today, stage_index=order.current_stage or 0, reason=reason, emitted_at=now))
    outbox.add(session, event_envelope(QuarantineTestDue(order_id=uuid.UUID(order.id), person_key=order.person_key,
                                                    region_code=order.region_code, due_date=today,
                                                    stage_index=order.current_stage or 0), order.person_key))
    return True


async def raise_alert(session: AsyncSession, *, person_key: str, region_code: str, kind: str, on: date,
                 order_id: str | None, site_id: str | None, detail: str) -> bool:
    exists = await session.scalar(select(Alert.id).where(Alert.person_key == person_key, Alert.kind == kind,
                                                         Alert.on_date == on, Alert.order_id == order_id
                                                         if order_id else Alert.order_id.is_(None)))
    if exists is not None:
        return False
    session.add(Alert(person_key=person_key, region_code=region_code, kind=kind, on_date=on, order_id=order_id,
                      site_id=site_id, detail=detail))
    return True


async def raise_alerts(session: AsyncSession, kind: str, on: date, rows: Sequence[dict]) -> list[dict]:
    """``raise_alert`` for many orders at once (dicts with person_key, region_code, order_id, site_id,
    detail): one query for those already raised, one INSERT for the rest; returns the rows inserted."""
    if not rows:
        return []
    raised = set((await session.execute(select(Alert.person_key, Alert.order_id).where(
        Alert.kind == kind, Alert.on_date == on))).all())
    new, seen = [], set()
    for row in rows:
        key = (row["person_key"], row["order_id"])
        if key in raised or key in seen:
            continue
        seen.add(key)
        new.append(row)
    if new:
        await session.execute(insert(Alert.__table__), [
            {"person_key": r["person_key"], "region_code": r["region_code"], "kind": kind, "on_date": on,
             "order_id": r["order_id"], "site_id": r["site_id"], "detail": r["detail"]} for r in new])
    return new


async def urgent_tests(session: AsyncSession, orders: Sequence[dict], reason: str, now: datetime) -> int:
    """``urgent_test`` for many orders (dicts with id, person_key, region_code, current_stage): one
    query for the tests already due today for this reason, one INSERT and one outbox batch for the rest."""
    if not orders:
        return 0
    today = local_date(now)
    exists = set((await session.scalars(select(ScheduledTest.order_id).where(
        ScheduledTest.due_date == today, ScheduledTest.reason == reason))).all())
    new = []
    for order in orders:
        if order["id"] in exists:
            continue
        exists.add(order["id"])
        new.append(order)
    if not new:
        return 0
    await session.execute(insert(ScheduledTest.__table__), [
        {"order_id": o["id"], "person_key": o["person_key"], "region_code": o["region_code"], "due_date": today,
         "stage_index": o["current_stage"] or 0, "reason": reason, "emitted_at": now} for o in new])
    outbox.add(session, *(event_envelope(QuarantineTestDue(
        order_id=uuid.UUID(o["id"]), person_key=o["person_key"], region_code=o["region_code"], due_date=today,
        stage_index=o["current_stage"] or 0), o["person_key"]) for o in new))
    return len(new)
