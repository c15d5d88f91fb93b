"""Use cases: test orders."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import QuarantineTestDue
from testing.config import Settings
from testing.models import TestOrder
from testing.service.common import insert_ignore, utc_now
from testing.service.results import order_row
from testing.service.tubes import resolve_member


async def list_orders(session: AsyncSession, principal: Principal, settings: Settings, *, person_id: str | None,
                      status: str | None, reason: str | None, source_barcode: str | None,
                      limit: int) -> list[TestOrder]:
    statement = select(TestOrder).where(principal.scope_clause(TestOrder.region_code))
    if person_id:
        statement = statement.where(TestOrder.person_key == resolve_member(
            person_id, "resident_id", settings.person_key_secret.get_secret_value()))
    if status:
        statement = statement.where(TestOrder.status == status)
    if reason:
        statement = statement.where(TestOrder.reason == reason)
    if source_barcode:
        statement = statement.where(TestOrder.source_barcode == source_barcode)
    return list(await session.scalars(statement.order_by(TestOrder.created_at, TestOrder.id).limit(limit)))


async def apply_test_due(session: AsyncSession, envelopes: list[Envelope]) -> None:
    """quarantine.test_due → one pending order per (quarantine order, stage, day); replays change nothing."""
    now = utc_now()
    rows = []
    for envelope in envelopes:
        due = QuarantineTestDue.model_validate(envelope.payload)
        rows.append(order_row(due.person_key, due.region_code, "quarantine", now=now,
                               dedup=f"quarantine:{due.order_id}:{due.stage_index}:{due.due_date.isoformat()}",
                               quarantine_order_id=str(due.order_id), stage_index=due.stage_index,
                               due_date=due.due_date))
    if rows:
        await session.execute(insert_ignore(session, TestOrder), rows)

