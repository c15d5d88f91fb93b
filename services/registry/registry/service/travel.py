"""Travel history and risk areas: classification, person.returned, set-based risk flagging."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fastapi import HTTPException, status
from sqlalchemy import and_, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.auth import Principal, within_region
from fangkong_common.db import dialect_insert
from fangkong_common.errors import NotFound
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import PersonReturned, PersonRiskFlagged, ReturneeCategory, RiskLevel

from registry import schemas
from registry.domain import rules
from registry.models import Person, RiskArea, RiskFlag, TravelRecord, TravelStay
from registry.service.base import SOURCE, RegistryBase, utcnow


class Travel(RegistryBase):
    async def risk_flags_of(self, session: AsyncSession, keys: Sequence[str]) -> dict[str, list[schemas.RiskFlagOut]]:
        rows = (await session.execute(select(RiskFlag, RiskArea).join(RiskArea, RiskArea.id == RiskFlag.risk_area_id)
                                      .where(RiskFlag.person_key.in_(keys)).order_by(RiskFlag.flagged_at))).all()
        flags: dict[str, list[schemas.RiskFlagOut]] = {}
        for flag, area in rows:
            start, end = rules.risk_window(area.effective_from, area.effective_to, area.lookback_days)
            flags.setdefault(flag.person_key, []).append(schemas.RiskFlagOut(
                risk_area_id=area.id, region_code=area.region_code, name=area.name, level=area.level,
                window_start=start, window_end=end, stay_from=flag.stay_from, stay_to=flag.stay_to,
                travel_record_id=flag.travel_record_id))
        return flags

    @staticmethod
    def natural_key(key: str, data: schemas.TravelIn) -> str:
        return ":".join([key, data.arrival_date.isoformat(), data.origin_kind,
                         data.origin_country or data.origin_region_code or "",
                         (data.transport.number or "") if data.transport else ""])

    async def risk_areas_in_force(self, session: AsyncSession) -> list[RiskArea]:
        return list((await session.scalars(select(RiskArea).where(RiskArea.lifted_at.is_(None)))).all())

    def plan_travel(self, key: str, region_code: str, grid: str | None, data: schemas.TravelIn,
                    areas: Sequence[RiskArea], today: date) -> TravelPlan:
        """The record, its stays, the category, the event and the risk flags of one travel report."""
        stays = [rules.Stay(s.region_code, s.country, s.from_, s.to) for s in data.places]
        if not stays and data.origin_kind == "domestic" and data.origin_region_code:
            stays = [rules.Stay(data.origin_region_code, None, data.arrival_date, data.arrival_date)]
        if not stays and data.origin_kind == "international" and data.origin_country:
            stays = [rules.Stay(None, data.origin_country, data.arrival_date, data.arrival_date)]
        category = rules.classify_returnee(
            rules.TravelFacts(home_region_code=region_code, origin_kind=data.origin_kind,
                              origin_region_code=data.origin_region_code, port_of_entry=data.port_of_entry,
                              served_quarantine_days=data.served_quarantine_days, stays=tuple(stays)),
            risk_provinces={a.region_code[:2] for a in areas if _in_force(a, data.arrival_date)},
            border_provinces=set(self.settings.border_provinces))
        record_id = str(uuid.uuid4())
        record = dict(
            id=record_id, person_key=key, origin_kind=data.origin_kind, origin_country=data.origin_country,
            origin_region_code=data.origin_region_code, arrival_date=data.arrival_date,
            port_of_entry=data.port_of_entry, transport_kind=data.transport.kind if data.transport else None,
            transport_number=data.transport.number if data.transport else None,
            served_quarantine_days=data.served_quarantine_days,
            served_quarantine_place=data.served_quarantine_place, category=category.value,
            natural_key=self.natural_key(key, data), created_at=utcnow())
        stay_rows = [dict(travel_record_id=record_id, person_key=key, region_code=s.region_code, country=s.country,
                          date_from=s.date_from, date_to=s.date_to) for s in stays]
        event = PersonReturned(
            person_key=key, region_code=region_code, grid=grid, category=category,
            origin_kind=data.origin_kind, origin_country=data.origin_country,
            origin_region_code=data.origin_region_code, arrival_date=data.arrival_date,
            port_of_entry=data.port_of_entry, served_quarantine_days=data.served_quarantine_days,
            served_quarantine_place=data.served_quarantine_place, travel_record_id=record_id)
        # A new record is matched against every area in force now (they were declared before it came).
        flags = []
        for area in areas:
            if not _in_force(area, today):
                continue
            start, end = rules.risk_window(area.effective_from, area.effective_to, area.lookback_days)
            stay = rules.stays_overlap(stays, area.region_code, start, end)
            if stay is not None:
                flags.append((area, stay))
        return TravelPlan(record, stay_rows, category, event, flags)

    async def add_travel(self, session: AsyncSession, principal: Principal, key: str,
                         data: schemas.TravelIn) -> tuple[TravelRecord, bool]:
        person = await self.get_visible(session, principal, key)
        [(record_id, created)] = await self.store_travel(session, [(person.person_key, person.region_code,
                                                                    person.grid, data)])
        return await session.get(TravelRecord, record_id), created

    async def store_travel(self, session: AsyncSession,
                           reports: Sequence[tuple[str, str, str | None, schemas.TravelIn]]) -> list[tuple[str, bool]]:
        """Store travel reports (person key, home region, grid, report) with a few set-based statements.

        A report already stored (same person, arrival, origin, transport) is not stored
        again and emits nothing. Returns (record id, created) per report.
        """
        natural_keys = [self.natural_key(key, data) for key, _, _, data in reports]
        known = dict((await session.execute(select(TravelRecord.natural_key, TravelRecord.id)
                                            .where(TravelRecord.natural_key.in_(natural_keys)))).all())
        areas = await self.risk_areas_in_force(session)
        flagged = set()
        if areas:
            flagged = set((await session.execute(select(RiskFlag.person_key, RiskFlag.risk_area_id).where(
                RiskFlag.person_key.in_({r[0] for r in reports})))).all())
        today = utcnow().date()
        records, stays, categories, flags, envelopes, results = [], [], {}, [], [], []
        for (key, region_code, grid, data), natural_key in zip(reports, natural_keys, strict=True):
            if natural_key in known:
                results.append((known[natural_key], False))
                continue
            plan = self.plan_travel(key, region_code, grid, data, areas, today)
            known[natural_key] = plan.record["id"]
            results.append((plan.record["id"], True))
            records.append(plan.record)
            stays.extend(plan.stays)
            categories[key] = plan.category.value
            envelopes.append(Envelope.wrap(plan.event, source=SOURCE, key=key))
            for area, stay in plan.flags:
                if (key, area.id) in flagged:
                    continue
                flagged.add((key, area.id))
                area.flagged_count += 1
                flags.append(dict(person_key=key, risk_area_id=area.id, travel_record_id=plan.record["id"],
                                  stay_from=stay.date_from, stay_to=stay.date_to, flagged_at=utcnow()))
                envelopes.append(Envelope.wrap(self._flag_event(area, key, region_code, grid, plan.record["id"]),
                                               source=SOURCE, key=key))
        if records:
            await session.execute(insert(TravelRecord), records)
            if stays:
                await session.execute(insert(TravelStay), stays)
            if flags:
                await session.execute(insert(RiskFlag), flags)
            now = utcnow()
            await session.execute(update(Person), [{"person_key": k, "category": c, "updated_at": now}
                                                   for k, c in categories.items()])
            # Written now, not buffered until commit: an import of 100,000 rows in batches of 500
            # held every event's JSON in memory to the end (288 MiB).
            await outbox.add_many(session, envelopes)
        return results

    @staticmethod
    def _flag_event(area: RiskArea, key: str, region_code: str, grid: str | None,
                    travel_record_id: str | None) -> PersonRiskFlagged:
        start, end = rules.risk_window(area.effective_from, area.effective_to, area.lookback_days)
        # The window in events is in absolute time: Asia/Shanghai calendar days, as UTC instants.
        shanghai = timedelta(hours=8)
        window_start = datetime.combine(start, datetime.min.time(), UTC) - shanghai
        window_end = (datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC) - shanghai
                      if end else datetime.combine(date.max - timedelta(days=1), datetime.min.time(), UTC))
        return PersonRiskFlagged(person_key=key, region_code=region_code, grid=grid, risk_area_id=area.id,
                                 risk_area_region_code=area.region_code, level=RiskLevel(area.level),
                                 window_start=window_start, window_end=window_end,
                                 travel_record_id=travel_record_id)

    async def declare_risk_area(self, session: AsyncSession, principal: Principal,
                                data: schemas.RiskAreaIn) -> RiskArea:
        """Record an area (any command center records the national list: its returnees are what
        matters) and flag everyone whose stays touch it, with one set-based statement."""
        area = RiskArea(id=str(uuid.uuid4()), region_code=data.region_code, name=data.name, level=data.level.value,
                        effective_from=data.effective_from, effective_to=data.effective_to,
                        lookback_days=data.lookback_days, declared_by=principal.sub, flagged_count=0)
        session.add(area)
        await session.flush()
        area.flagged_count = await self.match_area(session, area)
        return area

    async def match_area(self, session: AsyncSession, area: RiskArea) -> int:
        start, end = rules.risk_window(area.effective_from, area.effective_to, area.lookback_days)
        in_area = or_(within_region(TravelStay.region_code, area.region_code),
                      TravelStay.region_code.in_(rules.enclosing_codes(area.region_code)))
        window = TravelStay.date_to >= start
        if end is not None:
            window = and_(window, TravelStay.date_from <= end)
        matches = (select(TravelStay.person_key, func.min(TravelStay.travel_record_id),
                          func.min(TravelStay.date_from), func.max(TravelStay.date_to),
                          literal(area.id, RiskFlag.risk_area_id.type), literal(utcnow(), RiskFlag.flagged_at.type))
                   .where(in_area, window).group_by(TravelStay.person_key))
        await session.execute(dialect_insert(session, RiskFlag).from_select(
            ["person_key", "travel_record_id", "stay_from", "stay_to", "risk_area_id", "flagged_at"], matches,
        ).on_conflict_do_nothing(index_elements=["person_key", "risk_area_id"]))
        # The area is new: every flag it has was written just now.
        flagged = (await session.execute(
            select(RiskFlag.person_key, RiskFlag.travel_record_id, Person.region_code, Person.grid)
            .join(Person, Person.person_key == RiskFlag.person_key)
            .where(RiskFlag.risk_area_id == area.id))).all()
        # Thousands of events at once (a province-wide area): written in one COPY.
        await outbox.add_many(session, [Envelope.wrap(self._flag_event(area, key, region, grid, record), source=SOURCE,
                                                      key=key) for key, record, region, grid in flagged])
        return len(flagged)

    async def lift_risk_area(self, session: AsyncSession, principal: Principal, area_id: str) -> RiskArea:
        area = await session.get(RiskArea, area_id)
        if area is None:
            raise NotFound(f"risk area {area_id} not found")
        # Areas are national notices any command center records; lifting one is for
        # whoever recorded it or a commander of the area itself.
        if area.declared_by != principal.sub and not principal.can_see(area.region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only the declaring command center or the area's own may lift it")
        if area.lifted_at is None:
            area.lifted_at = utcnow()
            today = utcnow().date()
            if area.effective_to is None or area.effective_to > today:
                area.effective_to = max(today, area.effective_from)
        return area



def _in_force(area: RiskArea, on: date) -> bool:
    return area.lifted_at is None and area.effective_from <= on and (area.effective_to is None or area.effective_to >= on)


@dataclass(frozen=True)
class TravelPlan:
    record: dict
    stays: list[dict]
    category: ReturneeCategory
    event: PersonReturned
    flags: list[tuple[RiskArea, rules.Stay]]

