"""People: registration (one or a batch), visibility, presentation with masking and audit, corrections."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from fastapi import HTTPException, Request
from sqlalchemy import and_, func, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.audit import may_see_pii, record_pii_read
from fangkong_common.auth import Principal, within_region
from fangkong_common.db import dialect_insert
from fangkong_common.errors import Conflict, Invalid, NotFound
from fangkong_common.identity import normalise_id_number
from fangkong_common.pii import mask_id_number, mask_phone

from registry import schemas
from registry.domain.idcard import IdNumberError, parse_resident_id
from registry.models import Case, ContactLink, Person, PersonChange, PossibleDuplicate
from registry.service.retention import refill
from registry.service.base import (
    PII_FIELDS,
    RegistryBase,
    jsonable,
    mask_address,
    person_scope,
    require_person_scope,
    utcnow,
)


class People(RegistryBase):
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
            if existing.pii_erased_at is not None:  # closed and erased by retention; back under management
                refill(existing, id_number=number, name=data.name, phone=data.phone, address=data.address,
                       birth_date=birth_date, sex=sex)
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
        found = (await session.execute(
            select(Person.person_key, Person.region_code, Person.grid, Person.pii_erased_at)
            .where(Person.person_key.in_({c[0] for c in checked})))).all()
        existing = {key: (region, grid) for key, region, grid, _ in found}
        erased = {key for key, _, _, erased_at in found if erased_at is not None}
        new: dict[str, dict] = {}
        refilled: dict[str, dict] = {}
        now = utcnow()
        for key, number, birth_date, sex, data in checked:
            if key in erased and key not in refilled:  # closed and erased by retention; back under management
                refilled[key] = dict(person_key=key, id_number=number, name=data.name, phone=data.phone,
                                     address=data.address, birth_date=birth_date, sex=sex, pii_erased_at=None,
                                     updated_at=now)
            if key not in existing and key not in new:
                new[key] = dict(person_key=key, id_type=data.id_type, id_number=number, name=data.name,
                                phone=data.phone, region_code=data.region_code, grid=data.grid, address=data.address,
                                birth_date=birth_date, sex=sex, registered_via=via, created_at=now, updated_at=now)
        if refilled:
            await session.execute(update(Person), list(refilled.values()))
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
            await session.execute(dialect_insert(session, PossibleDuplicate).values(rows)
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
                address=p.address if unmasked else mask_address(p.address),
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
            conditions.append(within_region(Person.region_code, region_code))
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
                changes[field] = [jsonable(old), jsonable(value)]
                setattr(person, field, value)
        if "region_code" in changes or "grid" in changes:
            require_person_scope(principal, person.region_code, person.grid)  # not moved out of one's own reach
        if person.id_type == "resident_id" and "birth_date" in changes:
            raise Invalid(("body", "birth_date"), "居民身份证的出生日期由号码决定 (a resident ID fixes the birth date)")
        if changes:
            person.updated_at = utcnow()
            session.add(PersonChange(person_key=key, actor=principal.sub, role=principal.role.value,
                                     changes=changes, reason=patch.reason))
            await session.flush()
        return person


