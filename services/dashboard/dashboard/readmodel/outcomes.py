"""Outcome intervals (issue 10, 四早): how long from one event to the next, from events only.

Every event leaves a *moment* (subject, kind, occurred_at): a person's positive, their bed, their
classification, a close contact's order, a returnee's registration, a swab, a tube collected or
resulted. An interval is recomputed from all the moments of its two ends whenever one of them
arrives, so an admission seen before its positive, or a result before its tube, ends in the same
rows as the events in order would. Moments are keyed by (subject, kind, at): a replayed event
adds nothing.

The intervals (``kind`` in dash_interval):

- ``result_to_bed``: a person's first test.positive → their first quarantine.admitted to a treatment
  site (hospital or 方舱) no earlier than ADMISSION_BEFORE_RESULT before it (already in hospital: 0 s);
- ``case_to_contacts_ordered``: a case's first test.positive → the first contact order
  (quarantine.ordered, reason contact_degree_*) of each close contact (contact.identified, degree 1,
  source = the case); a contact already under order when the case turned positive counts 0 s;
- ``collection_to_result``: a tube's test.collected → its result (test.negative, test.pool_positive
  or test.positive: the first of them);
- ``positive_to_classified``: first test.positive → first case.classified;
- ``registered_to_first_test``: a returnee's person.returned → the first test.collected with them
  among its members at or after it (category: the returnee's; travel within the province is not
  tested by the policy and not measured).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.domain.rules import TREATMENT_SITES, local_day
from dashboard.models import ContactLink, Interval, Moment
from dashboard.readmodel.store import IN_CHUNK, WRITE_CHUNK, load
from fangkong_common.db import dialect_insert, one_of
from fangkong_common.events import schemas as ev
from fangkong_common.events.envelope import Envelope

RESULT_TO_BED = "result_to_bed"
CASE_TO_CONTACTS = "case_to_contacts_ordered"
COLLECTION_TO_RESULT = "collection_to_result"
POSITIVE_TO_CLASSIFIED = "positive_to_classified"
REGISTERED_TO_FIRST_TEST = "registered_to_first_test"
KINDS = (RESULT_TO_BED, CASE_TO_CONTACTS, COLLECTION_TO_RESULT, POSITIVE_TO_CLASSIFIED, REGISTERED_TO_FIRST_TEST)

PERSON_KINDS = ("positive", "bed", "classified")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Outcomes:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # subject → kind → {at: (region, extra)}
        self.moments: dict[str, dict[str, dict[datetime, tuple[str | None, str | None]]]] = defaultdict(
            lambda: defaultdict(dict))
        self.new_moments: dict[tuple[str, str, datetime], tuple[str | None, str | None]] = {}
        self.links: set[tuple[str, str]] = set()
        self.new_links: set[tuple[str, str]] = set()
        self.persons: set[str] = set()      # positive / bed / classified / ordered: person intervals, links
        self.barcodes: set[str] = set()
        self.returnees: set[str] = set()    # registered (person.returned) in this batch
        self.swabbed: set[str] = set()      # tube members: returnee intervals if they are returnees

    def moment(self, subject: str, kind: str, at: datetime, region: str | None = None, extra: str | None = None) -> None:
        at = at.astimezone(UTC)
        if at not in self.moments[subject][kind]:
            self.moments[subject][kind][at] = (region, extra)
            self.new_moments[(subject, kind, at)] = (region, extra)

    def collect(self, items: Sequence[tuple[Envelope, Any]]) -> None:
        """The moments and links the batch's events bring."""
        for envelope, p in items:
            at = envelope.occurred_at
            if isinstance(p, ev.TestPositive):
                self.moment(p.person_key, "positive", at, p.origin_region_code or p.region_code)
                self.persons.add(p.person_key)
            if isinstance(p, (ev.TestPositive, ev.TestNegative, ev.TestPoolPositive)):
                self.moment(p.barcode, "resulted", at, p.region_code)
                self.barcodes.add(p.barcode)
            elif isinstance(p, ev.TestCollected):
                self.moment(p.barcode, "collected", at, p.region_code)
                self.barcodes.add(p.barcode)
                # Ten members a tube in mass testing, and only returnees' swabs are ever read: they are
                # queued for writing here and read back in load() for the returnees among them (a nested
                # dict per member was a third of the dashboard's time in the screening profile).
                swabbed_at = at.astimezone(UTC)
                for member in p.member_keys:
                    self.new_moments[(member, "swab", swabbed_at)] = (None, None)
                self.swabbed.update(p.member_keys)
            elif isinstance(p, ev.QuarantineAdmitted):
                if p.site_kind.value in TREATMENT_SITES:
                    self.moment(p.person_key, "bed", at, p.origin_region_code)
                    self.persons.add(p.person_key)
            elif isinstance(p, ev.CaseClassified):
                self.moment(p.person_key, "classified", at, p.origin_region_code)
                self.persons.add(p.person_key)
            elif isinstance(p, ev.QuarantineOrdered):
                if p.reason.startswith("contact_degree"):
                    self.moment(p.person_key, "ordered", at, p.region_code)
                    self.persons.add(p.person_key)
            elif isinstance(p, ev.ContactIdentified):
                if p.degree == 1:
                    link = (p.source_person_key, p.person_key)
                    if link not in self.links:
                        self.links.add(link)
                        self.new_links.add(link)
            elif isinstance(p, ev.PersonReturned) and p.category is not ev.ReturneeCategory.local:
                self.moment(p.person_key, "returned", at, p.region_code, p.category.value)
                self.returnees.add(p.person_key)

    async def load(self) -> None:
        s = self.session
        # Contact links touching the persons of this batch (as case or contact), then every moment
        # of every subject whose intervals may change.
        people = self.persons | {c for c, _ in self.new_links} | {x for _, x in self.new_links}
        for row in (await load(s, ContactLink, "case_key", people) + await load(s, ContactLink, "contact_key", people)):
            self.links.add((row["case_key"], row["contact_key"]))
        # Of the people swabbed (ten a tube in mass testing) only returnees have an interval to recompute:
        # one narrow look for their registrations, then everything of those few.
        swabbed = self.swabbed - self.returnees
        if swabbed:
            query = select(Moment.subject).where(Moment.kind == "returned")
            ordered = sorted(swabbed)
            for start in range(0, len(ordered), IN_CHUNK):
                chunk = ordered[start:start + IN_CHUNK]
                self.returnees.update((await s.scalars(query.where(one_of(s, Moment.subject, chunk)))).all())
        subjects = people | {c for c, _ in self.links} | {x for _, x in self.links} | self.barcodes | self.returnees
        for row in await load(s, Moment, "subject", subjects):
            at = _aware(row["at"]).astimezone(UTC)
            self.moments[row["subject"]][row["kind"]].setdefault(at, (row["region_code"], row["extra"]))
        for (subject, kind, at), value in self.new_moments.items():
            if kind == "swab" and subject in self.returnees:  # this batch's swabs of returnees
                self.moments[subject][kind].setdefault(at, value)

    # -- recomputing ---------------------------------------------------------------------

    def first(self, subject: str, kind: str, since: datetime | None = None) -> datetime | None:
        times = [t for t in self.moments[subject].get(kind, {}) if since is None or t >= since]
        return min(times) if times else None

    def region(self, subject: str, kind: str, at: datetime | None) -> str | None:
        return self.moments[subject][kind][at][0] if at is not None else None

    def positive(self, person: str) -> tuple[datetime | None, str | None]:
        """A positive's first moment, and the region it counts for: the city it came from once
        the classification or the admission names it, else where it was swabbed."""
        start = self.first(person, "positive")
        if start is None:
            return None, None
        region = (self.region(person, "classified", self.first(person, "classified"))
                  or self.region(person, "bed", self.first(person, "bed"))
                  or self.region(person, "positive", start))
        return start, region

    def intervals(self) -> list[dict]:
        from dashboard.readmodel.projector import ADMISSION_BEFORE_RESULT

        rows: list[dict] = []

        def add(kind: str, subject: str, region: str | None, start: datetime, end: datetime | None,
                category: str = "") -> None:
            if end is not None and end < start:
                end = start  # already done when the interval began: 0 s
            rows.append({"kind": kind, "subject": subject, "region_code": region or "000000", "category": category,
                         "start_at": start, "end_at": end, "end_day": local_day(end) if end else None})

        for person in sorted(self.persons | {c for c, _ in self.links}):
            start, region = self.positive(person)
            if start is None:
                continue
            add(RESULT_TO_BED, person, region, start, self.first(person, "bed", start - ADMISSION_BEFORE_RESULT))
            add(POSITIVE_TO_CLASSIFIED, person, region, start, self.first(person, "classified"))
        for index_case, contact in sorted(self.links):
            start, region = self.positive(index_case)
            if start is None:
                continue  # the case's positive has not arrived (yet): nothing to measure from
            add(CASE_TO_CONTACTS, f"{index_case}>{contact}", region, start, self.first(contact, "ordered"))
        for barcode in sorted(self.barcodes):
            start = self.first(barcode, "collected")
            if start is None:
                continue
            add(COLLECTION_TO_RESULT, barcode, self.region(barcode, "collected", start), start,
                self.first(barcode, "resulted"))
        for person in sorted(self.returnees):
            for at, (region, category) in sorted(self.moments[person].get("returned", {}).items()):
                add(REGISTERED_TO_FIRST_TEST, f"{person}@{at.isoformat()}", region, at,
                    self.first(person, "swab", at), category or "")
        return rows

    # -- writing -------------------------------------------------------------------------

    async def write(self) -> None:
        s = self.session
        moments = [{"subject": k[0], "kind": k[1], "at": k[2], "region_code": v[0], "extra": v[1]}
                   for k, v in sorted(self.new_moments.items())]
        await _chunks(s, dialect_insert(s, Moment).on_conflict_do_nothing(), moments)
        links = [{"case_key": c, "contact_key": x} for c, x in sorted(self.new_links)]
        await _chunks(s, dialect_insert(s, ContactLink).on_conflict_do_nothing(), links)
        rows = self.intervals()
        if rows:
            stmt = dialect_insert(s, Interval)
            table = Interval.__table__
            # An end only ever moves earlier (moments are only added, so a recomputed end never lies
            # later) — except after swabs past their retention were purged: the stored end then stays.
            keep = and_(table.c.end_at.is_not(None),
                        or_(stmt.excluded.end_at.is_(None), table.c.end_at < stmt.excluded.end_at))
            stmt = stmt.on_conflict_do_update(
                index_elements=["kind", "subject"],
                set_={**{c: stmt.excluded[c] for c in ("region_code", "category", "start_at")},
                      "end_at": case((keep, table.c.end_at), else_=stmt.excluded.end_at),
                      "end_day": case((keep, table.c.end_day), else_=stmt.excluded.end_day)})
            await _chunks(s, stmt, rows)


async def _chunks(session: AsyncSession, statement, rows: Iterable[dict]) -> None:
    rows = list(rows)
    for start in range(0, len(rows), WRITE_CHUNK):
        await session.execute(statement, rows[start:start + WRITE_CHUNK])


async def apply(session: AsyncSession, items: Sequence[tuple[Envelope, Any]]) -> None:
    """The outcome part of a batch, in the batch's transaction."""
    outcomes = Outcomes(session)
    outcomes.collect(items)
    if not (outcomes.new_moments or outcomes.new_links):
        return
    await outcomes.load()
    await outcomes.write()
