"""What every scenario does through the APIs: people, sites and labs, swabbing, the labs'
work, positives, tracing, the quarantine's daily job, classification.

The simulator keeps its own picture of the outbreak (who is infected since when, which
tubes wait in which lab queue) and tells the platform only what a real city would:
registrations, swabs, results, contacts, classifications. Everything it does is in
the ground truth.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from fangkong_cli.simulate.client import SimulationError, wait_for
from fangkong_cli.simulate.truth import iso

if TYPE_CHECKING:
    from fangkong_cli.simulate.runner import Sim

BATCH = 1000  # tubes or results per POST (the services take up to 5,000)


@dataclass(eq=False)
class Person:
    id_number: str
    name: str
    region_code: str
    grid: str | None = None
    key: str | None = None            # the platform's person_key, once registered
    detectable_from: datetime | None = None  # infected: a swab from this instant on is positive
    positive_at: datetime | None = None      # when a positive single tube was posted
    case_seen: bool = False           # the registry knows them as a case
    classified: bool = False
    contact_degree: int | None = None
    exposure_at: datetime | None = None
    traced: bool = False              # their contacts have been registered

    def person_in(self) -> dict:
        body = {"id_type": "resident_id", "id_number": self.id_number, "name": self.name,
                "region_code": self.region_code}
        if self.grid:
            body["grid"] = self.grid
        return body


@dataclass(eq=False)
class Tube:
    barcode: str
    site_id: str
    ratio: int
    members: list[Person | None]      # None: a pool member the simulator does not know by key
    collected_at: datetime
    priority: int                      # 0 retest, 1 single (quarantine), 2 pool
    member_ids: list[str] = field(default_factory=list)  # what was sent: ID numbers or person keys
    source_pool: str | None = None

    def positive_at(self) -> bool:
        return any(p is not None and p.detectable_from is not None and p.detectable_from <= self.collected_at
                   for p in self.members)


@dataclass
class Lab:
    id: str
    name: str
    tubes_per_day: int


class World:
    def __init__(self, sim: Sim) -> None:
        self.sim = sim
        self.api = sim.api
        self.truth = sim.truth
        self.by_key: dict[str, Person] = {}
        self.queue: list[Tube] = []        # collected, waiting for a lab (the backlog)
        self.tubes: dict[str, Tube] = {}
        self.labs: list[Lab] = []
        self.positives: list[Person] = []  # in the order their positive results were posted
        self.hospital_sites: list[str] = []
        self.contacts: list[Person] = []
        self.serial = 0
        # Testing sites and labs get their ids from the platform; the ground truth names them instead
        # (two installations give different ids to the same site).
        self.site_names: dict[str, str] = {}
        self.scheduler_reports: list[dict] = []

    # --- setup -------------------------------------------------------------------

    async def quarantine_site(self, at: datetime, site_id: str, name: str, kind: str, region: str, capacity: int,
                              supporting: Sequence[str] = ()) -> None:
        body = {"id": site_id, "name": name, "kind": kind, "region_code": region, "capacity": capacity,
                "supporting_regions": list(supporting)}
        # 409: an earlier run on this installation created it (site ids are fixed by the scenario).
        await self.api.call("quarantine", "POST", "/quarantine/sites", json=body, records=1, ok=(201, 409))
        self.truth.add("site", at, service="quarantine", site=site_id, name=name, site_kind=kind, region_code=region,
                       capacity=capacity, supporting_regions=list(supporting))
        if kind in ("hospital", "fangcang"):
            self.hospital_sites.append(site_id)

    async def testing_site(self, at: datetime, name: str, region: str, lat: float, lon: float, swabs_per_hour: int,
                           ratio: int = 10) -> str:
        body = {"name": name, "region_code": region, "latitude": lat, "longitude": lon,
                "swabs_per_hour": swabs_per_hour, "default_ratio": ratio}
        site_id = (await self.api.call("testing", "POST", "/testing/sites", json=body, records=1))["id"]
        self.site_names[site_id] = name
        self.truth.add("site", at, service="testing", name=name, site_kind="collection", region_code=region,
                       swabs_per_hour=swabs_per_hour, default_ratio=ratio)
        return site_id

    async def lab(self, at: datetime, name: str, region: str, lat: float, lon: float, tubes_per_day: int) -> Lab:
        body = {"name": name, "region_code": region, "latitude": lat, "longitude": lon,
                "tubes_per_day": tubes_per_day, "reagent_stock": tubes_per_day * 30, "turnaround_hours": 24,
                "run_hours": 4}
        lab_id = (await self.api.call("testing", "POST", "/testing/labs", json=body, records=1))["id"]
        self.truth.add("site", at, service="testing", name=name, site_kind="lab", region_code=region,
                       tubes_per_day=tubes_per_day)
        lab = Lab(lab_id, name, tubes_per_day)
        self.labs.append(lab)
        return lab

    # --- people ------------------------------------------------------------------

    def know(self, person: Person, key: str) -> None:
        person.key = key
        self.by_key[key] = person

    async def register(self, people: Sequence[Person], at: datetime) -> None:
        async def one(person: Person) -> None:
            body = await self.api.call("registry", "POST", "/registry/persons", json=person.person_in(), records=1)
            self.know(person, body["id"])

        await self.api.gather(one(p) for p in people if p.key is None)
        for person in people:
            self.truth.add("registered", at, person=person.id_number, region_code=person.region_code)

    async def add_contacts(self, links: Sequence[tuple[Person, Person, str]], at: datetime, degree: int) -> None:
        """Register contacts (person, source, setting) of one degree; the platform orders their quarantine."""
        async def batch(chunk: Sequence[tuple[Person, Person, str]]) -> None:
            # A survey team's list in one request (POST /registry/contacts/batch: all or nothing).
            body = {"contacts": [
                {"person": person.person_in(), "source_person_id": source.key, "exposure_at": iso(person.exposure_at),
                 "setting": setting, "reported_by": "流调队 (epidemiological survey team)"}
                for person, source, setting in chunk]}
            out = await self.api.call("registry", "POST", "/registry/contacts/batch", json=body, records=len(chunk))
            for (person, _source, _setting), link in zip(chunk, out["contacts"], strict=True):
                if link["degree"] != degree:
                    raise SimulationError(f"contact {person.id_number}: degree {link['degree']}, expected {degree}")
                self.know(person, link["person_id"])

        size = 200
        await self.api.gather(batch(links[i:i + size]) for i in range(0, len(links), size))
        for person, source, setting in links:
            person.contact_degree = degree
            self.contacts.append(person)
            self.truth.add("exposed", at, person=person.id_number, source=source.id_number, degree=degree,
                           exposure_at=iso(person.exposure_at), setting=setting, region_code=person.region_code)

    # --- swabbing ------------------------------------------------------------------

    def next_barcode(self, prefix: str) -> str:
        # The run tag (scenario, seed, first day) keeps a second run on one installation clear of the first's tubes.
        self.serial += 1
        return f"{prefix}{self.sim.run_tag}-{self.serial:07d}"

    async def swab(self, tubes: Sequence[Tube], at: datetime, *, round_: str | None = None) -> None:
        """POST the tubes (batches, concurrently); they join the labs' queue."""
        async def post(batch: Sequence[Tube]) -> None:
            items = [{"barcode": t.barcode, "ratio": t.ratio, "members": t.member_ids, "site_id": t.site_id,
                      "collected_at": iso(t.collected_at), **({"round": round_} if round_ and t.ratio > 1 else {})}
                     for t in batch]
            out = await self.api.call("testing", "POST", "/testing/tubes", json={"tubes": items},
                                      records=sum(len(t.member_ids) for t in batch))
            if out["accepted"] + out["unchanged"] != len(batch):
                raise SimulationError(f"testing took {out['accepted']} of {len(batch)} tubes")

        await self.api.gather(post(tubes[i:i + BATCH]) for i in range(0, len(tubes), BATCH))
        for tube in tubes:
            self.tubes[tube.barcode] = tube
            self.queue.append(tube)
            self.truth.add("collected", tube.collected_at, barcode=tube.barcode, ratio=tube.ratio,
                           site=self.site_names.get(tube.site_id, tube.site_id),
                           members=[p.id_number if p else "?" for p in tube.members],
                           **({"retest_of": tube.source_pool} if tube.source_pool else {}))
        self.sim.tubes_collected += len(tubes)
        self.sim.sample(backlog_tubes=len(self.queue))  # the backlog peaks right after a swab

    async def pending_orders(self, reason: str) -> list[dict]:
        return await self.api.call("testing", "GET", "/testing/orders",
                                   params={"status": "pending", "reason": reason, "limit": 10000})

    async def swab_orders(self, at: datetime, site_for: Callable[[Person | None, dict], str], *,
                          reasons: Iterable[str] = ("retest", "quarantine"), pool: int = 10) -> int:
        """Swab everyone the platform asks a test of: retests of positive pools alone (a retest needs a
        single tube), people under quarantine ``pool`` to a tube, as the sites do for their daily tests
        (1 = single tubes). People already positive are in hospital, not swabbed."""
        tubes: list[Tube] = []
        for reason in reasons:
            orders = await self.pending_orders(reason)
            known = []
            unknown: dict[str, list[dict]] = {}
            for order in orders:
                person = self.by_key.get(order["person_key"])
                if person is not None:
                    if person.positive_at is None:
                        known.append((person, order))
                else:
                    unknown.setdefault(order.get("source_barcode") or "", []).append(order)
            # Deterministic order whatever the installation's person keys: by ID number, then pools.
            known.sort(key=lambda pair: (pair[1].get("source_barcode") or "", pair[0].id_number))
            seen: set[str] = set()
            people: list[tuple[Person | None, dict]] = []
            for person, order in known:
                if person.id_number not in seen:
                    seen.add(person.id_number)
                    people.append((person, order))
            keys: set[str] = set()
            for source in sorted(unknown):
                for order in unknown[source]:
                    # Someone this run did not register (an earlier run's contact): once, like the others.
                    if reason == "retest" or order["person_key"] not in keys:
                        keys.add(order["person_key"])
                        people.append((None, order))
            if reason == "retest" or pool <= 1:
                for person, order in people:
                    tubes.append(Tube(self.next_barcode("R" if reason == "retest" else "Q"), site_for(person, order),
                                      1, [person], at, 0 if reason == "retest" else 1, [order["person_key"]],
                                      order.get("source_barcode")))
                continue
            for k in range(0, len(people), pool):
                group = people[k:k + pool]
                tubes.append(Tube(self.next_barcode("Q"), site_for(group[0][0], group[0][1]),
                                  next(r for r in (1, 5, 10, 20) if r >= len(group)),
                                  [p for p, _ in group], at, 1, [o["person_key"] for _, o in group]))
        if tubes:
            await self.swab(tubes, at)
        return len(tubes)

    # --- the labs ------------------------------------------------------------------

    def lab_name(self, lab_id: str) -> str:
        return next((lab.name for lab in self.labs if lab.id == lab_id), lab_id)

    async def run_labs(self, at: datetime, capacity: int) -> tuple[list[Tube], list[Person]]:
        """The labs test up to ``capacity`` tubes collected before ``at`` (retests first, then in the
        order they came) and post the results. Returns the positive pools and the new positives."""
        ready = sorted((t for t in self.queue if t.collected_at <= at),
                       key=lambda t: (t.priority, t.collected_at, t.barcode))[:max(0, capacity)]
        if not ready:
            return [], []
        done = {t.barcode for t in ready}
        self.queue = [t for t in self.queue if t.barcode not in done]
        # Spread over the labs by their throughput.
        total = sum(lab.tubes_per_day for lab in self.labs) or 1
        results: list[dict] = []
        pools: list[Tube] = []
        positives: list[Person] = []
        first_results: list[dict] = []  # each new positive's result, in the order of ``positives``
        cursor = 0
        for n, tube in enumerate(ready):
            while cursor < len(self.labs) - 1 and n >= len(ready) * sum(
                    lab.tubes_per_day for lab in self.labs[:cursor + 1]) / total:
                cursor += 1
            lab = self.labs[cursor]
            positive = tube.positive_at()
            results.append({"barcode": tube.barcode, "result": "positive" if positive else "negative",
                            "lab_id": lab.id, "tested_at": iso(at),
                            **({"ct_value": 28.0} if positive else {})})
            if positive and tube.ratio > 1:
                pools.append(tube)
            elif positive:
                person = tube.members[0]
                assert person is not None
                if person.positive_at is None:
                    person.positive_at = at
                    positives.append(person)
                    first_results.append(results[-1])
        # Infected members of a positive pool are registered before their retest (流调 starts
        # at the pool result), so the simulator knows them by key when the retest order comes.
        suspects = [p for pool in pools for p in pool.members
                    if p is not None and p.key is None and p.detectable_from is not None]
        if suspects:
            await self.register(suspects, at)

        async def post(batch: list[dict]) -> None:
            await self.api.call("testing", "POST", "/testing/results", json={"results": batch}, records=len(batch))

        # New positives one at a time, each taken in by the quarantine before the next: when beds
        # run short, who gets the last one must not depend on which concurrent request or bus
        # partition came first (the same seed would otherwise classify other people).
        sequenced = {id(r) for r in first_results}
        rest = [r for r in results if id(r) not in sequenced]
        await self.api.gather(post(rest[i:i + BATCH]) for i in range(0, len(rest), BATCH))
        for person, result in zip(positives, first_results, strict=True):
            await post([result])
            await self.await_quarantine_cases([person])
        for tube, result in zip(ready, results, strict=True):
            self.truth.add("resulted", at, barcode=tube.barcode, result=result["result"], lab=self.lab_name(result["lab_id"]),
                           collected_at=iso(tube.collected_at))
        for person in positives:
            self.positives.append(person)
            self.truth.add("positive", at, person=person.id_number, region_code=person.region_code,
                           contact_degree=person.contact_degree)
        self.sim.results_posted += len(results)
        if pools:
            expected = sum(len(p.members) for p in pools)
            barcodes = {p.barcode for p in pools}

            async def retests_ordered() -> bool:
                orders = await self.pending_orders("retest")
                return sum(1 for o in orders if o.get("source_barcode") in barcodes) >= expected

            await wait_for(retests_ordered, what=f"{expected} retest orders of {len(pools)} positive pools")
        if positives:
            await self.await_cases(positives)
            # Beds run short as positives come in: the peak of those waiting is right after a lab run.
            self.sim.sample(backlog_tubes=len(self.queue), beds_short=await self.sim.beds_short())
        return pools, positives

    async def await_cases(self, people: Sequence[Person]) -> None:
        """Until the registry knows each new positive as a case (contacts can be traced from then)."""
        async def seen(person: Person) -> None:
            async def check() -> bool:
                body = await self.api.call("registry", "GET", f"/registry/persons/{person.key}")
                return bool(body.get("is_case"))

            await wait_for(check, what=f"the registry to know {person.id_number} as a case")
            person.case_seen = True

        await self.api.gather(seen(p) for p in people if not p.case_seen)

        # The quarantine learns of them from the same events (a bed at once): wait for it too, so
        # what the next step reads (cases to classify, beds) does not depend on how busy it was.
        await self.await_quarantine_cases(people)

    async def await_quarantine_cases(self, people: Sequence[Person]) -> None:
        async def admitted() -> bool:
            cases = await self.api.call("quarantine", "GET", "/quarantine/cases",
                                        params={"classified": "false", "limit": 1000})
            known = {c["person_key"] for c in cases}
            return len(cases) >= 1000 or all(p.key in known or p.classified for p in people)

        await wait_for(admitted, what=f"the quarantine to take in {len(people)} new positives")

    # --- quarantine ----------------------------------------------------------------

    async def scheduler(self, at: datetime) -> dict:
        report = await self.api.call("quarantine", "POST", "/quarantine/scheduler/run")
        # The report's counts are the platform's (its own timer may have run the job too): kept
        # beside the ground truth, not in it.
        self.scheduler_reports.append(report)
        self.truth.add("scheduler", at, day=report["day"])
        return report

    async def orders_total(self) -> int:
        return (await self.api.call("quarantine", "GET", "/quarantine/orders", params={"limit": 1}))["total"]

    async def await_orders(self, expected: int) -> None:
        async def check() -> bool:
            return await self.orders_total() >= expected

        await wait_for(check, what=f"{expected} quarantine orders")

    async def classify(self, at: datetime, capacity: int) -> int:
        """The medical institutions classify up to ``capacity`` admitted positives, oldest first."""
        if capacity <= 0:
            return 0
        waiting = await self.api.call("quarantine", "GET", "/quarantine/cases",
                                      params={"classified": "false", "limit": 1000})
        admitted = {c["person_key"] for c in waiting if c.get("treating_region_code")}
        chosen = [p for p in self.positives if not p.classified and p.key in admitted][:capacity]
        # Each person's verdict from their own stream: how many are classified today (a what-if lever)
        # must not change who is infected tomorrow.
        verdicts = []
        for person in chosen:
            own = random.Random(f"{self.sim.options.seed}:verdict:{person.id_number}")
            verdicts.append(("confirmed" if own.random() < 0.35 else "asymptomatic",
                             own.choice(["mild", "mild", "moderate", "severe"])))

        async def one(person: Person, verdict: tuple[str, str]) -> None:
            body = {"classification": verdict[0]}
            if verdict[0] == "confirmed":
                body["severity"] = verdict[1]
            await self.api.call("quarantine", "POST", f"/quarantine/cases/{person.key}/classification", json=body,
                                records=1)

        await self.api.gather(one(p, v) for p, v in zip(chosen, verdicts, strict=True))
        for person, verdict in zip(chosen, verdicts, strict=True):
            person.classified = True
            self.truth.add("classified", at, person=person.id_number, classification=verdict[0])
        return len(chosen)


async def gather_limited(calls: Iterable[Any], limit: int = 4) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def run(call):
        async with gate:
            return await call

    return list(await asyncio.gather(*(run(c) for c in calls)))
