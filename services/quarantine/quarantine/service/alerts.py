"""Alerts and immediate tests (fever, symptoms, missed check-ins, no bed)."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import select
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
