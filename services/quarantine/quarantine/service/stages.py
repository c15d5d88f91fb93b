"""Moving orders between their stages: the room for the new stage, a transfer between places."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from quarantine.domain.planning import local_date, stage_index_on
from quarantine.models import (
    ACTIVE,
    Order,
    OrderChange,
    Placement,
    Transfer,
)
from quarantine.service.common import site_kinds_for, stages_of
from quarantine.service.sites import free_rooms, place_people


async def advance_stages(session: AsyncSession, now: datetime, low_share: float) -> tuple[int, int]:
    """Orders whose stage ended (or that wait for a room) move on: the old room is freed,
    a room of the new stage's kind is taken, and a closed-loop transfer is requested."""
    today = local_date(now)
    orders = (await session.scalars(select(Order).where(
        Order.status == ACTIVE, or_(Order.stage_end_date < today, Order.awaiting_site.is_(True),
                                    Order.current_stage.is_(None))))).all()
    moved = 0
    people: list[tuple[dict, tuple[str, ...]]] = []
    by_id: dict[str, Order] = {}
    for order in orders:
        stages = stages_of(order)
        index = stage_index_on(stages, today)
        if index is None:
            continue
        stage = stages[index]
        changed = index != order.current_stage
        if changed:
            moved += 1
            previous = stages[order.current_stage] if order.current_stage is not None else None
            session.add(OrderChange(order_id=order.id, kind="stage_started", at=now,
                                    detail={"stage_index": index, "kind": stage.kind, "place": stage.place}))
            order.current_stage, order.stage_end_date, order.updated_at = index, stage.end_date, now
            old_site = order.site_id
            if order.site_id and (not previous or site_kinds_for(previous) != site_kinds_for(stage)
                                  or previous.place != stage.place):
                await free_rooms(session, now, order_ids=[order.id], purpose="quarantine", low_share=low_share)
                order.site_id, order.site_region_code = None, None
            if previous is not None and previous.place != stage.place:
                session.add(Transfer(id=str(uuid.uuid4()), person_key=order.person_key, order_id=order.id,
                                     region_code=order.region_code, from_place=previous.place,
                                     to_place=stage.place, from_site_id=old_site, to_site_id=None,
                                     vehicle="", escort="", status="requested", requested_at=now,
                                     requested_by="scheduler"))
        if stage.start_date <= today and site_kinds_for(stage) and order.site_id is None:
            people.append(({"id": order.id, "person_key": order.person_key, "region_code": order.region_code},
                           site_kinds_for(stage)))
            by_id[order.id] = order
        elif not site_kinds_for(stage):
            order.awaiting_site = False
    placements = await place_people(session, people, now, purpose="quarantine", low_share=low_share)
    for row, _ in people:
        order = by_id[row["id"]]
        order.awaiting_site = row["awaiting_site"]
        if row.get("site_id"):
            order.site_id, order.site_region_code = row["site_id"], row["site_region_code"]
    if placements:
        await session.execute(insert(Placement.__table__), placements)
        # the transfer requested above goes to the room just taken
        for p in placements:
            await session.execute(update(Transfer).where(Transfer.order_id == p["order_id"],
                                                         Transfer.status == "requested",
                                                         Transfer.to_site_id.is_(None))
                                  .values(to_site_id=p["site_id"]))
    await session.flush()
    return moved, len(placements)
