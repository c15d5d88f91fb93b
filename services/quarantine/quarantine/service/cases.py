"""Positives, negatives and cases: a bed at once, classification, discharge."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.auth import Principal
from fangkong_common.db import dialect_insert, one_of
from fangkong_common.errors import Conflict, NotFound
from fangkong_common.events.schemas import (
    CaseClassified,
    QuarantineAdmitted,
    QuarantineReleased,
)

from quarantine.domain.placement import POSITIVE_KINDS
from quarantine.domain.planning import DAY, cut_at, local_date
from quarantine.models import (
    ACTIVE,
    Case,
    Order,
    OrderChange,
    Placement,
    ScheduledTest,
    Site,
    TestResult,
)
from quarantine.service.alerts import raise_alert
from quarantine.service.common import chunked, event_envelope, stage_json, stages_of
from quarantine.service.sites import free_rooms, place_people


async def admit_positive(session: AsyncSession, *, person_key: str, barcode: str, origin_hint: str,
                         resulted_at: datetime, now: datetime, low_share: float = 0.10) -> Case | None:
    """End the person's quarantine, take a hospital (or 方舱) bed at once, emit quarantine.admitted.
    A second positive for someone already a case changes nothing."""
    if await session.get(Case, person_key) is not None:
        return None
    today = local_date(now)
    orders = (await session.scalars(select(Order).where(Order.person_key == person_key, Order.status == ACTIVE)
                                    .order_by(Order.created_at))).all()
    origin = orders[0].region_code if orders else origin_hint
    for order in orders:
        old = stages_of(order)
        cut = cut_at(old, today)
        order.stages = [stage_json(s) for s in cut] or order.stages
        order.status, order.ended_at, order.updated_at, order.awaiting_site = "hospitalized", now, now, False
        order.release_date = today + DAY
        session.add(OrderChange(order_id=order.id, kind="stage_ended_positive", at=now,
                                detail={"barcode": barcode, "on": today.isoformat()}))
        await session.execute(delete(ScheduledTest).where(ScheduledTest.order_id == order.id,
                                                          ScheduledTest.emitted_at.is_(None)))
        outbox.add(session, event_envelope(QuarantineReleased(order_id=uuid.UUID(order.id), person_key=person_key,
                                                         region_code=order.region_code, released_at=now,
                                                         outcome="transferred_to_hospital"), person_key))
    if orders:
        await free_rooms(session, now, order_ids=[o.id for o in orders], low_share=low_share)
    case = Case(person_key=person_key, origin_region_code=origin, status="awaiting_bed", barcode=barcode,
                positive_at=resulted_at, order_id=orders[0].id if orders else None)
    session.add(case)
    await session.flush()
    await _admit(session, case, now, low_share)
    return case


async def _admit(session: AsyncSession, case: Case, now: datetime, low_share: float) -> bool:
    # no order id on a treatment bed: releasing an order must never free a hospital bed
    row = {"person_key": case.person_key, "region_code": case.origin_region_code, "id": None}
    placements = await place_people(session, [(row, POSITIVE_KINDS)], now, purpose="treatment", low_share=low_share)
    if not placements:
        await raise_alert(session, person_key=case.person_key, region_code=case.origin_region_code, kind="no_bed",
                     on=local_date(now), order_id=case.order_id, site_id=None,
                     detail="阳性人员暂无定点医院或方舱床位")
        return False
    await session.execute(insert(Placement.__table__), placements)
    site = await session.get(Site, row["site_id"])
    case.status, case.site_id, case.site_kind = "admitted", site.id, site.kind
    case.treating_region_code, case.admitted_at = site.region_code, now
    outbox.add(session, event_envelope(QuarantineAdmitted(
        person_key=case.person_key, region_code=site.region_code, origin_region_code=case.origin_region_code,
        order_id=uuid.UUID(case.order_id) if case.order_id else None, site_id=site.id, site_kind=site.kind,
        admitted_at=now), case.person_key))
    return True


async def admit_waiting(session: AsyncSession, now: datetime, low_share: float) -> int:
    waiting = (await session.scalars(select(Case).where(Case.status == "awaiting_bed")
                                     .order_by(Case.positive_at))).all()
    admitted = 0
    for case in waiting:
        admitted += await _admit(session, case, now, low_share)
    return admitted


async def record_negatives(session: AsyncSession, negatives: Sequence[tuple[Sequence[str], str, datetime]]) -> int:
    """Record the negatives (member keys, barcode, resulted at) of members who have an order here
    (others are not ours to keep): one look-up and one insert for a whole batch of pools, since a
    mass screening sends them by the hundred thousand. A result already recorded stays as it is."""
    members = {key for member_keys, _, _ in negatives for key in member_keys}
    if not members:
        return 0
    orders: dict[str, str] = {}
    for chunk in chunked(sorted(members), 5000):
        orders.update((await session.execute(select(Order.person_key, Order.id).where(
            one_of(session, Order.person_key, chunk), Order.status == ACTIVE))).all())
    rows = {(key, barcode): {"person_key": key, "order_id": orders[key], "barcode": barcode, "result": "negative",
                             "resulted_at": resulted_at}
            for member_keys, barcode, resulted_at in negatives for key in member_keys if key in orders}
    if rows:
        await session.execute(dialect_insert(session, TestResult).on_conflict_do_nothing(
            index_elements=["person_key", "barcode"]), list(rows.values()))
    return len(rows)


async def classify_case(session: AsyncSession, person_key: str, *, classification: str, severity: str | None,
                        principal: Principal, now: datetime) -> Case:
    case = await session.get(Case, person_key)
    if case is None:
        raise NotFound(f"病例 {person_key} 不存在")
    if case.treating_region_code is None:
        raise Conflict("该阳性人员尚未收治入院，收治后再由医疗机构分类")
    case.classification, case.severity, case.classified_at, case.classified_by = (
        classification, severity, now, principal.sub)
    outbox.add(session, event_envelope(CaseClassified(
        person_key=person_key, origin_region_code=case.origin_region_code,
        treating_region_code=case.treating_region_code, classification=classification, severity=severity,
        classified_at=now, site_id=case.site_id), person_key))
    await session.flush()
    return case


async def discharge_case(session: AsyncSession, person_key: str, now: datetime, *, low_share: float = 0.10) -> Case:
    """The medical institution discharges a case: the bed is freed (the case keeps its classification)."""
    case = await session.get(Case, person_key)
    if case is None:
        raise NotFound(f"病例 {person_key} 不存在")
    if case.status != "admitted":
        raise Conflict(f"病例状态为 {case.status}，不能出院")
    await free_rooms(session, now, person_key=person_key, purpose="treatment", low_share=low_share)
    case.status = "discharged"
    await session.flush()
    return case
