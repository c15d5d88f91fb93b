"""Retention in the registry: people no longer under management lose their personal data.

A person is closed when nothing has happened to them since the cutoff: no registration or
correction, arrival, exposure (either side), checkpoint pass, vaccination, positive or
classification, and no open question about them (a case not yet classified — the
backlog that must still reach the statistics — or a possible duplicate under review).
The longest closed loop is 21+7 days, so with a retention period of months nobody under a
quarantine order or health monitoring is closed. Their row stays (keys, region, grid,
category, sex: every count stays the same); ID number, name, phone, address and birth
date go, in the corrections history too. A filed gathering held before the cutoff loses
its organiser's name and phone.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import clock
from fangkong_common.audit import PiiAuditEntry
from fangkong_common.retention import ACTOR, ERASED

from registry.models import (Case, CheckpointPass, ContactLink, Gathering, Person, PersonChange, PossibleDuplicate,
                             TravelRecord, Vaccination)

ERASED_FIELDS = "id_number,name,phone,address,birth_date"
CHUNK = 1000


def closed_people(before: datetime):
    day = before.date()
    key = Person.person_key
    recent = [
        exists().where(TravelRecord.person_key == key, TravelRecord.arrival_date >= day),
        exists().where(or_(ContactLink.person_key == key, ContactLink.source_person_key == key),
                       ContactLink.exposure_at >= before),
        exists().where(CheckpointPass.person_key == key, CheckpointPass.passed_at >= before),
        exists().where(Vaccination.person_key == key, Vaccination.vaccinated_on >= day),
        exists().where(Case.person_key == key, or_(Case.classification.is_(None), Case.positive_at >= before,
                                                   Case.classified_at >= before)),
        exists().where(PossibleDuplicate.person_key == key, PossibleDuplicate.status == "open"),
    ]
    return select(key).where(Person.pii_erased_at.is_(None), Person.created_at < before,
                             Person.updated_at < before, *[~r for r in recent])


async def scrub(session: AsyncSession, before: datetime) -> dict[str, int]:
    now = clock.now()
    keys = list((await session.scalars(closed_people(before))).all())
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start:start + CHUNK]
        await session.execute(update(Person).where(Person.person_key.in_(chunk)).values(
            id_number=ERASED, name=None, phone=None, address=None, birth_date=None, pii_erased_at=now))
        # Corrections keep which fields changed and when, not the values.
        changes = (await session.execute(select(PersonChange.id, PersonChange.changes)
                                         .where(PersonChange.person_key.in_(chunk)))).all()
        if changes:
            await session.execute(update(PersonChange), [
                {"id": row_id, "changes": {field: [ERASED, ERASED] for field in (old or {})}}
                for row_id, old in changes])
        # One row per person, so a commander sees in GET /registry/audit whose data went and when.
        await session.execute(insert(PiiAuditEntry), [
            {"at": now, "actor": ACTOR, "role": "system", "action": "erase", "subject": key,
             "fields": ERASED_FIELDS, "reason": f"retention: closed before {before.date().isoformat()}"}
            for key in chunk])
    gatherings = await session.execute(update(Gathering).where(
        Gathering.held_on < before.date(), Gathering.organiser != ERASED).values(organiser=ERASED,
                                                                                organiser_phone=None))
    return {"persons": len(keys), "gatherings": gatherings.rowcount or 0}


def refill(person: Person, **fields) -> None:
    """A closed person comes back (registered again): their data is taken afresh."""
    for name, value in fields.items():
        setattr(person, name, value)
    person.pii_erased_at = None
    person.updated_at = clock.now()
