"""Quarantine figures: orders planned per second for 100,000 returnees, and placing 20,000
contacts into the sites of seven cities (跨市支援), and the daily job over all those orders, in one run.

    .venv/bin/python bench/quarantine_throughput.py [--returnees 100000] [--contacts 20000]
        [--backends sqlite,postgres] [--database-url postgresql+asyncpg://…] [--json out.json]

Rows: (1) the pure planning function alone; (2) orders opened through the service's use case
(plan + dedupe against active orders + order, test and change rows + quarantine.ordered in the
outbox), in transactions of 500 as the batch consumer runs it; (3) pure placement of the
contacts; (4) the contacts opened as orders with their rooms taken, on the database; (5) the
daily job (run_daily) over every order, twice a day: two days on (tests due, nobody checked in
yesterday: a missed check-in alert and a test each) and on the day the contacts leave their
rooms for home monitoring (stage moves, rooms freed, transfers). The run exits non-zero if a site is over capacity, a contact is placed twice, or the home city is not
filled before the supporting cities.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _components  # noqa: E402

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from fangkong_common.db import Database  # noqa: E402
from fangkong_common.migrations import upgrade  # noqa: E402
from fangkong_common.outbox import OutboxMessage  # noqa: E402
from quarantine import service  # noqa: E402
from quarantine.domain.placement import SiteSlot, place_many  # noqa: E402
from quarantine.domain.planning import Facts, plan  # noqa: E402
from quarantine.main import MIGRATIONS  # noqa: E402
from quarantine.models import Order, Placement, Site  # noqa: E402

TODAY = date(2026, 6, 26)
HOME_CITY = "430100"
HELPERS = ["430200", "430300", "430400", "430500", "430600", "430700", "430800"]
HOME_ROOMS = 3_000  # hotels of the home city: 20 × 150
HELPER_HOTELS, HELPER_ROOMS = 20, 130  # per supporting city: 7 × 20 × 130 = 18,200
BATCH = 500


def returnee_facts(n: int, rng: random.Random) -> list[tuple[str, Facts]]:
    out = []
    for i in range(n):
        draw = rng.random()
        arrival = TODAY - timedelta(days=rng.randint(0, 2))
        if draw < 0.10:
            facts = Facts("inbound_international", TODAY, arrival_date=arrival)
        elif draw < 0.15:
            facts = Facts("inbound_port_completed_elsewhere", TODAY, arrival_date=arrival,
                          served_days=rng.randint(7, 14))
        elif draw < 0.50:
            facts = Facts("domestic_key_region", TODAY, arrival_date=arrival)
        else:
            facts = Facts("domestic_other", TODAY, arrival_date=arrival)
        out.append((f"{i:064x}", facts))
    return out


def sites() -> list[dict]:
    rows = [{"id": f"home-{k:02d}", "name": f"本市酒店{k}", "kind": "hotel", "region_code": f"4301{k % 9 + 1:02d}",
             "capacity": HOME_ROOMS // 20, "supporting_regions": []} for k in range(20)]
    for city in HELPERS:
        rows += [{"id": f"{city}-{k:02d}", "name": f"支援酒店{city}-{k}", "kind": "hotel",
                  "region_code": f"{city[:4]}{k % 9 + 1:02d}", "capacity": HELPER_ROOMS,
                  "supporting_regions": [HOME_CITY]} for k in range(HELPER_HOTELS)]
    return rows


def pure(returnees: int, contacts: int) -> dict:
    policy = service.PACKAGED[0]
    facts = returnee_facts(returnees, random.Random(1))
    started = time.perf_counter()
    for _, f in facts:
        plan(policy, f)
    planning = time.perf_counter() - started
    slots = [SiteSlot(s["id"], s["kind"], s["region_code"], s["capacity"], 0, tuple(s["supporting_regions"]))
             for s in sites()]
    people = [(f"4301{i % 9 + 1:02d}", ("hotel",)) for i in range(contacts)]
    started = time.perf_counter()
    chosen = place_many(slots, people)
    placing = time.perf_counter() - started
    check_placement([c.site_id if c else None for c in chosen], {s.site_id: s.capacity for s in slots})
    return {"plan_s": planning, "place_s": placing}


def check_placement(site_ids: list[str | None], capacity: dict[str, int]) -> None:
    counts: dict[str, int] = {}
    for sid in site_ids:
        if sid is not None:
            counts[sid] = counts.get(sid, 0) + 1
    over = {sid: n for sid, n in counts.items() if n > capacity[sid]}
    if over:
        raise SystemExit(f"sites over capacity: {over}")
    home_used = sum(n for sid, n in counts.items() if sid.startswith("home-"))
    helpers_used = sum(n for sid, n in counts.items() if not sid.startswith("home-"))
    if helpers_used and home_used < HOME_ROOMS:
        raise SystemExit(f"supporting cities used ({helpers_used}) before the home city was full ({home_used})")


async def on_database(url: str, returnees: int, contacts: int) -> dict:
    database = Database(url)
    await upgrade(database.engine, MIGRATIONS)
    instant = datetime(2026, 6, 26, 4, tzinfo=UTC)
    figures: dict[str, float | int | str] = {}
    async with database.engine.connect() as conn:
        figures["server"] = (await conn.execute(text(
            "SHOW server_version" if database.engine.dialect.name == "postgresql" else "SELECT sqlite_version()"
        ))).scalar()
    try:
        requests = [service.OrderRequest(person_key=key, region_code="430102", cause=f"returned:{f.category}",
                                         facts=f) for key, f in returnee_facts(returnees, random.Random(2))]
        started = time.perf_counter()
        opened = 0
        for start in range(0, len(requests), BATCH):
            async with database.sessionmaker() as session, session.begin():
                opened += len(await service.open_orders(session, requests[start:start + BATCH], instant))
        figures["returnees_s"] = time.perf_counter() - started
        figures["returnee_orders"] = opened

        async with database.sessionmaker() as session, session.begin():
            for s in sites():
                await service.create_site(session, site_id=s["id"], name=s["name"], kind=s["kind"],
                                          region_code=s["region_code"], capacity=s["capacity"],
                                          supporting_regions=s["supporting_regions"])
        contact_requests = [service.OrderRequest(
            person_key=f"c{i:063x}", region_code=f"4301{i % 9 + 1:02d}", cause="contact_degree_1",
            facts=Facts("contact_degree_1", TODAY, exposure_date=TODAY - timedelta(days=1)))
            for i in range(contacts)]
        started = time.perf_counter()
        for start in range(0, len(contact_requests), BATCH):
            async with database.sessionmaker() as session, session.begin():
                await service.open_orders(session, contact_requests[start:start + BATCH], instant)
        figures["contacts_s"] = time.perf_counter() - started
        async with database.sessionmaker() as session:
            placed = (await session.execute(select(Placement.site_id, Placement.person_key))).all()
            capacity = dict((await session.execute(select(Site.id, Site.capacity))).all())
            occupancy = dict((await session.execute(select(Site.id, Site.occupancy))).all())
            figures["outbox_rows"] = await session.scalar(select(func.count()).select_from(OutboxMessage))
            figures["awaiting"] = await session.scalar(select(func.count()).select_from(Order).where(
                Order.cause == "contact_degree_1", Order.awaiting_site.is_(True)))
        if len({p.person_key for p in placed}) != len(placed):
            raise SystemExit("a contact was placed twice")
        check_placement([p.site_id for p in placed], capacity)
        per_site = {}
        for p in placed:
            per_site[p.site_id] = per_site.get(p.site_id, 0) + 1
        if any(per_site.get(sid, 0) != occ for sid, occ in occupancy.items()):
            raise SystemExit("site occupancy disagrees with the placements")
        figures["placed"] = len(placed)
        figures["placed_home"] = sum(1 for p in placed if p.site_id.startswith("home-"))
        figures["capacity_low_events"] = await _count_topic(database, "site.capacity_low")
        figures["daily"] = await daily_job(database)
    finally:
        await database.dispose()
    return figures


async def daily_job(database: Database) -> list[dict]:
    """run_daily as the scheduler runs it, twice on each day (the second run must change nothing)."""
    out = []
    for day in (TODAY + timedelta(days=2), TODAY + timedelta(days=14)):
        for attempt in (1, 2):
            started = time.perf_counter()
            async with database.sessionmaker() as session, session.begin():
                result = await service.run_daily(session, datetime.combine(day, datetime.min.time(), tzinfo=UTC))
            out.append({"day": day.isoformat(), "attempt": attempt, "s": time.perf_counter() - started,
                        **{k: v for k, v in vars(result).items() if k != "day"}})
        if any(v for k, v in out[-1].items() if k not in ("day", "attempt", "s")):
            raise SystemExit(f"the second daily run on {day} changed something: {out[-1]}")
    return out


async def _count_topic(database: Database, topic: str) -> int:
    async with database.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.topic == topic))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--returnees", type=int, default=100_000)
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--database-url", help="postgresql+asyncpg://… (default: start a throw-away server)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result: dict = {"returnees": args.returnees, "contacts": args.contacts, "cpus": os.cpu_count(),
                    "pure": pure(args.returnees, args.contacts), "databases": {}}
    backends = args.backends.split(",")
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="bench-q-") as directory:
            url = f"sqlite+aiosqlite:///{directory}/q.db"
            result["databases"]["sqlite"] = asyncio.run(on_database(url, args.returnees, args.contacts))
    if "postgres" in backends:
        with _components.postgres(args.database_url) as url:
            result["databases"]["postgres"] = asyncio.run(on_database(url, args.returnees, args.contacts))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


def report(result: dict) -> None:
    r, c = result["returnees"], result["contacts"]
    table = Table(title=f"quarantine: {r:,} returnees, {c:,} contacts into 1 + 7 cities "
                        f"({HOME_ROOMS:,} home rooms, {len(HELPERS) * HELPER_HOTELS * HELPER_ROOMS:,} supporting; "
                        f"{result['cpus']} CPUs)")
    for column in ("what", "backend", "seconds", "per second", "notes"):
        table.add_column(column, justify="left" if column in ("what", "backend", "notes") else "right")
    p = result["pure"]
    table.add_row("plan() alone", "—", f"{p['plan_s']:.2f}", f"{r / p['plan_s']:,.0f}", "pure function")
    table.add_row("place_many() alone", "—", f"{p['place_s']:.2f}", f"{c / p['place_s']:,.0f}", "pure function")
    for name, f in result["databases"].items():
        table.add_row("returnee orders opened", f"{name} {f['server']}", f"{f['returnees_s']:.2f}",
                      f"{f['returnee_orders'] / f['returnees_s']:,.0f}",
                      f"{f['returnee_orders']:,} orders, batches of {BATCH}")
        table.add_row("contacts ordered + placed", f"{name} {f['server']}", f"{f['contacts_s']:.2f}",
                      f"{c / f['contacts_s']:,.0f}",
                      f"{f['placed']:,} placed ({f['placed_home']:,} home city), {f['awaiting']:,} waiting, "
                      f"{f['capacity_low_events']} capacity_low")
        for d in f.get("daily", []):
            table.add_row(f"daily job {d['day']} (run {d['attempt']})", f"{name} {f['server']}", f"{d['s']:.2f}", "",
                          f"{d['missed_checkins']:,} missed check-ins, {d['tests_due']:,} tests due, "
                          f"{d['stages_moved']:,} moved, {d['released']:,} released")
    Console().print(table)


if __name__ == "__main__":
    main()
