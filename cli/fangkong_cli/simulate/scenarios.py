"""The three scenarios. Each returns the region code whose figures the summary shows.

Numbers follow the speeches (seeds/000) at ``scale`` 1: a city of about a million
with two universities, positives from a handful to about a thousand in two weeks,
about twenty thousand close and secondary contacts, hotel rooms running short and
seven cities taking the overflow, sampling outrunning the labs, positives waiting
for a doctor to classify them.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, date, datetime, timedelta

from fangkong_cli.simulate import names
from fangkong_cli.simulate.client import SimulationError, wait_for
from fangkong_cli.simulate.idcard import IdFactory
from fangkong_cli.simulate.runner import Sim
from fangkong_cli.simulate.world import Person, Tube, World

DAY = timedelta(days=1)


def at_hour(day: datetime, hour: float) -> datetime:
    return day + timedelta(hours=hour)


def smallest_ratio(members: int) -> int:
    """The smallest allowed pool ratio (1, 5, 10, 20) that holds ``members`` swabs."""
    return next(r for r in (1, 5, 10, 20) if r >= members)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite gives UTC without the zone


async def settle_orders(world: World, reasons=("retest", "quarantine"), *, due: int = 0) -> None:
    """Test orders arrive from events: wait for them before anyone is swabbed.

    ``due``: the tests the daily job just said were due (its report). On a frozen clock each of their
    orders is stamped with this very instant, so the wait is for those exactly — a busy machine must
    not leave some of them to be swabbed a day late in one run and not in another (what-if runs
    compare runs). Then, for anything else on its way, until the counts stop moving (two quiet polls)."""
    sim = world.sim
    if due and sim.clock_controlled and sim.now is not None:
        stamp = sim.now

        async def arrived() -> bool:
            orders = await world.pending_orders("quarantine")
            stamped = sum(1 for o in orders if _instant(o["created_at"]) == stamp)
            return stamped >= due or len(orders) >= 10_000

        try:
            await wait_for(arrived, what=f"{due} quarantine test orders", timeout=30)
        except SimulationError:
            pass  # one test due twice the same day is one order: fewer can arrive; the quiet polls decide
    last = None
    for _ in range(40):
        counts = tuple([len(await world.pending_orders(r)) for r in reasons])
        if counts == last:
            return
        last = counts
        await asyncio.sleep(0.15)


# --- school outbreak ---------------------------------------------------------------

# New positives found by campus screening per day (scale 1): a handful to about a thousand.
CAMPUS_CURVE = [3, 5, 9, 15, 23, 35, 51, 72, 95, 116, 132, 146, 154, 160]
UNIVERSITIES = [
    # id, name, county, students, lat, lon, sampling sites
    ("szu", "深圳大学", "440305", 30_000, 22.533, 113.936, 4),
    ("cuhksz", "香港中文大学（深圳）", "440307", 20_000, 22.690, 114.207, 3),
]


async def school_outbreak(sim: Sim) -> str:
    rng, world = sim.rng, World(sim)
    days = len(CAMPUS_CURVE)
    start = sim.start_moment(days)
    sim.truth.add("scenario", start, scenario="school-outbreak", seed=sim.options.seed, scale=sim.options.scale,
                  days=days, city=names.OUTBREAK_CITY)
    await sim.at(at_hour(start, -2))
    tick = sim.task("准备：隔离点、医院、采样点、实验室 (sites and labs)", 5)
    city = sim.region = names.OUTBREAK_CITY
    counties = list(names.OUTBREAK_COUNTIES)
    setup = start - timedelta(hours=2)
    rooms = sim.options.lever("rooms")
    beds = sim.options.lever("beds")
    for i in range(12):
        county = counties[i % len(counties)]
        await world.quarantine_site(setup, f"sz-hotel-{i + 1:02d}", f"{names.OUTBREAK_COUNTIES[county]}隔离酒店{i + 1}号",
                                    "hotel", county, sim.scaled(500 * rooms))
    tick()
    supporting = list(names.SUPPORTING_CITIES.items())[:sim.options.count("supporting_cities", 7)]
    for code, name in supporting:
        await world.quarantine_site(setup, f"support-{code}", f"{name}支援隔离酒店", "hotel", code,
                                    sim.scaled(1300 * rooms), supporting=[city])
    tick()
    await world.quarantine_site(setup, "sz-hospital-3", "深圳市第三人民医院（定点医院）", "hospital", "440307",
                                sim.scaled(120 * beds))
    await world.quarantine_site(setup, "sz-hospital-pku", "北京大学深圳医院（定点医院）", "hospital", "440304",
                                sim.scaled(120 * beds))
    await world.quarantine_site(setup, "sz-fangcang-1", "深圳国际会展中心方舱医院", "fangcang", "440306",
                                sim.scaled(200 * beds))
    tick()
    campus_sites: dict[str, list[str]] = {}
    for uid, uname, county, _n, lat, lon, n_sites in UNIVERSITIES:
        campus_sites[uid] = [await world.testing_site(setup, f"{uname}采样点{k + 1}", county, lat + k * 0.002, lon,
                                                      swabs_per_hour=sim.scaled(600), ratio=10)
                             for k in range(n_sites)]
    quarantine_site = await world.testing_site(setup, "隔离医学观察点核酸采样队", "440304", 22.541, 114.055,
                                               swabs_per_hour=sim.scaled(400), ratio=1)
    tick()
    lab_capacity = sim.scaled(3600 * sim.options.lever("labs"))
    # Campus screening pools (混采): 10-in-1 as the speeches' cities did; a what-if may try 5 or 20.
    ratio = sim.options.count("pool_ratio", 10)
    if ratio not in (1, 5, 10, 20):
        raise ValueError(f"pool ratio must be 1, 5, 10 or 20, not {ratio}")
    for k, (county, lat, lon) in enumerate([("440304", 22.54, 114.06), ("440305", 22.53, 113.93),
                                            ("440306", 22.56, 113.88), ("440307", 22.72, 114.25)]):
        await world.lab(setup, f"深圳市核酸检测实验室{k + 1}", county, lat, lon, max(1, lab_capacity // 4))
    lab_capacity = sum(lab.tubes_per_day for lab in world.labs)
    tick()

    # The students, and the pool of people contacts are drawn from (not students).
    students: dict[str, list[Person]] = {}
    for u, (uid, _uname, county, n, *_rest) in enumerate(UNIVERSITIES):
        ids = IdFactory([county], first_birth=date(2000, 1, 1), days=5 * 365, salt=u * 7)
        students[uid] = [Person(ids(i), names.person_name(rng), county, grid=f"{uid}-{i // 500 + 1}栋")
                         for i in range(sim.scaled(n, minimum=20))]
    contact_ids = IdFactory(counties, first_birth=date(1950, 1, 1), days=65 * 365, salt=500)
    out_of_town = list(names.SUPPORTING_CITIES)
    made = {"contacts": 0}

    def new_person(home: str, rng: random.Random) -> Person:
        i = made["contacts"]
        made["contacts"] += 1
        region = home if rng.random() < 0.6 else rng.choice(counties)
        if rng.random() < 0.03:  # lives in another city: traced across regions (协查)
            region = rng.choice(out_of_town)[:4] + "02"
        return Person(contact_ids(i), names.person_name(rng), region)

    targets = [max(1, round(sum(CAMPUS_CURVE[:d + 1]) * sim.options.scale)) for d in range(days)]
    targets = [t - (targets[d - 1] if d else 0) for d, t in enumerate(targets)]
    traced_positives: list[Person] = []
    days_bar = sim.task("疫情推演 (outbreak, days)", days)
    for d in range(days):
        day = start + d * DAY
        # 00:30 the quarantine's daily job: releases, stage moves, tests due, waiting positives to beds.
        await sim.at(at_hour(day, 0.5))
        async with sim.timed("scheduler"):
            report = await world.scheduler(sim.now)
            await settle_orders(world, due=report["tests_due"])
        # 08:00 a fangcang opens when beds run short; sampling: one campus screened (10-in-1), and every
        # person the platform asks a test of (quarantine tests, retests of yesterday's late pools).
        await sim.at(at_hour(day, 8))
        if d == days - 4:
            await world.quarantine_site(sim.now, "dg-fangcang-support", "东莞市支援方舱医院", "fangcang", "441900",
                                        sim.scaled(500 * beds), supporting=[city])
        uid, uname, *_ = UNIVERSITIES[d % 2]
        campus = [s for s in students[uid] if s.positive_at is None]
        # Who falls ill on campus each day, and (below) each case's contacts, come from their own seeded
        # streams: a what-if that finds positives sooner or later plays the same outbreak, not another.
        infected = random.Random(f"{sim.options.seed}:campus:{d}").sample(
                              [s for s in campus if s.detectable_from is None],
                              min(targets[d], len([s for s in campus if s.detectable_from is None])))
        for person in infected:
            person.detectable_from = sim.now - DAY
            sim.truth.add("infected", person.detectable_from, person=person.id_number, region_code=person.region_code,
                          source="campus")
        sites = campus_sites[uid]
        pools = [Tube(world.next_barcode(f"{uid.upper()}-"), sites[(k // ratio) % len(sites)],
                      smallest_ratio(len(campus[k:k + ratio])),
                      campus[k:k + ratio], sim.now, 2, [p.id_number for p in campus[k:k + ratio]])
                 for k in range(0, len(campus), ratio)]
        async with sim.timed("swab"):
            await world.swab(pools, sim.now)
            await world.swab_orders(sim.now, lambda _p, _o: quarantine_site)
        # 13:00 and 21:00 the labs work through their queue (retests first, then in order of collection).
        await sim.at(at_hour(day, 13))
        async with sim.timed("labs"):
            await world.run_labs(sim.now, lab_capacity // 2)
        await sim.at(at_hour(day, 17))
        async with sim.timed("swab"):
            await world.swab_orders(sim.now, lambda p, o, sites=sites: sites[0], reasons=("retest",))
        await sim.at(at_hour(day, 21))
        async with sim.timed("labs"):
            await world.run_labs(sim.now, lab_capacity - lab_capacity // 2)
        # 21:30 the survey teams register the new positives' close contacts, then theirs (次密接).
        await sim.at(at_hour(day, 21.5))
        new = [p for p in world.positives if not p.traced]
        firsts: list[tuple[Person, Person, str]] = []
        for case in new:
            case.traced = True
            traced_positives.append(case)
            rng = random.Random(f"{sim.options.seed}:case:{case.id_number}")
            n_close = rng.randint(7, 13) if case.contact_degree is None else rng.randint(0, 2)
            for _ in range(n_close):
                contact = new_person(case.region_code, rng)
                contact.exposure_at = sim.now - timedelta(hours=rng.randint(12, 72))
                if rng.random() < 0.04:
                    contact.detectable_from = contact.exposure_at + 3 * DAY
                    sim.truth.add("infected", contact.detectable_from, person=contact.id_number,
                                  region_code=contact.region_code, source="contact")
                firsts.append((contact, case, rng.choice(["school", "school", "household", "gathering", "transport"])
                               if case.contact_degree is None else "household"))
        async with sim.timed("contacts"):
            await world.add_contacts(firsts, sim.now, 1)
        seconds: list[tuple[Person, Person, str]] = []
        for contact, case, _setting in firsts:
            if case.contact_degree is not None:
                continue
            rng = random.Random(f"{sim.options.seed}:contact:{contact.id_number}")
            for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 3])):
                other = new_person(contact.region_code, rng)
                other.exposure_at = min(sim.now - timedelta(hours=1),
                                        contact.exposure_at + timedelta(hours=rng.randint(1, 24)))
                seconds.append((other, contact, rng.choice(["household", "workplace", "community"])))
        async with sim.timed("contacts"):
            await world.add_contacts(seconds, sim.now, 2)
        async with sim.timed("orders"):
            await world.await_orders(len(world.contacts))
        # 22:30 the medical institutions classify what they can (some positives keep waiting).
        await sim.at(at_hour(day, 22.5))
        async with sim.timed("classify"):
            await world.classify(sim.now, sim.scaled((20 + 6 * d) * sim.options.lever("doctors")))
        days_bar()
    sim.figures.update(students=sum(len(v) for v in students.values()), labs_tubes_per_day=lab_capacity,
                       backlog_left=len(world.queue))
    sim.report_day = (start + (days - 1) * DAY).date()
    await sim.at(at_hour(start + days * DAY, 0.25))
    await world.scheduler(sim.now)
    async with sim.timed("dashboard"):
        await await_dashboard(sim, world, city)
    return city


async def await_dashboard(sim: Sim, world: World, region: str | None) -> None:
    """The read models have seen everything (positives, contacts): the summary then reads them."""
    want_positives = len(world.positives)
    want_contacts = len(world.contacts)
    # Every returnee the policy manages (all but travel within the province) is under an order by now;
    # the last day's orders may still be on their way to the read models.
    want_managed = sum(n for name, n in sim.figures.items()
                       if name.startswith("returnees_") and name != "returnees_local")

    async def check() -> bool:
        params = {"region_code": region[:2] + "0000"} if region else {}
        board = await sim.api.call("dashboard", "GET", "/dashboard/kpis", params=params)
        head = board["headline"]
        managed = next((k["numerator"] for k in board["kpis"] if k["name"] == "managed"), 0)
        return head["positives"] >= want_positives and head["contacts"] >= want_contacts and managed >= want_managed

    await sim.settle(f"the dashboard to count {want_positives} positives, {want_contacts} contacts and "
                     f"{want_managed} returnees under management", check)


# --- spring festival -------------------------------------------------------------------


async def spring_festival(sim: Sim) -> str:
    rng, world = sim.rng, World(sim)
    days = 12
    start = sim.start_moment(days)
    sim.truth.add("scenario", start, scenario="spring-festival", seed=sim.options.seed, scale=sim.options.scale,
                  days=days, city=names.HOME_CITY)
    setup = start - timedelta(hours=2)
    await sim.at(setup)
    city, counties = names.HOME_CITY, list(names.HOME_COUNTIES)
    sim.region = city
    tick = sim.task("准备 (sites and labs)", 3)
    rooms, beds = sim.options.lever("rooms"), sim.options.lever("beds")
    await world.quarantine_site(setup, "zz-port-1", "新郑国际机场口岸隔离酒店", "port", names.HOME_PORT,
                                sim.scaled(400 * rooms))
    for i, county in enumerate(counties[:5]):
        await world.quarantine_site(setup, f"zz-hotel-{i + 1}", f"{names.HOME_COUNTIES[county]}市级隔离酒店", "hotel",
                                    county, sim.scaled(150 * rooms))
    await world.quarantine_site(setup, "zz-hospital-6", "郑州市第六人民医院（定点医院）", "hospital", "410105",
                                sim.scaled(60 * beds))
    tick()
    site = await world.testing_site(setup, "返乡人员核酸采样点", "410105", 34.76, 113.68, sim.scaled(300), ratio=1)
    tick()
    await world.lab(setup, "郑州市疾控中心实验室", "410105", 34.77, 113.70, sim.scaled(2000 * sim.options.lever("labs")))
    lab_capacity = sum(lab.tubes_per_day for lab in world.labs)
    tick()
    total = sim.scaled(3000, minimum=30)
    # Arrivals rise towards the festival (day 8) and fall after it.
    weights = [1 + min(d, 8) * 0.6 - max(0, d - 8) * 1.2 for d in range(days)]
    per_day = [round(total * w / sum(weights)) for w in weights]
    ids = IdFactory(counties, first_birth=date(1960, 1, 1), days=45 * 365, salt=321)
    risk_day = days // 2
    risk_county, risk_name = "330106", "浙江省杭州市西湖区"
    returnees: list[tuple[Person, dict]] = []
    declared = None
    bar = sim.task("返乡潮 (returnees, days)", days)
    n = 0
    for d in range(days):
        day = start + d * DAY
        await sim.at(at_hour(day, 0.5))
        report = await world.scheduler(sim.now)
        await settle_orders(world, due=report["tests_due"])
        await sim.at(at_hour(day, 8))
        await world.swab_orders(sim.now, lambda _p, _o: site)
        if d == risk_day:
            # A new medium/high-risk area, declared mid-wave: everyone whose stays touch it in
            # the 14-day look-back is flagged at once (及时锁定重点对象).
            body = {"region_code": risk_county, "name": risk_name, "level": "high",
                    "effective_from": day.date().isoformat(), "lookback_days": 14}
            declared = await sim.api.call("registry", "POST", "/registry/risk-areas", json=body, records=1)
            window_start = day.date() - timedelta(days=14)
            expected = [p.id_number for p, t in returnees
                        if any(s.get("region_code") == risk_county and date.fromisoformat(s["to"]) >= window_start
                               for s in t["places"])]
            sim.truth.add("risk_area", sim.now, region_code=risk_county, level="high", lookback_days=14,
                          flagged=sorted(expected))
            sim.figures["risk_flagged_expected"] = len(expected)
            sim.figures["risk_flagged_platform"] = declared["flagged_count"]
        # 10:00–20:00 returnees register and report their travel (one by one, as they arrive).
        await sim.at(at_hour(day, 10))
        batch: list[tuple[Person, dict]] = []
        for _ in range(per_day[d]):
            person = Person(ids(n), names.person_name(rng), rng.choice(counties))
            n += 1
            arrival = day.date()
            if rng.random() < 0.15:
                country = names.weighted(rng, names.COUNTRIES)[0]
                if rng.random() < 0.5:
                    port, place = rng.choice(names.OTHER_PORTS)
                    travel = {"origin_kind": "international", "origin_country": country, "arrival_date": iso_d(arrival),
                              "port_of_entry": port, "served_quarantine_days": 14, "served_quarantine_place": place,
                              "transport": {"kind": "flight", "number": f"MU{rng.randint(1000, 9999)}"},
                              "places": [{"country": country, "from": iso_d(arrival - timedelta(days=200)),
                                          "to": iso_d(arrival - timedelta(days=15))},
                                         {"region_code": port, "from": iso_d(arrival - timedelta(days=14)),
                                          "to": iso_d(arrival)}]}
                else:
                    travel = {"origin_kind": "international", "origin_country": country, "arrival_date": iso_d(arrival),
                              "port_of_entry": names.HOME_PORT,
                              "transport": {"kind": "flight", "number": f"CZ{rng.randint(1000, 9999)}"},
                              "places": [{"country": country, "from": iso_d(arrival - timedelta(days=120)),
                                          "to": iso_d(arrival)}]}
            else:
                county, _label, _w = names.weighted(rng, names.ORIGINS)
                stay_to = arrival - timedelta(days=rng.randint(0, 1))
                travel = {"origin_kind": "domestic", "origin_region_code": county, "arrival_date": iso_d(arrival),
                          "transport": {"kind": rng.choice(["train", "coach", "car", "flight"]),
                                        "number": f"G{rng.randint(100, 9999)}"},
                          "places": [{"region_code": county, "from": iso_d(arrival - timedelta(days=rng.randint(30, 300))),
                                      "to": iso_d(stay_to)}]}
            if rng.random() < 0.004:
                person.detectable_from = sim.now - 2 * DAY
                sim.truth.add("infected", person.detectable_from, person=person.id_number,
                              region_code=person.region_code, source="returnee")
            batch.append((person, travel))
        await world.register([p for p, _ in batch], sim.now)

        async def report(person: Person, travel: dict) -> str:
            out = await sim.api.call("registry", "POST", f"/registry/persons/{person.key}/travel", json=travel,
                                     records=1)
            return out["category"]

        orders_before = await world.orders_total()
        async with sim.timed("returnees"):
            categories = await sim.api.gather(report(p, t) for p, t in batch)
        # Each report is one order, made on the day it was reported: wait for them before the clock moves on.
        async with sim.timed("orders"):
            await world.await_orders(orders_before + len(batch))
        for (person, travel), category in zip(batch, categories, strict=True):
            sim.truth.add("returned", sim.now, person=person.id_number, region_code=person.region_code,
                          category=category, origin=travel.get("origin_country") or travel.get("origin_region_code"),
                          arrival_date=travel["arrival_date"], port_of_entry=travel.get("port_of_entry"),
                          served_quarantine_days=travel.get("served_quarantine_days", 0))
            sim.figures[f"returnees_{category}"] = sim.figures.get(f"returnees_{category}", 0) + 1
        returnees.extend(batch)
        await sim.at(at_hour(day, 21))
        await world.run_labs(sim.now, lab_capacity)
        await sim.at(at_hour(day, 22))
        await world.classify(sim.now, sim.scaled(10 * sim.options.lever("doctors")))
        bar()
    sim.figures["returnees"] = len(returnees)
    sim.report_day = (start + (days - 1) * DAY).date()
    await sim.at(at_hour(start + days * DAY, 0.25))
    await world.scheduler(sim.now)
    await await_dashboard(sim, world, city)

    async def returnees_counted() -> bool:
        board = await sim.api.call("dashboard", "GET", "/dashboard/kpis", params={"region_code": city})
        return board["headline"]["returnees"] >= len(returnees) - sim.figures.get("returnees_local", 0)

    await sim.settle("the dashboard to count every returnee", returnees_counted)
    return city


def iso_d(day: date) -> str:
    return day.isoformat()


# --- mass screening ----------------------------------------------------------------------


async def mass_screening(sim: Sim) -> str:
    rng, world = sim.rng, World(sim)
    people = max(10, sim.options.people if sim.options.scale == 1 else round(sim.options.people * sim.options.scale))
    start = sim.start_moment(2)  # the round and the night of the labs end before the present
    sim.truth.add("scenario", start, scenario="mass-screening", seed=sim.options.seed, people=people,
                  prevalence=sim.options.prevalence, city=names.SCREENING_CITY)
    city, counties = names.SCREENING_CITY, list(names.SCREENING_COUNTIES)
    sim.region = city
    setup = start + timedelta(hours=6)
    await sim.at(setup)
    n_sites = max(2, people // 30_000)
    n_labs = max(1, people // 250_000)
    tick = sim.task("准备 (sites and labs)", n_sites + n_labs + 1)
    await world.quarantine_site(setup, "wh-hospital-jyt", "武汉市金银潭医院（定点医院）", "hospital", "420112",
                                max(1, round(max(10, people // 2000) * sim.options.lever("beds"))))
    tick()
    site_ids = []
    for k in range(n_sites):
        county = counties[k % len(counties)]
        site_ids.append(await world.testing_site(setup, f"{names.SCREENING_COUNTIES[county]}全员核酸采样点{k + 1}", county,
                                                 30.5 + (k % 20) * 0.01, 114.2 + (k // 20) * 0.01,
                                                 swabs_per_hour=max(10, people // n_sites // 12)))
        tick()
    # Labs sized to test the round's tubes within about a day.
    per_lab = max(1, round(max(100, round(people / 10 / n_labs * 1.1)) * sim.options.lever("labs")))
    for k in range(n_labs):
        await world.lab(setup, f"武汉市第{k + 1}检测实验室", counties[k % len(counties)], 30.55, 114.3 + k * 0.01, per_lab)
        tick()
    ids = IdFactory(counties, first_birth=date(1940, 1, 1), days=80 * 365, salt=sim.options.seed)
    # 08:00–20:00: everyone swabbed once, 10 to a tube (a what-if may pool 5 or 20), hour by hour.
    ratio = sim.options.count("pool_ratio", 10)
    if ratio not in (1, 5, 10, 20):
        raise ValueError(f"pool ratio must be 1, 5, 10 or 20, not {ratio}")
    hours = 12
    per_hour = -(-people // (hours * ratio)) * ratio  # whole pools each hour
    prevalence = sim.options.prevalence
    bar = sim.task("全员核酸 (people swabbed)", people)
    day = start
    index = 0
    infected_people = 0
    for h in range(hours):
        if index >= people:
            break
        await sim.at(at_hour(day, 8 + h))
        tubes: list[Tube] = []
        end = min(people, index + per_hour)
        while index < end:
            members = []
            for i in range(index, min(end, index + ratio)):
                person = Person(ids(i), "", counties[i % len(counties)])
                if rng.random() < prevalence:
                    person.detectable_from = sim.now - 3 * DAY
                    person.name = names.person_name(rng)
                    infected_people += 1
                    sim.truth.add("infected", person.detectable_from, person=person.id_number,
                                  region_code=person.region_code, source="community")
                members.append(person)
            index += len(members)
            tubes.append(Tube(world.next_barcode("MS"), site_ids[(index // ratio) % len(site_ids)],
                              smallest_ratio(len(members)), members, sim.now, 2, [p.id_number for p in members]))
        async with sim.timed("swab"):
            await world.swab(tubes, sim.now, round_=f"全员核酸-{day.date().isoformat()}")
        bar(sum(len(t.members) for t in tubes))
    sim.figures["people"] = people
    sim.figures["infected"] = infected_people
    # The labs test through the night; positive pools are re-swabbed alone the next morning.
    capacity = sum(lab.tubes_per_day for lab in world.labs)
    labs_bar = sim.task("检测 (lab runs)", 4)
    await sim.at(at_hour(day, 23))
    await world.run_labs(sim.now, capacity // 2)
    labs_bar()
    await sim.at(at_hour(day, 30))
    await world.run_labs(sim.now, capacity - capacity // 2)
    labs_bar()
    await sim.at(at_hour(day, 31))
    await world.swab_orders(sim.now, lambda _p, o: site_ids[0], reasons=("retest",))
    labs_bar()
    await sim.at(at_hour(day, 37))
    await world.run_labs(sim.now, capacity)
    labs_bar()
    sim.figures["pools_positive"] = sum(1 for r in sim.truth.of("resulted")
                                        if r["result"] == "positive" and r["barcode"].startswith("MS"))
    await await_dashboard(sim, world, city)
    return city
