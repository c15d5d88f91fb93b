"""Policies as data: the book of versions, publishing one, re-planning active orders."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.auth import Principal
from fangkong_common.errors import Conflict

from quarantine.domain.planning import DAY, local_date, replan, stage_index_on
from quarantine.domain.policy import Policy, PolicyBook, parse_policy, policy_document
from quarantine.models import (
    ACTIVE,
    Order,
    OrderChange,
    PolicyVersion,
    ScheduledTest,
)
from quarantine.service.common import (
    PACKAGED,
    chunked,
    facts_from_json,
    ordered_event,
    stage_json,
    stages_of,
    test_rows_for,
)
from quarantine.service.stages import advance_stages


async def policy_book(session: AsyncSession) -> PolicyBook:
    rows = (await session.scalars(select(PolicyVersion.document))).all()
    return PolicyBook([*PACKAGED, *(parse_policy(doc) for doc in rows)])


async def publish_policy(session: AsyncSession, document: dict[str, Any], principal: Principal,
                         now: datetime) -> tuple[PolicyVersion, int]:
    """Store a new version; if already in force, re-plan the active orders under it at once."""
    policy = parse_policy(document)  # PolicyError -> 422 in the API
    book = await policy_book(session)
    earlier = [p for p in book.policies if p.policy_id == policy.policy_id]
    if earlier and policy.version <= max(p.version for p in earlier):
        raise Conflict(f"策略 {policy.policy_id} 已有版本 {max(p.version for p in earlier)}，新版本号须更大")
    if earlier:
        # a version changes the categories it names; the others carry over from the latest version,
        # so a revision of the contact rules does not leave returnees without a rule
        latest = max(earlier, key=lambda p: p.version)
        policy = replace(policy, categories={**latest.categories, **policy.categories},
                         basis=policy.basis or latest.basis)
    row = PolicyVersion(policy_id=policy.policy_id, version=policy.version, effective_from=policy.effective_from,
                        title=policy.title, document=policy_document(policy), published_by=principal.sub,
                        replanned_orders=0)
    session.add(row)
    await session.flush()
    if policy.effective_from <= local_date(now):
        row.replanned_orders = await apply_policy(session, policy, now)
        row.applied_at = now
    return row, row.replanned_orders


async def apply_policy(session: AsyncSession, policy: Policy, now: datetime, low_share: float = 0.10) -> int:
    """Re-plan every active order from its current stage on under ``policy``; record each change."""
    today = local_date(now)
    orders = (await session.scalars(select(Order).where(Order.status == ACTIVE,
                                                        Order.policy_id == policy.policy_id))).all()
    changed = 0
    moved: list[str] = []
    changes: list[dict] = []
    replanned: list[tuple[Order, tuple]] = []
    for order in orders:
        if order.policy_version >= policy.version:
            continue
        old = stages_of(order)
        new = replan(old, policy, facts_from_json(order.facts), today)
        if new is None:
            continue
        if tuple(new) == tuple(old):
            order.policy_version = policy.version  # same days under the new version: nothing to tell
            continue
        changed += 1
        changes.append({"order_id": order.id, "kind": "replanned", "detail": {
            "from_version": order.policy_version, "to_version": policy.version, "on": today.isoformat(),
            "before": [stage_json(s) for s in old], "after": [stage_json(s) for s in new]}})
        order.policy_version = policy.version
        order.updated_at = now
        if not new:
            order.release_date = today
            order.stages = []
            continue
        order.stages = [stage_json(s) for s in new]
        order.release_date = new[-1].end_date + DAY
        index = stage_index_on(new, today)
        order.stage_end_date = new[index].end_date if index is not None else new[-1].end_date
        if index != order.current_stage:
            moved.append(order.id)
            order.stage_end_date = today - DAY  # the stage move (room, transfer) is advance_stages's job
        replanned.append((order, tuple(new)))
    if changes:  # "at" left to the server default, as the ORM rows had it
        await session.execute(insert(OrderChange.__table__), changes)
    # future planned tests follow the new plan; those already sent stay sent (a few statements for all
    # the orders: one per order took a minute at 10,000 orders on SQLite)
    sent: dict[str, set] = {}
    for chunk in chunked([order.id for order, _ in replanned]):
        await session.execute(delete(ScheduledTest).where(ScheduledTest.order_id.in_(list(chunk)),
                                                          ScheduledTest.reason == "plan",
                                                          ScheduledTest.emitted_at.is_(None)))
        for order_id, day in (await session.execute(select(ScheduledTest.order_id, ScheduledTest.due_date).where(
                ScheduledTest.order_id.in_(list(chunk)), ScheduledTest.reason == "plan"))).all():
            sent.setdefault(order_id, set()).add(day)
    rows = [r for order, new in replanned
            for r in test_rows_for(order.id, order.person_key, order.region_code, new, today)
            if r["due_date"] not in sent.get(order.id, ())]
    for chunk in chunked(rows, 5000):
        await session.execute(insert(ScheduledTest.__table__), list(chunk))
    outbox.add(session, *(ordered_event(order.id, order.person_key, order.region_code, order.cause,
                                        policy.policy_id, policy.version, new) for order, new in replanned))
    await session.flush()
    if moved:
        await advance_stages(session, now, low_share)
    return changed
