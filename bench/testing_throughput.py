"""Testing figures on the city-of-10M workload, in one run.

    .venv/bin/python bench/testing_throughput.py [--tubes 100000] [--prevalence 1e-3] [--backends sqlite,postgres]
        [--database-url postgresql+asyncpg://…] [--kafka] [--clients 4] [--batch 1000]
        [--plan-sites 1000 --plan-labs 200 --plan-slots 48] [--city-tubes 1000000] [--json out.json]

Rows:
(1) tube ingest end to end: POST /testing/tubes batches (ID numbers hashed to person
    keys, pooling and one-tube-per-round checks, tube + member rows, test.collected
    in the outbox) through the whole FastAPI stack (in-process ASGI, no socket), until
    the relay has published every event on the bus;
(2) result ingest end to end: POST /testing/results for every tube at the given
    prevalence (positive pools → test.pool_positive + k retest orders, negatives →
    test.negative), until published;
(3) positive pool → its k retest orders: the latency of the lab's POST that carries
    the pool (the orders commit in the same transaction as the answer), p50/p99, in
    bulk batches and one result per POST, each checked with GET /testing/orders;
(4) plan time: 1,000 sites × 200 labs × 48 half-hours, 8 nearest labs (goal ≤ 5 s);
(5) the city of 10M (330 sites, 40 labs of 10k–80k tubes/day, ~1M tubes mostly
    10-in-1) at prevalence 3e-5 / 1e-3 / 1e-2, and the stress case with half the lab
    capacity: tubes incl. retests, share resulted within 12 h / 24 h, backlog, plan time.

The run exits non-zero if an event is missing or duplicated, or a positive pool
has other than k retest orders. Timings on 2 shared cores are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _components  # noqa: E402

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from fangkong_common.auth import Role  # noqa: E402
from fangkong_common.outbox import OutboxMessage  # noqa: E402
from fangkong_common.testing import running  # noqa: E402
from testing.config import Settings  # noqa: E402
from testing.domain.plan import Cohort, PlanInput, PlanLab, PlanSite, solve_plan  # noqa: E402
from testing.domain.pooling import dorfman_tests_per_person  # noqa: E402
from testing.main import create_app  # noqa: E402

REGION = "440300"
START = datetime(2026, 4, 4, 0, 0, tzinfo=UTC)  # 08:00 in the city


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- (1)–(3): ingest through the service ---------------------------------------------


async def _post_all(client, path: str, key: str, batches: list[list[dict]], headers: dict, clients: int,
                    latencies: list[float]) -> None:
    queue = list(enumerate(batches))
    queue.reverse()

    async def worker() -> None:
        while queue:
            _, batch = queue.pop()
            started = time.perf_counter()
            r = await client.post(path, json={key: batch}, headers=headers)
            latencies.append(time.perf_counter() - started)
            if r.status_code >= 300:
                raise SystemExit(f"{path}: {r.status_code} {r.text[:500]}")

    await asyncio.gather(*(worker() for _ in range(clients)))


async def _drain(app, expected: int, timeout: float = 600) -> float:
    """Seconds until the outbox holds no unpublished event (and holds ``expected`` in all)."""
    database = app.state.database
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with database.sessionmaker() as s:
            pending = await s.scalar(select(func.count()).select_from(OutboxMessage)
                                     .where(OutboxMessage.published_at.is_(None)))
        if pending == 0:
            return time.perf_counter()
        await asyncio.sleep(0.05)
    raise SystemExit("outbox not drained in time")


async def ingest(database_url: str, bus_url: str, args, console: Console) -> dict:
    rng = random.Random(args.seed)
    settings = Settings(database_url=database_url, bus_url=bus_url, outbox_batch_size=2000,
                        outbox_poll_seconds=0.05, log_level="WARNING")
    seen_events: dict[str, int] = {}

    async def observe(envelopes):
        for e in envelopes:
            seen_events[e.type] = seen_events.get(e.type, 0) + 1

    async with running(create_app(settings)) as h:
        sub = await h.bus.subscribe(["test.collected", "test.pool_positive", "test.negative", "test.positive"],
                                    f"bench-{uuid.uuid4().hex[:6]}", observe, max_batch=5000)
        commander = h.headers(Role.commander, regions=[REGION])
        site_ids, lab_ids = [], []
        for i in range(args.sites):
            r = await h.client.post("/testing/sites", headers=commander, json={
                "name": f"采样点{i}", "region_code": "440305", "latitude": 22.5 + rng.random() * 0.2,
                "longitude": 113.9 + rng.random() * 0.3, "swabs_per_hour": 600})
            site_ids.append(r.json()["id"])
        for j in range(args.labs):
            r = await h.client.post("/testing/labs", headers=commander, json={
                "name": f"实验室{j}", "region_code": "440305", "latitude": 22.5 + rng.random() * 0.2,
                "longitude": 113.9 + rng.random() * 0.3, "tubes_per_day": rng.randint(10_000, 80_000),
                "reagent_stock": 1_000_000})
            lab_ids.append(r.json()["id"])
        staff = h.headers(Role.site_staff, regions=[REGION], sites=site_ids)
        lab = h.headers(Role.lab, regions=[REGION], sites=lab_ids)

        # ~95% of tubes 10-in-1, the rest singles (quarantined people): people ≈ 9.55 × tubes
        tubes, positive_pools, positive_singles = [], set(), set()
        person = 0
        collected_at = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        for n in range(args.tubes):
            ratio = 1 if rng.random() < 0.05 else 10
            members = [f"44030519{person + m:010d}" for m in range(ratio)]
            person += ratio
            barcode = f"B{n:09d}"
            infected = any(rng.random() < args.prevalence for _ in range(ratio))
            if infected:
                (positive_pools if ratio > 1 else positive_singles).add(barcode)
            tubes.append({"barcode": barcode, "ratio": ratio, "members": members,
                          "site_id": site_ids[n % len(site_ids)], "collected_at": collected_at})
        batches = [tubes[i:i + args.batch] for i in range(0, len(tubes), args.batch)]
        console.print(f"  {len(tubes):,} tubes, {person:,} people, {len(positive_pools)} positive pools")

        tube_lat: list[float] = []
        t0 = time.perf_counter()
        await _post_all(h.client, "/testing/tubes", "tubes", batches, staff, args.clients, tube_lat)
        t_posted = time.perf_counter()
        t_done = await _drain(h.app, len(tubes))

        # Results: bulk batches, then some positive pools one per POST.
        solo = set(sorted(positive_pools)[: min(args.solo, len(positive_pools) // 2)])
        results = [{"barcode": t["barcode"], "lab_id": lab_ids[i % len(lab_ids)],
                    "result": "positive" if t["barcode"] in positive_pools or t["barcode"] in positive_singles
                    else "negative", "tested_at": datetime.now(UTC).isoformat()}
                   for i, t in enumerate(tubes) if t["barcode"] not in solo]
        rbatches = [results[i:i + args.result_batch] for i in range(0, len(results), args.result_batch)]
        res_lat: list[float] = []
        positive_batch_lat: list[float] = []
        r0 = time.perf_counter()
        # Latency of each batch that carries positive pools: its orders commit with the answer.
        queue = list(rbatches)
        queue.reverse()

        async def worker() -> None:
            while queue:
                batch = queue.pop()
                started = time.perf_counter()
                r = await h.client.post("/testing/results", json={"results": batch}, headers=lab)
                elapsed = time.perf_counter() - started
                if r.status_code != 200:
                    raise SystemExit(f"results: {r.status_code} {r.text[:500]}")
                res_lat.append(elapsed)
                carried = sum(1 for x in batch if x["barcode"] in positive_pools)
                positive_batch_lat.extend([elapsed] * carried)

        await asyncio.gather(*(worker() for _ in range(args.clients)))
        r_posted = time.perf_counter()
        r_done = await _drain(h.app, 0)

        solo_lat: list[float] = []
        for barcode in sorted(solo):
            index = int(barcode[1:])
            started = time.perf_counter()
            r = await h.client.post("/testing/results", headers=lab, json={"results": [{
                "barcode": barcode, "result": "positive", "lab_id": lab_ids[index % len(lab_ids)],
                "tested_at": datetime.now(UTC).isoformat()}]})
            orders = (await h.client.get("/testing/orders", headers=commander,
                                         params={"source_barcode": barcode})).json()
            solo_lat.append(time.perf_counter() - started)
            if r.status_code != 200 or len(orders) != 10:
                raise SystemExit(f"positive pool {barcode}: {r.status_code}, {len(orders)} retest orders, not 10")
        await _drain(h.app, 0)

        # Checks: exactly k retest orders per positive pool, one event per tube.
        async with h.session() as s:
            per_pool = dict((await s.execute(text(
                "SELECT source_barcode, count(*) FROM test_orders WHERE reason = 'retest' GROUP BY source_barcode"
            ))).all())
        bad = [b for b in positive_pools if per_pool.get(b) != 10]
        deadline = time.monotonic() + 60
        expected = {"test.collected": len(tubes), "test.pool_positive": len(positive_pools),
                    "test.positive": len(positive_singles),
                    "test.negative": len(tubes) - len(positive_pools) - len(positive_singles)}
        while time.monotonic() < deadline and seen_events != {k: v for k, v in expected.items() if v}:
            await asyncio.sleep(0.1)
        await sub.stop()
    if bad:
        raise SystemExit(f"{len(bad)} positive pools without exactly 10 retest orders")
    if seen_events != {k: v for k, v in expected.items() if v}:
        raise SystemExit(f"events seen {seen_events}, expected {expected}")
    return {
        "tubes": len(tubes), "people": person, "positive_pools": len(positive_pools),
        "tube_ingest_tubes_per_s": round(len(tubes) / (t_done - t0)),
        "tube_ingest_people_per_s": round(person / (t_done - t0)),
        "tube_post_p50_ms": round(1000 * statistics.median(tube_lat), 1),
        "tube_post_p99_ms": round(1000 * pct(tube_lat, 0.99), 1),
        "tube_publish_lag_s": round(t_done - t_posted, 2),
        "result_ingest_per_s": round(len(results) / (r_done - r0)),
        "result_post_p50_ms": round(1000 * statistics.median(res_lat), 1),
        "result_post_p99_ms": round(1000 * pct(res_lat, 0.99), 1),
        "result_publish_lag_s": round(r_done - r_posted, 2),
        "pool_to_retests_bulk_p50_ms": round(1000 * pct(positive_batch_lat, 0.5), 1),
        "pool_to_retests_bulk_p99_ms": round(1000 * pct(positive_batch_lat, 0.99), 1),
        "pool_to_retests_single_post_p50_ms": round(1000 * pct(solo_lat, 0.5), 1),
        "pool_to_retests_single_post_p99_ms": round(1000 * pct(solo_lat, 0.99), 1),
        "events": seen_events,
    }


# --- (4), (5): the plan -------------------------------------------------------------------


def city(rng: random.Random, n: int, lat=(22.45, 22.80), lon=(113.75, 114.45)):
    return [(lat[0] + rng.random() * (lat[1] - lat[0]), lon[0] + rng.random() * (lon[1] - lon[0])) for _ in range(n)]


def plan_bench(sites: int, labs: int, slots: int, tubes_per_day: int, seed: int) -> dict:
    """1,000 sites × 200 labs × 48 half-hours: every site collecting in every slot."""
    rng = random.Random(seed)
    site_xy, lab_xy = city(rng, sites), city(rng, labs)
    plan_sites = [PlanSite(f"s{i}", *xy) for i, xy in enumerate(site_xy)]
    per_slot = tubes_per_day / 48 / sites
    plan_labs = [PlanLab(f"l{j}", *xy, tuple([round(rng.randint(10_000, 80_000) / 48)] * slots), 10_000_000)
                 for j, xy in enumerate(lab_xy)]
    cohorts = [Cohort(s.id, t, START + timedelta(minutes=30 * t + 15), max(1, round(per_slot * rng.uniform(0.5, 1.5))))
               for s in plan_sites for t in range(slots)]
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = solve_plan(PlanInput(START, 30, slots, plan_sites, plan_labs, cohorts, nearest_labs=8))
        times.append((time.perf_counter() - t0, result.build_seconds, result.solve_seconds))
    total, build, solve = sorted(times)[1]
    return {"sites": sites, "labs": labs, "slots": slots, "tubes": result.total_tubes, "arcs": result.arcs,
            "nodes": result.nodes, "median_total_s": round(total, 2), "build_s": round(build, 2),
            "solve_s": round(solve, 2), "post_s": round(total - build - solve, 2),
            "backlog": result.backlog_tubes, "share_12h": result.share_within[12],
            "share_24h": result.share_within[24]}


def city_scenario(prevalence: float, capacity_factor: float, tubes: int, seed: int) -> dict:
    """A day of screening for 10M people (06:00–22:00 local), planned over 48 h in half-hours."""
    rng = random.Random(seed)
    n_sites, n_labs, slots = 330, 40, 96
    sites = [PlanSite(f"s{i}", *xy) for i, xy in enumerate(city(rng, n_sites))]
    lab_day = [rng.randint(10_000, 80_000) for _ in range(n_labs)]
    labs = [PlanLab(f"l{j}", *xy, tuple([round(lab_day[j] * capacity_factor / 48)] * slots), 10_000_000, run_hours=1)
            for j, xy in enumerate(city(rng, n_labs))]
    pooled = round(tubes * 0.95)
    singles = tubes - pooled
    people = pooled * 10 + singles
    p_pool = 1 - (1 - prevalence) ** 10
    retests = round(pooled * p_pool) * 10
    # sampling 06:00–22:00 local: 32 half-hours from the start of the horizon
    per = dict.fromkeys(((s.id, t) for s in sites for t in range(32)), tubes // (n_sites * 32))
    # retests are swabbed from about 6 h after sampling starts, over the next 12 h
    retest_keys = [(s.id, t) for s in sites for t in range(12, 36)]
    for i, key in enumerate(retest_keys):
        per[key] = per.get(key, 0) + retests // len(retest_keys) + (1 if i < retests % len(retest_keys) else 0)
    merged = {key: Cohort(key[0], key[1], START + timedelta(minutes=30 * key[1] + 15), n)
              for key, n in per.items() if n}
    t0 = time.perf_counter()
    result = solve_plan(PlanInput(START, 30, slots, sites, labs, list(merged.values()), nearest_labs=8,
                                  speed_kmh=30, handling_minutes=20))
    elapsed = time.perf_counter() - t0
    return {"prevalence": prevalence, "lab_capacity": "half" if capacity_factor < 1 else "full",
            "people": people, "tubes": result.total_tubes, "retest_tubes": retests,
            "tests_per_person_dorfman_10": round(dorfman_tests_per_person(prevalence, 10), 4),
            "lab_tubes_per_day": round(sum(lab_day) * capacity_factor),
            "share_12h": result.share_within[12], "share_24h": result.share_within[24],
            "backlog_at_48h": result.backlog_tubes, "plan_s": round(elapsed, 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tubes", type=int, default=100_000)
    parser.add_argument("--prevalence", type=float, default=1e-3)
    parser.add_argument("--sites", type=int, default=330)
    parser.add_argument("--labs", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients on PostgreSQL")
    parser.add_argument("--sqlite-clients", type=int, default=1,
                        help="SQLite has one writer: more clients only queue on its lock")
    parser.add_argument("--batch", type=int, default=1000, help="tubes per POST")
    parser.add_argument("--result-batch", type=int, default=1000, help="results per POST")
    parser.add_argument("--solo", type=int, default=200, help="positive pools posted one per request")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--database-url", help="postgresql+asyncpg://… (default: start a throw-away server)")
    parser.add_argument("--kafka", action="store_true", help="publish to a real Kafka broker (started here)")
    parser.add_argument("--plan-sites", type=int, default=1000)
    parser.add_argument("--plan-labs", type=int, default=200)
    parser.add_argument("--plan-slots", type=int, default=48)
    parser.add_argument("--plan-tubes-per-day", type=int, default=3_000_000)
    parser.add_argument("--city-tubes", type=int, default=1_000_000)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--seed", type=int, default=20220404)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    console = Console()
    figures: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}

    if not args.skip_ingest:
        figures["ingest"] = {}
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            console.print(f"[bold]ingest on {backend}[/bold]")
            if backend == "sqlite":
                with tempfile.TemporaryDirectory(prefix="bench-testing-") as directory:
                    url = f"sqlite+aiosqlite:///{directory}/testing.db"
                    figures["ingest"][backend] = await _with_bus(url, argparse.Namespace(
                        **{**vars(args), "clients": args.sqlite_clients}), console)
            else:
                with _components.postgres(args.database_url) as url:
                    url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
                    figures["ingest"][backend] = await _with_bus(url, args, console)

    console.print("[bold]plan[/bold]")
    figures["plan"] = plan_bench(args.plan_sites, args.plan_labs, args.plan_slots, args.plan_tubes_per_day, args.seed)
    figures["city"] = [city_scenario(p, f, args.city_tubes, args.seed)
                       for p in (3e-5, 1e-3, 1e-2) for f in (1.0, 0.5)]

    if "ingest" in figures:
        table = Table(title=f"ingest end to end: {args.tubes:,} tubes at prevalence {args.prevalence}")
        table.add_column("figure")
        for backend in figures["ingest"]:
            table.add_column(backend, justify="right")
        keys = [k for k in next(iter(figures["ingest"].values())) if k != "events"]
        for key in keys:
            table.add_row(key, *(str(figures["ingest"][b][key]) for b in figures["ingest"]))
        console.print(table)
    p = figures["plan"]
    console.print(f"plan {p['sites']} sites × {p['labs']} labs × {p['slots']} half-hours ({p['tubes']:,} tubes, "
                  f"{p['arcs']:,} arcs): median {p['median_total_s']} s (build {p['build_s']}, solve {p['solve_s']}, "
                  f"FIFO {p['post_s']}); goal ≤ 5 s")
    table = Table(title="city of 10M: 330 sites, 40 labs, one day of sampling, planned over 48 h")
    for column in ("prevalence", "labs", "tubes", "retests", "lab tubes/day", "≤12 h", "≤24 h", "backlog", "plan s"):
        table.add_column(column, justify="right")
    for c in figures["city"]:
        table.add_row(str(c["prevalence"]), c["lab_capacity"], f"{c['tubes']:,}", f"{c['retest_tubes']:,}",
                      f"{c['lab_tubes_per_day']:,}", str(c["share_12h"]), str(c["share_24h"]),
                      f"{c['backlog_at_48h']:,}", str(c["plan_s"]))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False))


async def _with_bus(url: str, args, console: Console) -> dict:
    if not args.kafka:
        return await ingest(url, f"memory://bench-{uuid.uuid4().hex[:6]}", args, console)
    with _components.kafka(None) as bootstrap:
        return await ingest(url, f"kafka://{bootstrap}", args, console)


if __name__ == "__main__":
    asyncio.run(main())
