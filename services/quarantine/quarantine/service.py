"""Use cases of the quarantine service: the only module that writes the outbox.

Every function runs inside the caller's transaction (a request session, or a
consumer's session with its inbox rows) and takes ``now`` from the caller, so
a replayed event plans the same dates.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.auth import Principal
from fangkong_common.errors import Conflict, NotFound, ServiceError
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import (
    CaseClassified,
    PlannedStage,
    QuarantineAdmitted,
    QuarantineOrdered,
    QuarantineReleased,
    QuarantineTestDue,
    SiteCapacityLow,
)
from quarantine.domain import checkins as checkin_rules
from quarantine.domain.placement import KINDS_FOR_PLACE, POSITIVE_KINDS, SiteSlot, is_low, place_many
from quarantine.domain.planning import DAY, Facts, Stage, cut_at, local_date, plan, replan, stage_index_on
from quarantine.domain.policy import Policy, PolicyBook, load_packaged, parse_policy, policy_document
from quarantine.domain.transfers import allowed_next, can_advance
from quarantine.models import (
    ACTIVE,
    Alert,
    Case,
    Checkin,
    Order,
    OrderChange,
    Placement,
    PolicyVersion,
    ScheduledTest,
    Site,
    TestResult,
    Transfer,
)

SOURCE = "quarantine"
PACKAGED: list[Policy] = load_packaged()
CHUNK = 500


class Unprocessable(ServiceError):
    status_code = 422


# --- (de)serialising stages ------------------------------------------------


def stage_json(stage: Stage) -> dict[str, Any]:
    return {"kind": stage.kind, "place": stage.place, "start_date": stage.start_date.isoformat(),
            "end_date": stage.end_date.isoformat(), "test_days": [d.isoformat() for d in stage.test_days],
            "first_day": stage.first_day, "days": stage.days}


def stage_from_json(raw: dict[str, Any]) -> Stage:
    return Stage(raw["kind"], raw["place"], date.fromisoformat(raw["start_date"]),
                 date.fromisoformat(raw["end_date"]), tuple(date.fromisoformat(d) for d in raw["test_days"]),
                 raw.get("first_day", 1), raw.get("days", 0))


def facts_json(facts: Facts) -> dict[str, Any]:
    return {"category": facts.category, "order_date": facts.order_date.isoformat(),
            "arrival_date": facts.arrival_date.isoformat() if facts.arrival_date else None,
            "exposure_date": facts.exposure_date.isoformat() if facts.exposure_date else None,
            "served_days": facts.served_days}


def facts_from_json(raw: dict[str, Any]) -> Facts:
    def d(key: str) -> date | None:
        return date.fromisoformat(raw[key]) if raw.get(key) else None

    return Facts(raw["category"], date.fromisoformat(raw["order_date"]), d("arrival_date"), d("exposure_date"),
                 raw.get("served_days", 0))


def _stages(order: Order | dict) -> list[Stage]:
    raw = order["stages"] if isinstance(order, dict) else order.stages
    return [stage_from_json(s) for s in raw]


def _envelope(payload, key: str) -> Envelope:
    return Envelope.wrap(payload, source=SOURCE, key=key)


def _site_kinds(stage: Stage) -> tuple[str, ...]:
    return KINDS_FOR_PLACE.get(stage.place, ())


def _test_rows(order_id: str, person_key: str, region: str, stages: Sequence[Stage], since: date) -> list[dict]:
    return [{"order_id": order_id, "person_key": person_key, "region_code": region, "due_date": day,
             "stage_index": i, "reason": "plan", "emitted_at": None}
            for i, stage in enumerate(stages) for day in stage.test_days if day >= since]


def _ordered_event(order_id: str, person_key: str, region: str, cause: str, policy_id: str, version: int,
                   stages: Sequence[Stage]) -> Envelope:
    return _envelope(QuarantineOrdered(
        order_id=uuid.UUID(order_id), person_key=person_key, region_code=region, reason=cause,
        policy_id=policy_id, policy_version=version,
        stages=[PlannedStage(kind=s.kind, place=s.place, start_date=s.start_date, end_date=s.end_date,
                             test_days=list(s.test_days)) for s in stages]), person_key)


def _chunks(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --- policies --------------------------------------------------------------


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
    for order in orders:
        if order.policy_version >= policy.version:
            continue
        old = _stages(order)
        new = replan(old, policy, facts_from_json(order.facts), today)
        if new is None:
            continue
        if tuple(new) == tuple(old):
            order.policy_version = policy.version  # same days under the new version: nothing to tell
            continue
        changed += 1
        session.add(OrderChange(order_id=order.id, kind="replanned", detail={
            "from_version": order.policy_version, "to_version": policy.version, "on": today.isoformat(),
            "before": [stage_json(s) for s in old], "after": [stage_json(s) for s in new]}))
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
            order.stage_end_date = today - DAY  # the stage move (room, transfer) is _advance's job
        # future planned tests follow the new plan; those already sent stay sent
        await session.execute(delete(ScheduledTest).where(ScheduledTest.order_id == order.id,
                                                          ScheduledTest.reason == "plan",
                                                          ScheduledTest.emitted_at.is_(None)))
        sent = set((await session.scalars(select(ScheduledTest.due_date).where(
            ScheduledTest.order_id == order.id, ScheduledTest.reason == "plan"))).all())
        rows = [r for r in _test_rows(order.id, order.person_key, order.region_code, new, today)
                if r["due_date"] not in sent]
        if rows:
            await session.execute(insert(ScheduledTest.__table__), rows)
        outbox.add(session, _ordered_event(order.id, order.person_key, order.region_code, order.cause,
                                           policy.policy_id, policy.version, new))
    await session.flush()
    if moved:
        await _advance(session, now, low_share)
    return changed


# --- orders ------------------------------------------------------------------


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
    for chunk in _chunks(sorted({r.person_key for r in wanted})):
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
            "awaiting_site": bool(current is not None and _site_kinds(current)),
            "source_event_id": request.source_event_id, "created_at": now, "updated_at": now,
        })
    if not rows:
        return []
    # The partial unique index (person_key, cause) WHERE active decides what is new: no
    # SELECT whose plan depends on table statistics, and a racing consumer finds the pair taken.
    table = Order.__table__
    fresh: set[str] = set()
    for chunk in _chunks(rows):
        statement = _insert_ignoring(session, table, ["person_key", "cause"], "status = 'active'")
        fresh.update(await session.scalars(statement.returning(table.c.id), list(chunk)))
    rows = [r for r in rows if r["id"] in fresh]
    if not rows:
        return []
    needing = [r for r in rows if r["awaiting_site"]
               and plans[r["id"]][r["current_stage"]].start_date.isoformat() <= r["facts"]["order_date"]]
    placements = await _place(session, [(r, _site_kinds(plans[r["id"]][r["current_stage"]])) for r in needing],
                              now, purpose="quarantine", low_share=low_share)
    placed = [{"b_id": r["id"], "b_site": r["site_id"], "b_region": r["site_region_code"]}
              for r in needing if r.get("site_id")]
    if placed:
        await session.execute(update(table).where(table.c.id == bindparam("b_id")).values(
            site_id=bindparam("b_site"), site_region_code=bindparam("b_region"), awaiting_site=False), placed)
    tests = [t for r in rows for t in _test_rows(r["id"], r["person_key"], r["region_code"], plans[r["id"]],
                                                 date.fromisoformat(r["facts"]["order_date"]))]
    for chunk in _chunks(tests):
        await session.execute(insert(ScheduledTest.__table__), list(chunk))
    changes = [{"order_id": r["id"], "kind": "planned", "at": now,
                "detail": {"policy_id": r["policy_id"], "policy_version": r["policy_version"],
                           "facts": r["facts"], "site_id": r["site_id"]}} for r in rows]
    for chunk in _chunks(changes):
        await session.execute(insert(OrderChange.__table__), list(chunk))
    for chunk in _chunks(placements):
        await session.execute(insert(Placement.__table__), list(chunk))
    outbox.add(session, *(_ordered_event(r["id"], r["person_key"], r["region_code"], r["cause"], r["policy_id"],
                                         r["policy_version"], plans[r["id"]]) for r in rows))
    return rows


def _insert_ignoring(session: AsyncSession, table, columns: list[str], where: str):
    """INSERT … ON CONFLICT (columns) WHERE … DO NOTHING, on PostgreSQL or SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table).on_conflict_do_nothing(index_elements=columns, index_where=text(where))


async def _load_slots(session: AsyncSession, kinds: Iterable[str]) -> dict[str, SiteSlot]:
    # FOR UPDATE: two consumers placing at once see each other's occupancy (PostgreSQL);
    # SQLite has one writer at a time anyway.
    sites = (await session.scalars(select(Site).where(Site.kind.in_(sorted(set(kinds))))
                                   .order_by(Site.id).with_for_update())).all()
    return {s.id: SiteSlot(s.id, s.kind, s.region_code, s.capacity, s.occupancy, tuple(s.supporting_regions or ()))
            for s in sites}


async def _place(session: AsyncSession, people: Sequence[tuple[dict, Sequence[str]]], now: datetime, *,
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
            outbox.add(session, _envelope(QuarantineAdmitted(
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
            outbox.add(session, _envelope(SiteCapacityLow(
                site_id=slot.site_id, region_code=slot.region_code, site_kind=slot.kind,
                beds_total=slot.capacity, beds_free=slot.free, threshold=low_share), slot.site_id))
        elif not low and flag:
            flag = False  # room again: the next crossing alerts again
        rows.append({"b_id": slot.site_id, "b_occupancy": slot.occupancy, "b_low": flag})
    table = Site.__table__
    await session.execute(update(table).where(table.c.id == bindparam("b_id"))
                          .values(occupancy=bindparam("b_occupancy"), low_alerted=bindparam("b_low")), rows)


async def _free(session: AsyncSession, now: datetime, *, order_ids: Sequence[str] = (),
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
    for chunk in _chunks([r.id for r in open_rows]):
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


async def get_order(session: AsyncSession, order_id: str) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise NotFound(f"隔离令 {order_id} 不存在")
    return order


# --- the daily job ---------------------------------------------------------------


@dataclass
class DailyReport:
    day: date
    policies_applied: int = 0
    orders_replanned: int = 0
    stages_moved: int = 0
    placed: int = 0
    released: int = 0
    tests_due: int = 0
    missed_checkins: int = 0
    cases_admitted: int = 0


async def run_daily(session: AsyncSession, now: datetime, *, checkins_per_day: int = 2,
                    low_share: float = 0.10) -> DailyReport:
    """Everything the calendar drives. Safe to run twice the same day: each step only
    acts on what is still to do (and remembers what it emitted)."""
    today = local_date(now)
    report = DailyReport(today)
    # 1. versions that came into force since the last run
    due = (await session.scalars(select(PolicyVersion).where(PolicyVersion.applied_at.is_(None),
                                                             PolicyVersion.effective_from <= today)
                                 .order_by(PolicyVersion.effective_from, PolicyVersion.version))).all()
    for row in due:
        row.replanned_orders = await apply_policy(session, parse_policy(row.document), now)
        row.applied_at = now
        report.policies_applied += 1
        report.orders_replanned += row.replanned_orders
    # 2. releases: the last stage has ended
    report.released = await _release_due(session, now, low_share)
    # 3. stage moves and rooms for those still waiting for one
    moved, placed = await _advance(session, now, low_share)
    report.stages_moved, report.placed = moved, placed
    # 4. positives still waiting for a bed
    report.cases_admitted = await _admit_waiting(session, now, low_share)
    # 5. missed check-ins yesterday -> alert and a test now
    if checkins_per_day > 0:
        report.missed_checkins = await _missed_checkins(session, now, checkins_per_day)
    # 6. tests due today (and any a stopped scheduler left behind)
    report.tests_due = await _emit_due_tests(session, now)
    return report


async def _release_due(session: AsyncSession, now: datetime, low_share: float) -> int:
    today = local_date(now)
    released = (await session.execute(
        update(Order).where(Order.status == ACTIVE, Order.release_date <= today)
        .values(status="released", ended_at=now, updated_at=now, current_stage=None, awaiting_site=False)
        .returning(Order.id, Order.person_key, Order.region_code))).all()
    if not released:
        return 0
    ids = [r.id for r in released]
    for chunk in _chunks(ids):
        await _free(session, now, order_ids=chunk, low_share=low_share)
    await session.execute(insert(OrderChange.__table__), [{"order_id": r.id, "kind": "released", "at": now,
                                                 "detail": {"on": today.isoformat()}} for r in released])
    outbox.add(session, *(_envelope(QuarantineReleased(order_id=uuid.UUID(r.id), person_key=r.person_key,
                                                       region_code=r.region_code, released_at=now,
                                                       outcome="completed"), r.person_key) for r in released))
    return len(released)


async def _advance(session: AsyncSession, now: datetime, low_share: float) -> tuple[int, int]:
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
        stages = _stages(order)
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
            if order.site_id and (not previous or _site_kinds(previous) != _site_kinds(stage)
                                  or previous.place != stage.place):
                await _free(session, now, order_ids=[order.id], purpose="quarantine", low_share=low_share)
                order.site_id, order.site_region_code = None, None
            if previous is not None and previous.place != stage.place:
                session.add(Transfer(id=str(uuid.uuid4()), person_key=order.person_key, order_id=order.id,
                                     region_code=order.region_code, from_place=previous.place,
                                     to_place=stage.place, from_site_id=old_site, to_site_id=None,
                                     vehicle="", escort="", status="requested", requested_at=now,
                                     requested_by="scheduler"))
        if stage.start_date <= today and _site_kinds(stage) and order.site_id is None:
            people.append(({"id": order.id, "person_key": order.person_key, "region_code": order.region_code},
                           _site_kinds(stage)))
            by_id[order.id] = order
        elif not _site_kinds(stage):
            order.awaiting_site = False
    placements = await _place(session, people, now, purpose="quarantine", low_share=low_share)
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


async def _emit_due_tests(session: AsyncSession, now: datetime) -> int:
    today = local_date(now)
    active = select(Order.id).where(Order.status == ACTIVE)
    due = (await session.execute(
        update(ScheduledTest).where(ScheduledTest.emitted_at.is_(None), ScheduledTest.due_date <= today,
                                    ScheduledTest.order_id.in_(active))
        .values(emitted_at=now)
        .returning(ScheduledTest.order_id, ScheduledTest.person_key, ScheduledTest.region_code,
                   ScheduledTest.due_date, ScheduledTest.stage_index))).all()
    outbox.add(session, *(_envelope(QuarantineTestDue(order_id=uuid.UUID(r.order_id), person_key=r.person_key,
                                                      region_code=r.region_code, due_date=r.due_date,
                                                      stage_index=r.stage_index), r.person_key) for r in due))
    return len(due)


async def _urgent_test(session: AsyncSession, order: Order, reason: str, now: datetime) -> bool:
    """A test due now (fever, symptoms, missed check-in); one per order, reason and day."""
    today = local_date(now)
    exists = await session.scalar(select(ScheduledTest.id).where(
        ScheduledTest.order_id == order.id, ScheduledTest.due_date == today, ScheduledTest.reason == reason))
    if exists is not None:
        return False
    session.add(ScheduledTest(order_id=order.id, person_key=order.person_key, region_code=order.region_code,
                              due_date=today, stage_index=order.current_stage or 0, reason=reason, emitted_at=now))
    outbox.add(session, _envelope(QuarantineTestDue(order_id=uuid.UUID(order.id), person_key=order.person_key,
                                                    region_code=order.region_code, due_date=today,
                                                    stage_index=order.current_stage or 0), order.person_key))
    return True


async def _alert(session: AsyncSession, *, person_key: str, region_code: str, kind: str, on: date,
                 order_id: str | None, site_id: str | None, detail: str) -> bool:
    exists = await session.scalar(select(Alert.id).where(Alert.person_key == person_key, Alert.kind == kind,
                                                         Alert.on_date == on, Alert.order_id == order_id
                                                         if order_id else Alert.order_id.is_(None)))
    if exists is not None:
        return False
    session.add(Alert(person_key=person_key, region_code=region_code, kind=kind, on_date=on, order_id=order_id,
                      site_id=site_id, detail=detail))
    return True


async def _missed_checkins(session: AsyncSession, now: datetime, per_day: int) -> int:
    today = local_date(now)
    yesterday = today - DAY
    orders = (await session.scalars(select(Order).where(Order.status == ACTIVE))).all()
    counts = dict((await session.execute(
        select(Checkin.order_id, func.count()).where(Checkin.local_date == yesterday)
        .group_by(Checkin.order_id))).all())
    missed = 0
    for order in orders:
        if date.fromisoformat(order.facts["order_date"]) >= yesterday:
            continue  # opened yesterday or later: a partial day is not a missed one
        stages = _stages(order)
        index = stage_index_on(stages, yesterday)
        if index is None or not stages[index].covers(yesterday):
            continue
        if stages[index].kind not in checkin_rules.CHECKIN_KINDS:
            continue
        count = counts.get(order.id, 0)
        if not checkin_rules.missed(count, per_day):
            continue
        if await _alert(session, person_key=order.person_key, region_code=order.region_code,
                        kind="missed_checkin", on=yesterday, order_id=order.id, site_id=order.site_id,
                        detail=f"{yesterday.isoformat()} 健康打卡 {count}/{per_day} 次"):
            missed += 1
            await _urgent_test(session, order, "missed_checkin", now)
    return missed


# --- check-ins -----------------------------------------------------------------


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
        await _alert(session, person_key=order.person_key, region_code=order.region_code, kind=kind,
                     on=local_date(at), order_id=order.id, site_id=order.site_id, detail=detail)
        test_due = await _urgent_test(session, order, kind, now) or test_due
    await session.flush()
    return checkin, kinds, test_due


# --- positives, negatives, cases --------------------------------------------------


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
        old = _stages(order)
        cut = cut_at(old, today)
        order.stages = [stage_json(s) for s in cut] or order.stages
        order.status, order.ended_at, order.updated_at, order.awaiting_site = "hospitalized", now, now, False
        order.release_date = today + DAY
        session.add(OrderChange(order_id=order.id, kind="stage_ended_positive", at=now,
                                detail={"barcode": barcode, "on": today.isoformat()}))
        await session.execute(delete(ScheduledTest).where(ScheduledTest.order_id == order.id,
                                                          ScheduledTest.emitted_at.is_(None)))
        outbox.add(session, _envelope(QuarantineReleased(order_id=uuid.UUID(order.id), person_key=person_key,
                                                         region_code=order.region_code, released_at=now,
                                                         outcome="transferred_to_hospital"), person_key))
    if orders:
        await _free(session, now, order_ids=[o.id for o in orders], low_share=low_share)
    case = Case(person_key=person_key, origin_region_code=origin, status="awaiting_bed", barcode=barcode,
                positive_at=resulted_at, order_id=orders[0].id if orders else None)
    session.add(case)
    await session.flush()
    await _admit(session, case, now, low_share)
    return case


async def _admit(session: AsyncSession, case: Case, now: datetime, low_share: float) -> bool:
    # no order id on a treatment bed: releasing an order must never free a hospital bed
    row = {"person_key": case.person_key, "region_code": case.origin_region_code, "id": None}
    placements = await _place(session, [(row, POSITIVE_KINDS)], now, purpose="treatment", low_share=low_share)
    if not placements:
        await _alert(session, person_key=case.person_key, region_code=case.origin_region_code, kind="no_bed",
                     on=local_date(now), order_id=case.order_id, site_id=None,
                     detail="阳性人员暂无定点医院或方舱床位")
        return False
    await session.execute(insert(Placement.__table__), placements)
    site = await session.get(Site, row["site_id"])
    case.status, case.site_id, case.site_kind = "admitted", site.id, site.kind
    case.treating_region_code, case.admitted_at = site.region_code, now
    outbox.add(session, _envelope(QuarantineAdmitted(
        person_key=case.person_key, region_code=site.region_code, origin_region_code=case.origin_region_code,
        order_id=uuid.UUID(case.order_id) if case.order_id else None, site_id=site.id, site_kind=site.kind,
        admitted_at=now), case.person_key))
    return True


async def _admit_waiting(session: AsyncSession, now: datetime, low_share: float) -> int:
    waiting = (await session.scalars(select(Case).where(Case.status == "awaiting_bed")
                                     .order_by(Case.positive_at))).all()
    admitted = 0
    for case in waiting:
        admitted += await _admit(session, case, now, low_share)
    return admitted


async def record_negative(session: AsyncSession, *, member_keys: Sequence[str], barcode: str,
                          resulted_at: datetime) -> int:
    """Record a negative for members who have an order here (others are not ours to keep)."""
    orders = dict((await session.execute(select(Order.person_key, Order.id).where(
        Order.person_key.in_(list(member_keys)), Order.status == ACTIVE))).all())
    if not orders:
        return 0
    known = set((await session.scalars(select(TestResult.person_key).where(
        TestResult.barcode == barcode, TestResult.person_key.in_(list(orders))))).all())
    rows = [{"person_key": k, "order_id": oid, "barcode": barcode, "result": "negative",
             "resulted_at": resulted_at} for k, oid in orders.items() if k not in known]
    if rows:
        await session.execute(insert(TestResult), rows)
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
    outbox.add(session, _envelope(CaseClassified(
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
    await _free(session, now, person_key=person_key, purpose="treatment", low_share=low_share)
    case.status = "discharged"
    await session.flush()
    return case


# --- sites and transfers ---------------------------------------------------------


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


async def create_transfer(session: AsyncSession, *, principal: Principal, now: datetime,
                          **fields: Any) -> Transfer:
    transfer = Transfer(id=str(uuid.uuid4()), status="requested", requested_at=now, requested_by=principal.sub,
                        **fields)
    session.add(transfer)
    await session.flush()
    return transfer


async def advance_transfer(session: AsyncSession, transfer: Transfer, target: str, at: datetime) -> Transfer:
    if not can_advance(transfer.status, target):
        raise Conflict(f"转运单状态 {transfer.status} 不能变为 {target}；允许：{allowed_next(transfer.status) or '无'}")
    if target == "dispatched" and not (transfer.vehicle and transfer.escort):
        raise Unprocessable([{"loc": ["body", "vehicle"], "msg": "派车前须登记车辆和随车人员"}])
    transfer.status = target
    if target == "dispatched":
        transfer.dispatched_at = at
    elif target == "arrived":
        transfer.arrived_at = at
    await session.flush()
    return transfer
