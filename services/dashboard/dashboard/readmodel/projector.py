"""The projector: a batch of events applied to the state rows they touch, per event family,
then the derived states recomputed and everything written back in one go."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.domain.rules import TREATMENT_SITES, local_day, needs_site
from dashboard.models import Change, Fact, Once, Order, Positive, Returnee, Site, TestDue, Tube
from dashboard.readmodel.counters import upsert_counters
from dashboard.readmodel.deliveries import webhook_deliveries
from dashboard.readmodel import outcomes
from dashboard.readmodel.events import admission_dim, once_key
from dashboard.readmodel.store import WRITE_CHUNK, Outcome, Table, load
from fangkong_common.db import dialect_insert
from fangkong_common.events import schemas as ev
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope

# Serialises the projection of concurrent replicas (PostgreSQL): events of one person arrive on
# different partitions, so two replicas may at once create a row (a due test) and the fact that
# changes it (the swab); each must see the other's once it commits. Row locks cannot do that for
# rows that do not exist yet, so a replica adds availability, not projection throughput.
ADVISORY_LOCK = 0x46_4B_4F_55  # "FKOU"

# An admission for treatment counts for a positive found up to this many days later
# (admitted first, result confirmed in hospital), not for one found months later.
ADMISSION_BEFORE_RESULT = timedelta(days=7)
MANAGING_FACTS = ("ordered", "swabbed")


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes (stored as UTC).
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class Projector:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.out = Outcome()
        self.current_event: str | None = None
        self.returnees = Table(Returnee)
        self.orders = Table(Order)
        self.tests_due = Table(TestDue)
        self.positives = Table(Positive)
        self.tubes = Table(Tube)
        self.facts: dict[str, set[tuple[str, date]]] = defaultdict(set)
        self.new_facts: set[tuple[str, str, date]] = set()
        self.once_seen: set[str] = set()
        self.new_once: set[str] = set()
        self.sites: dict[str, dict] = {}
        self.touched: set[str] = set()

    # -- helpers -------------------------------------------------------------

    def add(self, metric: str, region: str, day: date, dimension: str = "", n: int = 1) -> None:
        key = (metric, region, day, dimension)
        self.out.deltas[key] += n
        if self.current_event is not None:
            self.out.by_event[self.current_event].append((*key, n))

    def once(self, key: str) -> bool:
        """True the first time ``key`` is seen (in the database or this batch)."""
        if key in self.once_seen:
            return False
        self.once_seen.add(key)
        self.new_once.add(key)
        return True

    def fact(self, person_key: str, kind: str, day: date) -> None:
        if (kind, day) not in self.facts[person_key]:
            self.facts[person_key].add((kind, day))
            self.new_facts.add((person_key, kind, day))
        self.touched.add(person_key)

    # -- loading -------------------------------------------------------------

    async def load(self, items: Sequence[tuple[Envelope, Any]]) -> None:
        persons: set[str] = set()
        orders: set[str] = set()
        barcodes: set[str] = set()
        once_keys: set[str] = set()
        sites: set[str] = set()
        for envelope, p in items:
            if hasattr(p, "person_key") and p.person_key:
                persons.add(p.person_key)
            if isinstance(p, ev.TestCollected):
                persons.update(p.member_keys)
            if getattr(p, "order_id", None) is not None:
                orders.add(str(p.order_id))
            if hasattr(p, "barcode"):
                barcodes.add(p.barcode)
            if isinstance(p, ev.SiteCapacityLow):
                sites.add(p.site_id)
            key = once_key(envelope, p)
            if key:
                once_keys.add(key)
        s = self.session
        for row in await load(s, Returnee, "person_key", persons, lock=True):
            self.returnees.rows[(row["person_key"], row["arrival_date"])] = row
        for row in await load(s, TestDue, "person_key", persons, lock=True):
            self.tests_due.rows[(row["order_id"], row["due_date"])] = row
        for row in await load(s, Positive, "person_key", persons, lock=True):
            self.positives.rows[row["person_key"]] = row
        for row in (await load(s, Order, "order_id", orders, lock=True)
                    + await load(s, Order, "person_key", persons, lock=True)):
            self.orders.rows[row["order_id"]] = row
        for row in await load(s, Tube, "barcode", barcodes, lock=True):
            self.tubes.rows[row["barcode"]] = row
        for row in await load(s, Once, "key", once_keys):
            self.once_seen.add(row["key"])
        for row in await load(s, Site, "site_id", sites):
            self.sites[row["site_id"]] = row

    # -- events --------------------------------------------------------------

    def apply(self, envelope: Envelope, p: Any) -> None:
        self.current_event = str(envelope.id)
        occurred = local_day(envelope.occurred_at)
        key = once_key(envelope, p)
        if isinstance(p, ev.PersonReturned):
            self.returned(p)
        elif isinstance(p, ev.PersonRiskFlagged):
            if self.once(key):
                self.add("risk_flagged", p.region_code, occurred, p.level.value)
        elif isinstance(p, ev.ContactIdentified):
            if self.once(key):
                self.add("contacts", p.region_code, occurred, str(p.degree))
        elif isinstance(p, ev.CheckpointFever):
            if self.once(key):
                self.add("fever_alerts", p.region_code, local_day(p.observed_at))
        elif isinstance(p, ev.VaccinationRecorded):
            if self.once(key):
                self.add("vaccinations", p.region_code, p.vaccinated_on, p.age_group)
                if p.dose_number == 1:  # people reached: what the targets count
                    self.add("vaccinated_people", p.region_code, p.vaccinated_on, p.age_group)
        elif isinstance(p, ev.GatheringFiled):
            if self.once(key):
                self.add("gatherings", p.region_code, occurred, p.kind[:80])
        elif isinstance(p, ev.SiteCapacityLow):
            self.site_capacity(envelope, p)
        elif isinstance(p, ev.TestingCapacityAlert):
            if self.once(key):
                self.add("testing_alerts", p.region_code, occurred, p.kind)
        elif isinstance(p, ev.QuarantineOrdered):
            self.ordered(p, occurred)
        elif isinstance(p, ev.QuarantineTestDue):
            self.test_due(p)
        elif isinstance(p, ev.QuarantineAdmitted):
            self.admitted(p, key)
        elif isinstance(p, ev.QuarantineReleased):
            self.released(p)
        elif isinstance(p, ev.TestCollected):
            self.collected(p)
        elif isinstance(p, (ev.TestNegative, ev.TestPoolPositive, ev.TestPositive)):
            self.resulted(p, key)
        elif isinstance(p, ev.CaseClassified):
            self.classified(p)
        self.current_event = None

    def returned(self, p: ev.PersonReturned) -> None:
        key = (p.person_key, p.arrival_date)
        if self.returnees.get(key) is None:
            self.returnees.create(key, {"person_key": p.person_key, "arrival_date": p.arrival_date,
                                        "region_code": p.region_code, "category": p.category.value,
                                        "managed_on": None})
            self.add("returnees", p.region_code, p.arrival_date, p.category.value)
        self.touched.add(p.person_key)

    def site_capacity(self, envelope: Envelope, p: ev.SiteCapacityLow) -> None:
        row = self.sites.get(p.site_id)
        # Latest capacity wins, whatever order the alerts arrive in.
        if row is not None and row["as_of"] is not None and _aware(row["as_of"]) >= envelope.occurred_at:
            return
        new = {"site_id": p.site_id, "region_code": p.region_code, "site_kind": p.site_kind.value,
               "beds_total": p.beds_total, "beds_free": p.beds_free, "as_of": envelope.occurred_at}
        self.sites[p.site_id] = new
        self.out.sites.append(new)

    def ordered(self, p: ev.QuarantineOrdered, day: date) -> None:
        oid = str(p.order_id)
        first = p.stages[0]
        kind, place = first.kind.value, first.place.value
        site = needs_site(kind)
        self.fact(p.person_key, "ordered", day)
        row = self.orders.get(oid)
        if row is None:
            row = self.orders.create(oid, {"order_id": oid, "person_key": p.person_key, "region_code": p.region_code,
                                           "ordered_on": day, "first_kind": kind, "first_place": place,
                                           "needs_site": site, "admitted_on": None, "dim": None,
                                           "released_on": None})
        elif row["ordered_on"] is None:  # admission or release arrived first
            self.orders.set(oid, ordered_on=day, first_kind=kind, first_place=place, needs_site=site)
        else:
            return
        region = row["region_code"]
        self.add("quarantine_ordered", region, day, kind)
        if row["released_on"] is not None:
            return
        if site:
            self.add("isolation_required", region, day)
            if row["admitted_on"] is not None:
                self.add("isolation_admitted", region, max(day, row["admitted_on"]))
        elif row["dim"] is None:
            dim = f"{kind}/{place}"
            self.orders.set(oid, dim=dim)
            self.add("in_quarantine", region, day, dim)

    def test_due(self, p: ev.QuarantineTestDue) -> None:
        key = (str(p.order_id), p.due_date)
        if self.tests_due.get(key) is None:
            self.tests_due.create(key, {"order_id": key[0], "due_date": p.due_date, "person_key": p.person_key,
                                        "region_code": p.region_code, "tested_on": None})
            self.add("tests_due", p.region_code, p.due_date)
        self.touched.add(p.person_key)

    def admitted(self, p: ev.QuarantineAdmitted, key: str) -> None:
        day = local_day(p.admitted_at)
        site_kind = p.site_kind.value
        if not self.once(key):
            return
        self.add("admissions", p.origin_region_code, day, site_kind)
        if site_kind in TREATMENT_SITES:
            self.fact(p.person_key, "admitted_treat", day)
        if p.order_id is not None:
            oid = str(p.order_id)
            row = self.orders.get(oid)
        else:
            open_orders = [r for r in self.orders.rows.values()
                           if r["person_key"] == p.person_key and r["released_on"] is None]
            row = max(open_orders, key=lambda r: (r["ordered_on"] or date.min, r["order_id"]), default=None)
            oid = row["order_id"] if row else None
        if oid is None:
            return
        if row is None:
            dim = admission_dim(None, site_kind)
            self.orders.create(oid, {"order_id": oid, "person_key": p.person_key,
                                     "region_code": p.origin_region_code, "ordered_on": None, "first_kind": None,
                                     "first_place": None, "needs_site": False, "admitted_on": day, "dim": dim,
                                     "released_on": None})
            self.add("in_quarantine", p.origin_region_code, day, dim)
            return
        if row["released_on"] is not None:
            return
        region = row["region_code"]
        if row["admitted_on"] is None:
            self.orders.set(oid, admitted_on=day)
            if row["needs_site"] and row["ordered_on"] is not None:
                self.add("isolation_admitted", region, max(day, row["ordered_on"]))
        dim = admission_dim(row["first_kind"], site_kind)
        if row["dim"] != dim:
            if row["dim"]:
                self.add("in_quarantine", region, day, row["dim"], -1)
            self.add("in_quarantine", region, day, dim)
            self.orders.set(oid, dim=dim)

    def released(self, p: ev.QuarantineReleased) -> None:
        oid = str(p.order_id)
        day = local_day(p.released_at)
        row = self.orders.get(oid)
        if row is None:
            self.orders.create(oid, {"order_id": oid, "person_key": p.person_key, "region_code": p.region_code,
                                     "ordered_on": None, "first_kind": None, "first_place": None,
                                     "needs_site": False, "admitted_on": None, "dim": None, "released_on": day})
            self.add("released", p.region_code, day, p.outcome)
            return
        if row["released_on"] is not None:
            return
        region = row["region_code"]
        self.orders.set(oid, released_on=day)
        self.add("released", region, day, p.outcome)
        if row["ordered_on"] is not None and row["needs_site"]:
            self.add("isolation_required", region, day, "", -1)
            if row["admitted_on"] is not None:
                self.add("isolation_admitted", region, day, "", -1)
        if row["dim"]:
            self.add("in_quarantine", region, day, row["dim"], -1)

    def collected(self, p: ev.TestCollected) -> None:
        day = local_day(p.collected_at)
        row = self.tubes.get(p.barcode)
        for member in p.member_keys:
            self.fact(member, "swabbed", day)
        if row is None:
            self.tubes.create(p.barcode, {"barcode": p.barcode, "region_code": p.region_code, "collected_on": day,
                                          "resulted_on": None})
            self.add("tube_backlog", p.region_code, day)
        elif row["collected_on"] is None:  # the result came first: never in the backlog
            self.tubes.set(p.barcode, collected_on=day)
        else:
            return
        region = self.tubes.get(p.barcode)["region_code"]
        self.add("tubes_collected", region, day, str(p.ratio))
        self.add("people_swabbed", region, day, "", len(set(p.member_keys)))

    def resulted(self, p, key: str) -> None:
        day = local_day(p.resulted_at)
        row = self.tubes.get(p.barcode)
        if row is None:
            self.tubes.create(p.barcode, {"barcode": p.barcode, "region_code": p.region_code, "collected_on": None,
                                          "resulted_on": day})
            self.add("tubes_resulted", p.region_code, day)
        elif row["resulted_on"] is None:
            self.tubes.set(p.barcode, resulted_on=day)
            self.add("tubes_resulted", row["region_code"], day)
            if row["collected_on"] is not None:
                self.add("tube_backlog", row["region_code"], day, "", -1)
        if isinstance(p, ev.TestPoolPositive) and self.once(key):
            self.add("pools_positive", p.region_code, day)
        if isinstance(p, ev.TestPositive):
            self.touched.add(p.person_key)
            if self.positives.get(p.person_key) is None:
                region = p.origin_region_code or p.region_code
                self.positives.create(p.person_key, {"person_key": p.person_key, "region_code": region,
                                                     "positive_on": day, "admitted_on": None,
                                                     "classification": None, "classified_at": None})
                self.add("positives", region, day)
                self.add("unclassified", region, day)

    def classified(self, p: ev.CaseClassified) -> None:
        day = local_day(p.classified_at)
        cls = p.classification.value
        origin = p.origin_region_code
        pk = p.person_key
        self.touched.add(pk)
        row = self.positives.get(pk)
        if row is None:
            self.positives.create(pk, {"person_key": pk, "region_code": origin, "positive_on": day,
                                       "admitted_on": None, "classification": cls,
                                       "classified_at": p.classified_at.astimezone(UTC)})
            self.add("positives", origin, day)
            self.add("cases", origin, day, cls)
            return
        if row["classification"] is None:
            old = row["region_code"]
            self.add("unclassified", old, day, "", -1)
            if old != origin:  # cases count for the city they came from: move the person's counts there
                self.add("positives", old, row["positive_on"], "", -1)
                self.add("positives", origin, row["positive_on"])
                if row["admitted_on"] is not None:
                    self.add("positives_admitted", old, row["admitted_on"], "", -1)
                    self.add("positives_admitted", origin, row["admitted_on"])
            self.positives.set(pk, region_code=origin, classification=cls, classified_at=p.classified_at.astimezone(UTC))
            self.add("cases", origin, day, cls)
            return
        # A later classification (asymptomatic → confirmed) replaces the earlier one.
        if _aware(row["classified_at"]) < p.classified_at and row["classification"] != cls:
            self.add("cases", row["region_code"], day, row["classification"], -1)
            self.add("cases", row["region_code"], day, cls)
            self.positives.set(pk, classification=cls, classified_at=p.classified_at.astimezone(UTC))

    # -- derived states ------------------------------------------------------------

    async def load_facts(self) -> None:
        """The stored facts of the people whose derived state may change: touched people with a
        returnee, due-test or positive row. In mass testing that is a few of the ten thousand
        people a batch swabs, so the facts of the others are written but never read."""
        persons = {row["person_key"] for row in self.returnees.rows.values()}
        persons |= {row["person_key"] for row in self.tests_due.rows.values() if row["tested_on"] is None}
        persons |= set(self.positives.rows)
        for row in await load(self.session, Fact, "person_key", persons & self.touched):
            self.facts[row["person_key"]].add((row["kind"], row["day"]))

    def recompute(self) -> None:
        """States that depend on facts of other topics, recomputed from all the person's facts."""
        self.current_event = None
        touched = self.touched
        for key, row in list(self.returnees.rows.items()):
            if row["person_key"] not in touched:
                continue
            days = [d for kind, d in self.facts[row["person_key"]]
                    if kind in MANAGING_FACTS and d >= row["arrival_date"]]
            managed = min(days) if days else None
            # Only ever earlier: facts past their retention are purged, the state they set stays.
            if row["managed_on"] is not None and (managed is None or managed > row["managed_on"]):
                managed = row["managed_on"]
            if managed != row["managed_on"]:
                if row["managed_on"] is not None:
                    self.add("returnees_managed", row["region_code"], row["managed_on"], row["category"], -1)
                if managed is not None:
                    self.add("returnees_managed", row["region_code"], managed, row["category"])
                self.returnees.set(key, managed_on=managed)
        for key, row in list(self.tests_due.rows.items()):
            if row["person_key"] not in touched or row["tested_on"] is not None:
                continue
            if ("swabbed", row["due_date"]) in self.facts[row["person_key"]]:
                self.tests_due.set(key, tested_on=row["due_date"])
                self.add("tests_due_tested", row["region_code"], row["due_date"])
        for key, row in list(self.positives.rows.items()):
            if key not in touched:
                continue
            days = [d for kind, d in self.facts[key]
                    if kind == "admitted_treat" and d >= row["positive_on"] - ADMISSION_BEFORE_RESULT]
            admitted = max(min(days), row["positive_on"]) if days else None
            if row["admitted_on"] is not None and (admitted is None or admitted > row["admitted_on"]):
                admitted = row["admitted_on"]
            if admitted != row["admitted_on"]:
                if row["admitted_on"] is not None:
                    self.add("positives_admitted", row["region_code"], row["admitted_on"], "", -1)
                if admitted is not None:
                    self.add("positives_admitted", row["region_code"], admitted)
                self.positives.set(key, admitted_on=admitted)

    # -- writing -------------------------------------------------------------

    async def write(self) -> None:
        s = self.session
        if self.new_once:
            rows = [{"key": k} for k in sorted(self.new_once)]
            for start in range(0, len(rows), WRITE_CHUNK):
                await s.execute(dialect_insert(s, Once).on_conflict_do_nothing(), rows[start:start + WRITE_CHUNK])
        if self.new_facts:
            rows = [{"person_key": pk, "kind": k, "day": d} for pk, k, d in sorted(self.new_facts)]
            for start in range(0, len(rows), WRITE_CHUNK):
                await s.execute(dialect_insert(s, Fact).on_conflict_do_nothing(), rows[start:start + WRITE_CHUNK])
        for table in (self.returnees, self.orders, self.tests_due, self.positives, self.tubes):
            await table.write(s)
        for site in self.out.sites:
            stmt = dialect_insert(s, Site).values(site)
            stmt = stmt.on_conflict_do_update(
                index_elements=["site_id"],
                set_={c: stmt.excluded[c] for c in ("region_code", "site_kind", "beds_total", "beds_free", "as_of")},
                where=Site.__table__.c.as_of < stmt.excluded.as_of)
            await s.execute(stmt)
        changes = self.out.nonzero()
        await upsert_counters(s, changes)
        change_rows = [{"region_code": r, "day": d, "metric": m, "dimension": dim, "delta": n}
                       for (m, r, d, dim), n in sorted(changes.items())]
        change_rows += [{"region_code": site["region_code"], "day": local_day(site["as_of"]),
                         "metric": "site_occupancy", "dimension": site["site_id"][:80],
                         "delta": site["beds_total"] - site["beds_free"]} for site in self.out.sites]
        if change_rows:
            await s.execute(Change.__table__.insert(), change_rows)


async def apply_batch(session: AsyncSession, envelopes: list[Envelope]) -> Outcome:
    """The consumer's batch: parse, project, write, queue webhook deliveries (one transaction)."""
    # Unparsable payloads raise: the bus retries, then dead-letters the one event.
    items = [(envelope, envelope.parsed()) for envelope in envelopes if envelope.type in topics.ALL_TOPICS]
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK})
    projector = Projector(session)
    await projector.load(items)
    for envelope, payload in items:
        projector.apply(envelope, payload)
    await projector.load_facts()
    projector.recompute()
    await projector.write()
    await outcomes.apply(session, items)
    await webhook_deliveries(session, items, projector.out)
    return projector.out
