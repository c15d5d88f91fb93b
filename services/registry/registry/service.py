"""Use cases of the registry: the only place that writes its tables and its outbox.

Each function runs inside the caller's session (one per request or per consumed
batch) and never commits: the request or the consumer commits once, so the
state change and its events are one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from fastapi import HTTPException, Request, status
from sqlalchemy import and_, func, insert, literal, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.audit import may_see_pii, record_pii_read
from fangkong_common.auth import Principal, Role
from fangkong_common.errors import Conflict, Invalid, NotFound
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import (CheckpointFever, ContactIdentified, GatheringFiled, PersonReturned,
                                            PersonRiskFlagged, ReturneeCategory, RiskLevel,
                                            VaccinationRecorded)
from fangkong_common.identity import normalise_id_number, person_key
from fangkong_common.pii import mask_id_number, mask_phone
from registry import schemas
from registry.config import Settings
from registry.domain import rules
from registry.domain.idcard import IdNumberError, parse_resident_id
from registry.models import (Case, Checkpoint, CheckpointPass, ContactLink, Gathering, Person, PersonChange,
                             PossibleDuplicate, RiskArea, RiskFlag, TravelRecord, TravelStay, Vaccination,
                             VaccinationTarget)

SOURCE = "registry"
TRACERS_ACROSS_REGIONS = frozenset({Role.admin, Role.commander, Role.medical, Role.integration})
PII_FIELDS = ("id_number", "phone", "address")


def _now() -> datetime:
    return datetime.now(UTC)


def _insert(session: AsyncSession, table):
    """INSERT … ON CONFLICT for the dialect in use (PostgreSQL or SQLite)."""
    return (postgresql if session.get_bind().dialect.name == "postgresql" else sqlite).insert(table)


def _emit(session: AsyncSession, payload, key: str) -> None:
    outbox.add(session, Envelope.wrap(payload, source=SOURCE, key=key))


# --- scope -----------------------------------------------------------------


def person_scope(principal: Principal):
    """Rows of Person the caller may see: their regions, and for a grid worker their grids."""
    clause = principal.scope_clause(Person.region_code)
    if principal.role is Role.grid_worker and principal.grids:
        clause = and_(clause, Person.grid.in_(principal.grids))
    return clause


def require_person_scope(principal: Principal, region_code: str, grid: str | None) -> None:
    if not principal.can_see(region_code):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {region_code} is outside your scope")
    if principal.role is Role.grid_worker and principal.grids and grid not in principal.grids:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"grid {grid!r} is not one of your grids")


# --- people ----------------------------------------------------------------


@dataclass
class Registry:
    settings: Settings

    def key_of(self, id_type: str, id_number: str) -> str:
        return person_key(id_type, id_number, self.settings.person_key_secret.get_secret_value())

    # People ----------------------------------------------------------------

    def check_identity(self, data: schemas.PersonIn, loc: tuple = ("body",)) -> tuple[str, date | None, str | None]:
        """Normalised number, birth date and sex; 422 naming the part of a resident ID that is wrong."""
        number = normalise_id_number(data.id_number)
        if data.id_type != "resident_id":
            return number, data.birth_date, None
        try:
            parsed = parse_resident_id(number)
        except IdNumberError as exc:
            raise Invalid((*loc, "id_number"), str(exc), type=f"id_number.{exc.part}") from None
        if data.birth_date is not None and data.birth_date != parsed.birth_date:
            raise Invalid((*loc, "birth_date"),
                          f"出生日期与身份证号不符 (birth date {data.birth_date} differs from the ID number's "
                          f"{parsed.birth_date})")
        return number, parsed.birth_date, parsed.sex

    async def register(self, session: AsyncSession, principal: Principal, data: schemas.PersonIn, *,
                       via: str = "api", loc: tuple = ("body",), any_region: bool = False) -> tuple[Person, bool]:
        """``any_region``: contact tracing across regions (协查) — the person may live anywhere;
        the caller then gets ids and degrees back, never the person's data."""
        if not any_region:
            require_person_scope(principal, data.region_code, data.grid)
        number, birth_date, sex = self.check_identity(data, loc)
        key = self.key_of(data.id_type, number)
        existing = await session.get(Person, key)
        if existing is not None:
            if any_region:
                return existing, False
            try:
                require_person_scope(principal, existing.region_code, existing.grid)
            except HTTPException:
                # Say that the person exists (so nobody registers them twice), show nothing of them.
                raise Conflict("该人员已在其他辖区登记 (already registered in another region or grid; "
                               "ask its command center to transfer the record)") from None
            return existing, False
        person = Person(person_key=key, id_type=data.id_type, id_number=number, name=data.name, phone=data.phone,
                        region_code=data.region_code, grid=data.grid, address=data.address, birth_date=birth_date,
                        sex=sex, registered_via=via)
        session.add(person)
        await session.flush()
        await self._note_possible_duplicates(session, [(key, person.name, person.birth_date, person.phone)])
        return person, True

    async def register_many(self, session: AsyncSession, principal: Principal, people: Sequence[schemas.PersonIn],
                            *, via: str) -> list[tuple[str, str, str | None]]:
        """Register a batch (an import) with set-based statements: (key, region, grid) per input,
        existing people unchanged. The caller has checked identities and scope row by row."""
        checked = []
        for data in people:
            number, birth_date, sex = self.check_identity(data)
            checked.append((self.key_of(data.id_type, number), number, birth_date, sex, data))
        existing = {key: (region, grid) for key, region, grid in (await session.execute(
            select(Person.person_key, Person.region_code, Person.grid)
            .where(Person.person_key.in_({c[0] for c in checked})))).all()}
        new: dict[str, dict] = {}
        now = _now()
        for key, number, birth_date, sex, data in checked:
            if key not in existing and key not in new:
                new[key] = dict(person_key=key, id_type=data.id_type, id_number=number, name=data.name,
                                phone=data.phone, region_code=data.region_code, grid=data.grid, address=data.address,
                                birth_date=birth_date, sex=sex, registered_via=via, created_at=now, updated_at=now)
        if new:
            await session.execute(insert(Person), list(new.values()))
            await self._note_possible_duplicates(session, [(r["person_key"], r["name"], r["birth_date"], r["phone"])
                                                           for r in new.values()])
        return [(key, *(existing.get(key) or (new[key]["region_code"], new[key]["grid"]))) for key, *_ in checked]

    async def _note_possible_duplicates(self, session: AsyncSession,
                                        people: Sequence[tuple[str, str | None, date | None, str | None]]) -> None:
        """Same name, birth date and phone under another document: listed for review, never merged."""
        evidence = {(name, born, phone): key for key, name, born, phone in people if name and born and phone}
        if not evidence:
            return
        matches = (await session.execute(select(Person.person_key, Person.name, Person.birth_date, Person.phone).where(
            tuple_(Person.name, Person.birth_date, Person.phone).in_(list(evidence))))).all()
        pairs = {(evidence[(name, born, phone)], other) for other, name, born, phone in matches
                 if other != evidence[(name, born, phone)]}
        rows = [dict(person_key=a, other_person_key=b, evidence="name+birth_date+phone", status="open")
                for pair in pairs for a, b in (pair, pair[::-1])]
        if rows:
            await session.execute(_insert(session, PossibleDuplicate).values(rows)
                                  .on_conflict_do_nothing(index_elements=["person_key", "other_person_key"]))

    async def get_visible(self, session: AsyncSession, principal: Principal, key: str) -> Person:
        person = await session.scalar(select(Person).where(Person.person_key == key, person_scope(principal)))
        if person is None:
            # Not found and not yours look the same: a grid worker learns nothing of other grids.
            raise NotFound(f"person {key} not found")
        return person

    async def present(self, session: AsyncSession, principal: Principal, persons: Sequence[Person],
                      request: Request | None, *, detail: bool = False) -> list[schemas.PersonOut]:
        """Persons as the caller may see them; unmasked reads are audited in the same transaction."""
        unmasked = may_see_pii(principal)
        keys = [p.person_key for p in persons]
        flags = await self.risk_flags_of(session, keys) if keys else {}
        cases = set((await session.scalars(select(Case.person_key).where(Case.person_key.in_(keys)))).all()) \
            if keys else set()
        degrees = dict((await session.execute(
            select(ContactLink.person_key, func.min(ContactLink.degree)).where(ContactLink.person_key.in_(keys))
            .group_by(ContactLink.person_key))).all()) if keys else {}
        duplicates: dict[str, list[str]] = {}
        if detail and keys:
            for a, b in (await session.execute(select(PossibleDuplicate.person_key, PossibleDuplicate.other_person_key)
                                               .where(PossibleDuplicate.person_key.in_(keys),
                                                      PossibleDuplicate.status == "open"))).all():
                duplicates.setdefault(a, []).append(b)
        out = [
            schemas.PersonOut(
                id=p.person_key, id_type=p.id_type,
                id_number=p.id_number if unmasked else mask_id_number(p.id_number),
                name=p.name, phone=p.phone if unmasked else mask_phone(p.phone),
                region_code=p.region_code, grid=p.grid,
                address=p.address if unmasked else _mask_address(p.address),
                birth_date=p.birth_date if unmasked else None, sex=p.sex, category=p.category,
                registered_via=p.registered_via, masked=not unmasked, is_case=p.person_key in cases,
                contact_degree=degrees.get(p.person_key), risk_flags=flags.get(p.person_key, []),
                possible_duplicates=duplicates.get(p.person_key, []),
            )
            for p in persons
        ]
        if unmasked and keys:
            await record_pii_read(session, principal, keys, PII_FIELDS, request=request)
        return out

    async def list_persons(self, session: AsyncSession, principal: Principal, *, region_code: str | None,
                           grid: str | None, category: str | None, q: str | None, limit: int,
                           offset: int) -> tuple[list[Person], int]:
        conditions = [person_scope(principal)]
        if region_code:
            conditions.append(Person.region_code.startswith(rules.region_prefix_of(region_code)))
        if grid:
            conditions.append(Person.grid == grid)
        if category:
            conditions.append(Person.category == category)
        if q:
            q = q.strip()
            # An ID number is found through its key (the same lookup every service can make).
            by_key = [self.key_of(t, q) for t in ("resident_id", "passport")]
            conditions.append(or_(Person.person_key.in_(by_key), Person.person_key == q,
                                  Person.name.startswith(q, autoescape=True), Person.phone == q))
        where = and_(*conditions)
        total = await session.scalar(select(func.count()).select_from(Person).where(where))
        rows = (await session.scalars(select(Person).where(where).order_by(Person.created_at, Person.person_key)
                                      .limit(limit).offset(offset))).all()
        return list(rows), total or 0

    async def correct(self, session: AsyncSession, principal: Principal, key: str,
                      patch: schemas.PersonPatch) -> Person:
        person = await self.get_visible(session, principal, key)
        changes = {}
        for field, value in patch.model_dump(exclude_unset=True, exclude={"reason"}).items():
            old = getattr(person, field)
            if old != value:
                changes[field] = [_jsonable(old), _jsonable(value)]
                setattr(person, field, value)
        if "region_code" in changes or "grid" in changes:
            require_person_scope(principal, person.region_code, person.grid)  # not moved out of one's own reach
        if person.id_type == "resident_id" and "birth_date" in changes:
            raise Invalid(("body", "birth_date"), "居民身份证的出生日期由号码决定 (a resident ID fixes the birth date)")
        if changes:
            person.updated_at = _now()
            session.add(PersonChange(person_key=key, actor=principal.sub, role=principal.role.value,
                                     changes=changes, reason=patch.reason))
            await session.flush()
        return person

    # Travel and risk areas -------------------------------------------------

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
            natural_key=self.natural_key(key, data), created_at=_now())
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
        today = _now().date()
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
                                  stay_from=stay.date_from, stay_to=stay.date_to, flagged_at=_now()))
                envelopes.append(Envelope.wrap(self._flag_event(area, key, region_code, grid, plan.record["id"]),
                                               source=SOURCE, key=key))
        if records:
            await session.execute(insert(TravelRecord), records)
            if stays:
                await session.execute(insert(TravelStay), stays)
            if flags:
                await session.execute(insert(RiskFlag), flags)
            now = _now()
            await session.execute(update(Person), [{"person_key": k, "category": c, "updated_at": now}
                                                   for k, c in categories.items()])
            outbox.add(session, *envelopes)
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
        prefix = rules.region_prefix_of(area.region_code)
        # Equal-length digit strings sort the same in every collation: a BETWEEN on the index.
        lo, hi = prefix.ljust(6, "0"), prefix.ljust(6, "9")
        in_area = or_(TravelStay.region_code.between(lo, hi),
                      TravelStay.region_code.in_(rules.enclosing_codes(area.region_code)))
        window = TravelStay.date_to >= start
        if end is not None:
            window = and_(window, TravelStay.date_from <= end)
        matches = (select(TravelStay.person_key, func.min(TravelStay.travel_record_id),
                          func.min(TravelStay.date_from), func.max(TravelStay.date_to),
                          literal(area.id, RiskFlag.risk_area_id.type), literal(_now(), RiskFlag.flagged_at.type))
                   .where(in_area, window).group_by(TravelStay.person_key))
        await session.execute(_insert(session, RiskFlag).from_select(
            ["person_key", "travel_record_id", "stay_from", "stay_to", "risk_area_id", "flagged_at"], matches,
        ).on_conflict_do_nothing(index_elements=["person_key", "risk_area_id"]))
        # The area is new: every flag it has was written just now.
        flagged = (await session.execute(
            select(RiskFlag.person_key, RiskFlag.travel_record_id, Person.region_code, Person.grid)
            .join(Person, Person.person_key == RiskFlag.person_key)
            .where(RiskFlag.risk_area_id == area.id))).all()
        outbox.add(session, *(Envelope.wrap(self._flag_event(area, key, region, grid, record), source=SOURCE, key=key)
                              for key, record, region, grid in flagged))
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
            area.lifted_at = _now()
            today = _now().date()
            if area.effective_to is None or area.effective_to > today:
                area.effective_to = max(today, area.effective_from)
        return area

    # Checkpoints -----------------------------------------------------------

    async def add_checkpoint(self, session: AsyncSession, principal: Principal, data: schemas.CheckpointIn) -> Checkpoint:
        if not principal.can_see(data.region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {data.region_code} is outside your scope")
        checkpoint = Checkpoint(id=str(uuid.uuid4()), name=data.name, region_code=data.region_code, kind=data.kind)
        session.add(checkpoint)
        await session.flush()
        return checkpoint

    async def record_passes(self, session: AsyncSession, principal: Principal, checkpoint_id: str,
                            batch: schemas.PassesIn) -> schemas.PassesOut:
        checkpoint = await session.get(Checkpoint, checkpoint_id)
        if checkpoint is None or not principal.can_see(checkpoint.region_code):
            raise NotFound(f"checkpoint {checkpoint_id} not found")
        errors: list[dict] = []
        keyed: list[tuple[schemas.PassIn, str]] = []
        new_people: dict[str, dict] = {}
        now = _now()
        for index, item in enumerate(batch.passes):
            if item.person_id is not None:
                keyed.append((item, item.person_id))
                continue
            number = normalise_id_number(item.id_number or "")
            if item.id_type == "resident_id":
                try:
                    parsed = parse_resident_id(number)
                except IdNumberError as exc:
                    errors.append({"loc": ["body", "passes", index, "id_number"], "msg": str(exc),
                                   "type": f"id_number.{exc.part}"})
                    continue
                birth, sex = parsed.birth_date, parsed.sex
            else:
                birth, sex = None, None
            key = self.key_of(item.id_type, number)
            keyed.append((item, key))
            new_people.setdefault(key, dict(person_key=key, id_type=item.id_type, id_number=number, name=item.name,
                                            region_code=checkpoint.region_code, birth_date=birth, sex=sex,
                                            registered_via="checkpoint", created_at=now, updated_at=now))
        if errors:
            raise Invalid(errors[0]["loc"], errors[0]["msg"], type=errors[0]["type"], more=errors[1:])
        registered = 0
        if new_people:
            known = set((await session.scalars(select(Person.person_key)
                                               .where(Person.person_key.in_(list(new_people))))).all())
            fresh = [p for k, p in new_people.items() if k not in known]
            if fresh:  # an unknown person passing gets a minimal registration
                await session.execute(insert(Person), fresh)
            registered = len(fresh)
        accepted = fevers = 0
        rows = [{"checkpoint_id": checkpoint.id, "person_key": key, "temperature_c": item.temperature_c,
                 "passed_at": item.passed_at, "fever": rules.is_fever(item.temperature_c),
                 "client_pass_id": item.pass_id} for item, key in keyed]
        # One cached statement run as executemany ("insertmanyvalues" batches it), not a fresh
        # multi-row VALUES statement compiled for every batch.
        statement = (_insert(session, CheckpointPass).on_conflict_do_nothing(index_elements=["client_pass_id"])
                     .returning(CheckpointPass.person_key, CheckpointPass.temperature_c, CheckpointPass.passed_at,
                                CheckpointPass.fever))
        for start in range(0, len(rows), 1000):
            stored = (await session.execute(statement, rows[start:start + 1000])).all()
            accepted += len(stored)
            for key, temperature, passed_at, fever in stored:
                if fever:
                    fevers += 1
                    _emit(session, CheckpointFever(checkpoint_id=checkpoint.id, region_code=checkpoint.region_code,
                                                   person_key=key, temperature_c=temperature,
                                                   observed_at=_aware(passed_at)), key or checkpoint.id)
        return schemas.PassesOut(accepted=accepted, duplicates=len(rows) - accepted, fevers=fevers,
                                 registered=registered)

    # Contacts --------------------------------------------------------------

    async def add_contact(self, session: AsyncSession, principal: Principal,
                          data: schemas.ContactIn) -> tuple[ContactLink, bool]:
        # A case in one city has contacts living in others: tracers (not grid workers) record them
        # wherever they live, and the contact's own city receives contact.identified for its region.
        cross_region = principal.role in TRACERS_ACROSS_REGIONS
        if data.person is not None:
            person, _ = await self.register(session, principal, data.person, via="contact", loc=("body", "person"),
                                            any_region=cross_region)
        elif cross_region:
            person = await session.get(Person, data.person_id or "")
            if person is None:
                raise NotFound(f"person {data.person_id} not found")
        else:
            person = await self.get_visible(session, principal, data.person_id or "")
        source = data.source_person_id
        if source == person.person_key:
            raise Invalid(("body", "source_person_id"), "a person cannot be their own contact")
        source_is_case = await session.get(Case, source) is not None
        source_link = await session.scalar(select(ContactLink).where(ContactLink.person_key == source)
                                           .order_by(ContactLink.degree, ContactLink.created_at).limit(1))
        degree = rules.contact_degree(source_link.degree if source_link else None, source_is_case)
        if degree is None:
            raise Invalid(("body", "source_person_id"),
                          "来源既不是病例也不是已登记的密接 (the source is neither a case nor a known contact)")
        if degree > self.settings.max_contact_degree:
            raise Invalid(("body", "source_person_id"),
                          f"现行方案只追踪到第{self.settings.max_contact_degree}代 (the policy traces contacts to "
                          f"degree {self.settings.max_contact_degree}; this would be degree {degree})")
        existing = await session.scalar(select(ContactLink).where(ContactLink.person_key == person.person_key,
                                                                  ContactLink.source_person_key == source))
        if existing is not None:
            return existing, False
        previous = await session.scalar(select(func.min(ContactLink.degree))
                                        .where(ContactLink.person_key == person.person_key))
        case_key = source if source_is_case else source_link.case_person_key  # type: ignore[union-attr]
        link = ContactLink(id=str(uuid.uuid4()), person_key=person.person_key, source_person_key=source,
                           case_person_key=case_key, degree=degree, exposure_at=data.exposure_at,
                           setting=data.setting, reported_by=data.reported_by, note=data.note)
        session.add(link)
        await session.flush()
        if previous is None or degree < previous:  # a closer exposure changes what the person must do
            _emit(session, ContactIdentified(
                person_key=person.person_key, region_code=person.region_code, grid=person.grid, degree=degree,
                source_person_key=source, case_person_key=case_key, last_exposure_at=data.exposure_at,
                setting=data.setting), person.person_key)
        return link, True

    async def contact_graph(self, session: AsyncSession, principal: Principal, key: str, *,
                            max_depth: int = 5, max_nodes: int = 5000) -> schemas.ContactGraph:
        await self.get_visible(session, principal, key)
        exposed_to = (await session.scalars(select(ContactLink).where(ContactLink.person_key == key)
                                            .order_by(ContactLink.degree))).all()
        names: dict[str, str | None] = {}
        children: dict[str, list[ContactLink]] = {}
        frontier, seen, depth = [key], {key}, 0
        while frontier and depth < max_depth and len(seen) < max_nodes:
            links = (await session.scalars(select(ContactLink).where(ContactLink.source_person_key.in_(frontier))
                                           .order_by(ContactLink.exposure_at))).all()
            frontier = []
            for link in links:
                if link.person_key in seen:
                    continue
                seen.add(link.person_key)
                children.setdefault(link.source_person_key, []).append(link)
                frontier.append(link.person_key)
            depth += 1
        visible = select(Person.person_key, Person.name).where(Person.person_key.in_(list(seen)),
                                                               person_scope(principal))
        names.update((await session.execute(visible)).all())

        def node(link: ContactLink) -> schemas.ContactNode:
            return schemas.ContactNode(person_id=link.person_key, name=names.get(link.person_key),
                                       degree=link.degree, exposure_at=link.exposure_at, setting=link.setting,
                                       contacts=[node(c) for c in children.get(link.person_key, [])])

        return schemas.ContactGraph(
            person_id=key, is_case=await session.get(Case, key) is not None,
            exposed_to=[contact_out(link, False) for link in exposed_to],
            contacts=[node(link) for link in children.get(key, [])])

    # Vaccinations ------------------------------------------------------------

    async def add_vaccination(self, session: AsyncSession, principal: Principal,
                              data: schemas.VaccinationIn) -> tuple[Vaccination, bool]:
        person = await self.get_visible(session, principal, data.person_id)
        if person.birth_date is None:
            raise Invalid(("body", "person_id"), "该人员无出生日期，无法确定年龄组 (no birth date on record: age group unknown)")
        if data.vaccinated_on < person.birth_date:
            raise Invalid(("body", "vaccinated_on"), "接种日期早于出生日期 (vaccinated before birth)")
        existing = await session.scalar(select(Vaccination).where(Vaccination.person_key == person.person_key,
                                                                  Vaccination.dose_number == data.dose_number))
        if existing is not None:
            return existing, False
        group = rules.vaccination_age_group(person.birth_date, data.vaccinated_on)
        dose = Vaccination(person_key=person.person_key, region_code=person.region_code, age_group=group,
                           vaccine=data.vaccine, dose_number=data.dose_number, vaccinated_on=data.vaccinated_on)
        session.add(dose)
        await session.flush()
        _emit(session, VaccinationRecorded(person_key=person.person_key, region_code=person.region_code,
                                           age_group=group, vaccine=data.vaccine, dose_number=data.dose_number,
                                           vaccinated_on=data.vaccinated_on), person.person_key)
        return dose, True

    async def set_target(self, session: AsyncSession, principal: Principal,
                         data: schemas.VaccinationTargetIn) -> VaccinationTarget:
        if not principal.can_see(data.region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {data.region_code} is outside your scope")
        target = await session.get(VaccinationTarget, (data.region_code, data.age_group))
        if target is None:
            target = VaccinationTarget(region_code=data.region_code, age_group=data.age_group)
            session.add(target)
        target.target_people, target.deadline = data.target_people, data.deadline
        await session.flush()
        return target

    async def vaccination_progress(self, session: AsyncSession, principal: Principal,
                                   region_code: str, today: date) -> schemas.VaccinationProgress:
        if not principal.can_see(region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {region_code} is outside your scope")
        prefix = rules.region_prefix_of(region_code)
        lo, hi = prefix.ljust(6, "0"), prefix.ljust(6, "9")
        doses = (await session.execute(
            select(Vaccination.age_group, func.count(func.distinct(Vaccination.person_key)).filter(
                Vaccination.dose_number == 1), func.count(func.distinct(Vaccination.person_key)).filter(
                Vaccination.dose_number >= 2))
            .where(Vaccination.region_code.between(lo, hi)).group_by(Vaccination.age_group))).all()
        counts = {group: (first, full) for group, first, full in doses}
        targets = (await session.execute(
            select(VaccinationTarget.age_group, VaccinationTarget.region_code, VaccinationTarget.target_people,
                   VaccinationTarget.deadline).where(VaccinationTarget.region_code.between(lo, hi)))).all()
        groups = []
        for group in ("12-14", "15-17", "18+"):
            own = [t for t in targets if t.age_group == group and t.region_code == region_code]
            chosen = own or [t for t in targets if t.age_group == group]  # else the sum of the areas below
            target = sum(t.target_people for t in chosen) if chosen else None
            deadline = min(t.deadline for t in chosen) if chosen else None
            first, full = counts.get(group, (0, 0))
            ratio = round(full / target, 4) if target else None
            days_left = (deadline - today).days if deadline else None
            on_track = None
            if target:
                on_track = True if full >= target else (False if days_left is not None and days_left < 0 else None)
            groups.append(schemas.AgeGroupProgress(age_group=group, target_people=target, deadline=deadline,
                                                   first_dose=first, full_course=full, ratio=ratio,
                                                   days_left=days_left, on_track=on_track))
        return schemas.VaccinationProgress(region_code=region_code, as_of=today, groups=groups)

    # Gatherings --------------------------------------------------------------

    async def file_gathering(self, session: AsyncSession, principal: Principal,
                             data: schemas.GatheringIn) -> Gathering:
        if not principal.can_see(data.region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {data.region_code} is outside your scope")
        if data.expected_attendees > rules.GATHERING_LIMIT:
            raise Invalid(("body", "expected_attendees"), f"{data.expected_attendees}人超过上限。{rules.GATHERING_RULE}",
                          type="gathering.too_large")
        gathering = Gathering(id=str(uuid.uuid4()), kind=data.kind, organiser=data.organiser,
                              organiser_phone=data.organiser_phone, place=data.place, region_code=data.region_code,
                              held_on=data.held_on, expected_attendees=data.expected_attendees, status="filed",
                              filed_by=principal.sub)
        session.add(gathering)
        await session.flush()
        self._emit_gathering(session, gathering)
        return gathering

    async def decide_gathering(self, session: AsyncSession, principal: Principal, gathering_id: str,
                               decision: schemas.GatheringDecision) -> Gathering:
        gathering = await session.get(Gathering, gathering_id)
        if gathering is None or not principal.can_see(gathering.region_code):
            raise NotFound(f"gathering {gathering_id} not found")
        if gathering.status != "filed":
            raise HTTPException(status.HTTP_409_CONFLICT, f"already {gathering.status}")
        gathering.status = "approved" if decision.approve else "refused"
        gathering.decided_by, gathering.decision_note = principal.sub, decision.note
        self._emit_gathering(session, gathering)
        return gathering

    @staticmethod
    def _emit_gathering(session: AsyncSession, g: Gathering) -> None:
        _emit(session, GatheringFiled(gathering_id=g.id, region_code=g.region_code, kind=g.kind,
                                      expected_attendees=g.expected_attendees, held_on=g.held_on,
                                      status=g.status), g.id)


# --- cases (from other services' events) -------------------------------------


async def case_positive(session: AsyncSession, key: str, positive_at: datetime, barcode: str | None) -> None:
    await session.execute(_insert(session, Case).values(person_key=key, positive_at=positive_at, barcode=barcode)
                          .on_conflict_do_nothing(index_elements=["person_key"]))


async def case_classified(session: AsyncSession, key: str, classification: str, at: datetime) -> None:
    await case_positive(session, key, at, None)
    await session.execute(update(Case).where(Case.person_key == key)
                          .values(classification=classification, classified_at=at))


def _in_force(area: RiskArea, on: date) -> bool:
    return area.lifted_at is None and area.effective_from <= on and (area.effective_to is None or area.effective_to >= on)


@dataclass(frozen=True)
class TravelPlan:
    record: dict
    stays: list[dict]
    category: ReturneeCategory
    event: PersonReturned
    flags: list[tuple[RiskArea, rules.Stay]]


def contact_out(link: ContactLink, created: bool) -> schemas.ContactOut:
    return schemas.ContactOut(id=link.id, person_id=link.person_key, source_person_id=link.source_person_key,
                              case_person_id=link.case_person_key, degree=link.degree, exposure_at=link.exposure_at,
                              setting=link.setting, created=created)


def _mask_address(address: str | None) -> str | None:
    if not address:
        return address
    return address[:6] + "****"


def _jsonable(value):
    return value.isoformat() if isinstance(value, date) else value


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
