"""Health check-ins of people in quarantine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal
from fangkong_common.errors import Conflict

from quarantine.domain import checkins as checkin_rules
from quarantine.domain.planning import local_date
from quarantine.models import (
    ACTIVE,
    Checkin,
    Order,
)
from quarantine.service.alerts import raise_alert, urgent_test


async def record_checkin(session: AsyncSession, order: Order, *, temperature_c: float, symptoms: list[str],
                         at: datetime, principal: Principal, now: datetime) -> tuple[Checkin, list[str], bool]:
    if order.status != ACTIVE:
        raise Conflict(f"隔离令状态为 {order.status}，不能打卡")
    checkin = Checkin(order_id=order.id, at=at, local_date=local_date(at), temperature_c=temperature_c,
                      symptoms=symptoms, recorded_by=principal.sub)
    session.add(checkin)
    kinds = checkin_rules.alert_kinds(temperature_c, symptoms)
    test_due = False
    for kind in kinds:
        detail = f"体温 {temperature_c:.1f}℃" if kind == "fever" else "症状：" + "、".join(symptoms)
        await raise_alert(session, person_key=order.person_key, region_code=order.region_code, kind=kind,
                     on=local_date(at), order_id=order.id, site_id=order.site_id, detail=detail)
        test_due = await urgent_test(session, order, kind, now) or test_due
    await session.flush()
    return checkin, kinds, test_due
