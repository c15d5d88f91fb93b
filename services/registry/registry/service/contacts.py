"""Close contacts and their degrees (密接/次密接), the contact graph, and cases learned from events."""

from __future__ import annotations

import uuid
from datetime import datetime

from fastapi import HTTPException, status
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal
from fangkong_common.db import dialect_insert
from fangkong_common.errors import Invalid, NotFound, ServiceError
from fangkong_common.events.schemas import ContactIdentified

from registry import schemas
from registry.domain import rules
from registry.models import Case, ContactLink, Person
from registry.service.base import TRACERS_ACROSS_REGIONS, RegistryBase, emit, person_scope


class Contacts(RegistryBase):
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
        case_key = source if source_is_case else source_link.case_person_key  # type: ignore[union-attr]
        if cross_region and not principal.sees_everything:
            # Tracing crosses regions outward from one's own chain: its case or the source must be
            # in the caller's scope, or a district could write contacts (and orders) into another's chain.
            ours = await session.scalar(select(func.count()).select_from(Person).where(
                Person.person_key.in_({source, case_key}), principal.scope_clause(Person.region_code)))
            if not ours:
                raise HTTPException(status.HTTP_403_FORBIDDEN,
                                    "来源及其病例都不在您的辖区 (neither the source nor its case is in your scope)")
        existing = await session.scalar(select(ContactLink).where(ContactLink.person_key == person.person_key,
                                                                  ContactLink.source_person_key == source))
        if existing is not None:
            return existing, False
        previous = await session.scalar(select(func.min(ContactLink.degree))
                                        .where(ContactLink.person_key == person.person_key))
        link = ContactLink(id=str(uuid.uuid4()), person_key=person.person_key, source_person_key=source,
                           case_person_key=case_key, degree=degree, exposure_at=data.exposure_at,
                           setting=data.setting, reported_by=data.reported_by, note=data.note)
        session.add(link)
        await session.flush()
        if previous is None or degree < previous:  # a closer exposure changes what the person must do
            emit(session, ContactIdentified(
                person_key=person.person_key, region_code=person.region_code, grid=person.grid, degree=degree,
                source_person_key=source, case_person_key=case_key, last_exposure_at=data.exposure_at,
                setting=data.setting), person.person_key)
        return link, True

    async def add_contacts(self, session: AsyncSession, principal: Principal,
                           items: list[schemas.ContactIn]) -> list[tuple[ContactLink, bool]]:
        """A survey team's batch in one transaction: item by item (a secondary contact may name a
        contact of this batch), and the first item refused refuses the batch, saying which item."""
        done: list[tuple[ContactLink, bool]] = []
        for index, item in enumerate(items):
            try:
                done.append(await self.add_contact(session, principal, item))
            except ServiceError as exc:
                raise batch_item_error(exc, ("body", "contacts", index)) from exc
            except HTTPException as exc:
                raise HTTPException(exc.status_code, f"contacts[{index}]: {exc.detail}", headers=exc.headers) from exc
        return done

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



def batch_item_error(exc: ServiceError, where: tuple[str | int, ...]) -> ServiceError:
    """An item's error as the batch's: its field paths under ``where`` (body.contacts.3.person.id_number)."""
    if isinstance(exc.detail, list):
        detail = [{**e, "loc": [*where, *[part for part in e.get("loc", []) if part != "body"]]} for e in exc.detail]
    else:
        detail = [{"loc": list(where), "msg": str(exc.detail), "type": type(exc).__name__.lower()}]
    return ServiceError(detail, status_code=exc.status_code)


def contact_out(link: ContactLink, created: bool) -> schemas.ContactOut:
    return schemas.ContactOut(id=link.id, person_id=link.person_key, source_person_id=link.source_person_key,
                              case_person_id=link.case_person_key, degree=link.degree, exposure_at=link.exposure_at,
                              setting=link.setting, created=created)


async def case_positive(session: AsyncSession, key: str, positive_at: datetime, barcode: str | None) -> None:
    await session.execute(dialect_insert(session, Case).values(person_key=key, positive_at=positive_at, barcode=barcode)
                          .on_conflict_do_nothing(index_elements=["person_key"]))


async def case_classified(session: AsyncSession, key: str, classification: str, at: datetime) -> None:
    await case_positive(session, key, at, None)
    await session.execute(update(Case).where(Case.person_key == key)
                          .values(classification=classification, classified_at=at))


