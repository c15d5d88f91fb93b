"""Opening quarantine orders from returnee, risk and contact events (one per person and cause)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.errors import NotFound

from quarantine.domain.planning import DAY, Facts, Stage, plan, stage_index_on
from quarantine.models import (
    ACTIVE,
    Case,
    Order,
    OrderChange,
    Placement,
    ScheduledTest,
)
from quarantine.service.common import (
    chunked,
    facts_json,
    insert_ignoring,
    ordered_event,
    site_kinds_for,
    stage_json,
    test_rows_for,
)
from quarantine.service.policies import policy_book
from quarantine.service.sites import place_people


@dataclass(frozen=True)
class OrderRequest:
    person_key: str
    region_code: str
    cause: str
    facts: Facts
    grid: str | None = None
    source_event_id: str | None = None


async def open_orders(session: AsyncSession, requests: Sequence[OrderRequest], now: datetime,
                      *, low_share: float = 0.10) -> list[dict]:
    """Open one active order per person and cause (requests for a pair that has one are skipped),
    place those whose first stage needs a room today, emit quarantine.ordered. Set-based: a batch of
    requests costs a few statements."""
    if not requests:
        return []
    book = await policy_book(session)
    wanted = list({(r.person_key, r.cause): r for r in requests}.values())
    busy: set[str] = set()
    for chunk in chunked(sorted({r.person_key for r in wanted})):
        # a positive in (or waiting for) a hospital bed is not sent to quarantine as well
        busy.update((await session.scalars(select(Case.person_key).where(
            Case.person_key.in_(list(chunk)), Case.status.in_(("admitted", "awaiting_bed"))))).all())
    rows: list[dict] = []
    plans: dict[str, list[Stage]] = {}
    for request in wanted:
        if request.person_key in busy:
            continue
        policy = book.in_force(request.facts.order_date)
        if policy is None:
            continue
        stages = list(plan(policy, request.facts).stages)
        if not stages:
            continue  # nothing to do for this category under this policy (e.g. local travel)
        order_id = str(uuid.uuid4())
        index = stage_index_on(stages, request.facts.order_date)
        plans[order_id] = stages
        current = stages[index] if index is not None else None
        rows.append({
            "id": order_id, "person_key": request.person_key, "region_code": request.region_code,
            "grid": request.grid, "cause": request.cause, "category": request.facts.category, "status": ACTIVE,
            "policy_id": policy.policy_id, "policy_version": policy.version, "facts": facts_json(request.facts),
            "stages": [stage_json(s) for s in stages], "current_stage": index,
            "stage_end_date": current.end_date if current is not None else stages[-1].end_date,
            "release_date": stages[-1].end_date + DAY, "site_id": None, "site_region_code": None,
            # waiting for a room until placed below (or, if the stage starts later, by the daily job)
            "awaiting_site": bool(current is not None and site_kinds_for(current)),
            "source_event_id": request.source_event_id, "created_at": now, "updated_at": now,
        })
    if not rows:
        return []
    # The partial unique index (person_key, cause) WHERE active decides what is new: no
    # SELECT whose plan depends on table statistics, and a racing consumer finds the pair taken.
    table = Order.__table__
    fresh: set[str] = set()
    for chunk in chunked(rows):
        statement = insert_ignoring(session, table, ["person_key", "cause"], "status = 'active'")
        fresh.update(await session.scalars(statement.returning(table.c.id), list(chunk)))
    rows = [r for r in rows if r["id"] in fresh]
    if not rows:
        return []
    needing = [r for r in rows if r["awaiting_site"]
               and plans[r["id"]][r["current_stage"]].start_date.isoformat() <= r["facts"]["order_date"]]
    placements = await place_people(session, [(r, site_kinds_for(plans[r["id"]][r["current_stage"]])) for r in needing],
                              now, purpose="quarantine", low_share=low_share)
    placed = [{"b_id": r["id"], "b_site": r["site_id"], "b_region": r["site_region_code"]}
              for r in needing if r.get("site_id")]
    if placed:
        await session.execute(update(table).where(table.c.id == bindparam("b_id")).values(
            site_id=bindparam("b_site"), site_region_code=bindparam("b_region"), awaiting_site=False), placed)
    tests = [t for r in rows for t in test_rows_for(r["id"], r["person_key"], r["region_code"], plans[r["id"]],
                                                 date.fromisoformat(r["facts"]["order_date"]))]
    for chunk in chunked(tests):
        await session.execute(insert(ScheduledTest.__table__), list(chunk))
    changes = [{"order_id": r["id"], "kind": "planned", "at": now,
                "detail": {"policy_id": r["policy_id"], "policy_version": r["policy_version"],
                           "facts": r["facts"], "site_id": r["site_id"]}} for r in rows]
    for chunk in chunked(changes):
        await session.execute(insert(OrderChange.__table__), list(chunk))
    for chunk in chunked(placements):
        await session.execute(insert(Placement.__table__), list(chunk))
    outbox.add(session, *(ordered_event(r["id"], r["person_key"], r["region_code"], r["cause"], r["policy_id"],
                                         r["policy_version"], plans[r["id"]]) for r in rows))
    return rows


async def get_order(session: AsyncSession, order_id: str) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound(f"隔离令 {order_id} 不存在")
    return order
