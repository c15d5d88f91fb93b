"""Moving orders between their stages: the room for the new stage, a transfer between places."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from quarantine.domain.planning import local_date, stage_index_on
from quarantine.models import (
    ACTIVE,
    Order,
    OrderChange,
    Placement,
    Transfer,
)
from quarantine.service.common import chunked, site_kinds_for, stages_of
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
    changes: list[dict] = []
    transfers: list[dict] = []
    to_free: list[str] = []
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
            changes.append({"order_id": order.id, "kind": "stage_started", "at": now,
                            "detail": {"stage_index": index, "kind": stage.kind, "place": stage.place}})
            order.current_stage, order.stage_end_date, order.updated_at = index, stage.end_date, now
            old_site = order.site_id
            if order.site_id and (not previous or site_kinds_for(previous) != site_kinds_for(stage)
                                  or previous.place != stage.place):
                to_free.append(order.id)
                order.site_id, order.site_region_code = None, None
            if previous is not None and previous.place != stage.place:
                transfers.append({"id": str(uuid.uuid4()), "person_key": order.person_key, "order_id": order.id,
                                  "region_code": order.region_code, "from_place": previous.place,
                                  "to_place": stage.place, "from_site_id": old_site, "to_site_id": None,
                                  "vehicle": "", "escort": "", "status": "requested", "requested_at": now,
                                  "dispatched_at": None, "arrived_at": None, "requested_by": "scheduler"})
        if stage.start_date <= today and site_kinds_for(stage) and order.site_id is None:
            people.append(({"id": order.id, "person_key": order.person_key, "region_code": order.region_code},
                           site_kinds_for(stage)))
            by_id[order.id] = order
        elif not site_kinds_for(stage):
            order.awaiting_site = False
    # Rooms left go back first (all frees come before any new room is taken, as one order at a time
    # did: occupancy only falls here, so the capacity_low flags end the same), in chunks for the IN list.
    for chunk in chunked(to_free):
        await free_rooms(session, now, order_ids=chunk, purpose="quarantine", low_share=low_share)
    if changes:
        await session.execute(insert(OrderChange.__table__), changes)
    placements = await place_people(session, people, now, purpose="quarantine", low_share=low_share)
    for row, _ in people:
        order = by_id[row["id"]]
        order.awaiting_site = row["awaiting_site"]
        if row.get("site_id"):
            order.site_id, order.site_region_code = row["site_id"], row["site_region_code"]
    # the transfer requested (now, or on an earlier day when no room was free) goes to the room just taken
    taken = {p["order_id"]: p["site_id"] for p in placements}
    for t in transfers:
        t["to_site_id"] = taken.get(t["order_id"])
    if transfers:
        await session.execute(insert(Transfer.__table__), transfers)
    if placements:
        await session.execute(insert(Placement.__table__), placements)
        earlier = []
        for chunk in chunked(list(taken)):
            earlier += (await session.execute(select(Transfer.id, Transfer.order_id).where(
                Transfer.order_id.in_(list(chunk)), Transfer.status == "requested", Transfer.to_site_id.is_(None)))).all()
        if earlier:
            table = Transfer.__table__
            await session.execute(update(table).where(table.c.id == bindparam("b_id"))
                                  .values(to_site_id=bindparam("b_site")),
                                  [{"b_id": t.id, "b_site": taken[t.order_id]} for t in earlier])
    await session.flush()
    return moved, len(placements)
