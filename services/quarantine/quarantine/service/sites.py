"""Sites and beds: choosing rooms, occupancy, site.capacity_low, freeing rooms."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.errors import Conflict
from fangkong_common.events.schemas import (
    QuarantineAdmitted,
    SiteCapacityLow,
)

from quarantine.domain.placement import SiteSlot, is_low, place_many
from quarantine.models import (
    Placement,
    Site,
)
from quarantine.service.common import chunked, event_envelope


async def _load_slots(session: AsyncSession, kinds: Iterable[str]) -> dict[str, SiteSlot]:
    # FOR UPDATE: two consumers placing at once see each other's occupancy (PostgreSQL);
    # SQLite has one writer at a time anyway.
    sites = (await session.scalars(select(Site).where(Site.kind.in_(sorted(set(kinds))))
                                   .order_by(Site.id).with_for_update())).all()
    return {s.id: SiteSlot(s.id, s.kind, s.region_code, s.capacity, s.occupancy, tuple(s.supporting_regions or ()))
            for s in sites}


async def place_people(session: AsyncSession, people: Sequence[tuple[dict, Sequence[str]]], now: datetime, *,
                 purpose: str, low_share: float) -> list[dict]:
    """Choose sites for ``people`` (row dicts with person_key, region_code, id) and write occupancy;
    sets site_id / site_region_code / awaiting_site on the dicts; returns placement rows to insert."""
    if not people:
        return []
    slots = await _load_slots(session, {k for _, kinds in people for k in kinds})
    before = {sid: slot.occupancy for sid, slot in slots.items()}
    chosen = place_many(list(slots.values()), [(row["region_code"], kinds) for row, kinds in people])
    placements = []
    for (row, _), site in zip(people, chosen, strict=True):
        if site is None:
            row["awaiting_site"] = True
            continue
        row["site_id"], row["site_region_code"], row["awaiting_site"] = site.site_id, site.region_code, False
        placements.append({"site_id": site.site_id, "person_key": row["person_key"], "order_id": row.get("id"),
                           "purpose": purpose, "placed_at": now, "released_at": None})
        if purpose == "quarantine":
            # Held at a site (a hotel room, a port room): the "in quarantine" side of 应隔尽隔.
            # Treatment beds announce themselves in _admit, with the case's origin city.
            outbox.add(session, event_envelope(QuarantineAdmitted(
                person_key=row["person_key"], region_code=site.region_code, origin_region_code=row["region_code"],
                order_id=uuid.UUID(row["id"]) if row.get("id") else None, site_id=site.site_id,
                site_kind=site.kind, admitted_at=now), row["person_key"]))
    await _write_occupancy(session, slots, before, low_share)
    return placements


async def _write_occupancy(session: AsyncSession, slots: dict[str, SiteSlot], before: dict[str, int],
                           low_share: float) -> None:
    touched = [slot for sid, slot in slots.items() if slot.occupancy != before[sid]]
    if not touched:
        return
    flags = dict((await session.execute(select(Site.id, Site.low_alerted).where(
        Site.id.in_([s.site_id for s in touched])))).all())
    rows = []
    for slot in touched:
        low = is_low(slot.capacity, slot.occupancy, low_share)
        flag = flags[slot.site_id]
        if low and not flag:
            flag = True
            outbox.add(session, event_envelope(SiteCapacityLow(
                site_id=slot.site_id, region_code=slot.region_code, site_kind=slot.kind,
                beds_total=slot.capacity, beds_free=slot.free, threshold=low_share), slot.site_id))
        elif not low and flag:
            flag = False  # room again: the next crossing alerts again
        rows.append({"b_id": slot.site_id, "b_occupancy": slot.occupancy, "b_low": flag})
    table = Site.__table__
    await session.execute(update(table).where(table.c.id == bindparam("b_id"))
                          .values(occupancy=bindparam("b_occupancy"), low_alerted=bindparam("b_low")), rows)


async def free_rooms(session: AsyncSession, now: datetime, *, order_ids: Sequence[str] = (),
                person_key: str | None = None, purpose: str | None = None, low_share: float = 0.10) -> int:
    """Release the open placements of these orders (or this person); gives the rooms back."""
    query = select(Placement.id, Placement.site_id).where(Placement.released_at.is_(None))
    if order_ids:
        query = query.where(Placement.order_id.in_(list(order_ids)))
    elif person_key is not None:
        query = query.where(Placement.person_key == person_key)
    else:
        return 0
    if purpose:
        query = query.where(Placement.purpose == purpose)
    open_rows = (await session.execute(query)).all()
    if not open_rows:
        return 0
    for chunk in chunked([r.id for r in open_rows]):
        await session.execute(update(Placement).where(Placement.id.in_(list(chunk))).values(released_at=now))
    per_site: dict[str, int] = defaultdict(int)
    for r in open_rows:
        per_site[r.site_id] += 1
    slots = await _load_slots_by_id(session, per_site)
    before = {sid: s.occupancy for sid, s in slots.items()}
    for sid, n in per_site.items():
        slots[sid].occupancy = max(0, slots[sid].occupancy - n)
    await _write_occupancy(session, slots, before, low_share)
    return len(open_rows)


async def _load_slots_by_id(session: AsyncSession, ids: Iterable[str]) -> dict[str, SiteSlot]:
    sites = (await session.scalars(select(Site).where(Site.id.in_(sorted(ids))).order_by(Site.id)
                                   .with_for_update())).all()
    return {s.id: SiteSlot(s.id, s.kind, s.region_code, s.capacity, s.occupancy, tuple(s.supporting_regions or ()))
            for s in sites}


async def create_site(session: AsyncSession, *, site_id: str | None, name: str, kind: str, region_code: str,
                      capacity: int, supporting_regions: list[str], occupancy: int = 0) -> Site:
    site_id = site_id or str(uuid.uuid4())
    if await session.get(Site, site_id) is not None:
        raise Conflict(f"隔离点 {site_id} 已存在")
    site = Site(id=site_id, name=name, kind=kind, region_code=region_code, capacity=capacity,
                occupancy=occupancy, supporting_regions=supporting_regions, low_alerted=False)
    session.add(site)
    await session.flush()
    return site
