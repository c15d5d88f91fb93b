"""Dashboard read models: events/s they absorb, and KPI query latency on large read models.

    .venv/bin/python bench/dashboard_throughput.py [--people 200000] [--rounds 2] [--kafka HOST:PORT]
        [--database-url URL] [--counter-people 10000000] [--queries 400] [--skip-kafka] [--json out.json]

(a) projection: a province's events for --people people (returnees, contacts,
    quarantine orders, due tests, admissions, positives, cases, vaccinations and
    --rounds rounds of 10-in-1 mass testing), applied through the idempotent
    batch handler (inbox + set-based writes) in batches of 1,000, on PostgreSQL;
    then the same events again: a replay must change no number.
(b) the same events produced to real Kafka and consumed by the running dashboard
    service (bus → inbox → projection) until every one is applied.
(c) KPI latency: GET /dashboard/kpis (and /metrics, 14 days) through the ASGI app,
    p50/p99, at province, city and county level, with the counter table grown to what
    --counter-people people produce over 60 days (counters scale with regions × days ×
    metrics, not with people; the per-person state tables are not read by these queries).
Figures drift on 2 shared cores: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _components  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from fangkong_common.auth import Role, issue_token  # noqa: E402
from fangkong_common.bus.kafka import KafkaBus  # noqa: E402
from fangkong_common.events import schemas as ev  # noqa: E402
from fangkong_common.events.envelope import Envelope  # noqa: E402
from fangkong_common.inbox import InboxEntry, idempotent_batch_handler  # noqa: E402

from dashboard import queries  # noqa: E402
from dashboard.config import Settings  # noqa: E402
from dashboard.consumers import GROUP  # noqa: E402
from dashboard.main import create_app  # noqa: E402
from dashboard.readmodel import apply_batch, upsert_counters  # noqa: E402
from dashboard.domain.rules import METRICS  # noqa: E402

DAY0 = date(2026, 11, 1)
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
CITIES = [f"44{c:02d}" for c in range(1, 22)]
COUNTIES = [f"{city}{d:02d}" for city in CITIES for d in range(1, 7)]


def person(n: int) -> str:
    return f"{n:064x}"


def region_of(n: int) -> str:
    return COUNTIES[n % len(COUNTIES)]


def wrap(payload, at: datetime) -> Envelope:
    return Envelope.wrap(payload, source="bench", key=getattr(payload, "person_key", None) or "k", occurred_at=at)


def province_events(people: int, rounds: int, seed: int = 1) -> list[Envelope]:
    rnd = random.Random(seed)
    out: list[Envelope] = []
    for n in range(people):
        pk, region = person(n), region_of(n)
        at = T0 + timedelta(seconds=n % 86400)
        r = rnd.random()
        if r < 0.05:  # returnees; 30 % of them get an order with two tests
            out.append(wrap(ev.PersonReturned(person_key=pk, region_code=region, category="domestic_key_region",
                                              origin_kind="domestic", arrival_date=DAY0), at))
            if rnd.random() < 0.3:
                oid = uuid.UUID(int=n)
                out.append(wrap(ev.QuarantineOrdered(order_id=oid, person_key=pk, region_code=region, reason="r",
                                                     policy_id="p", policy_version=1, stages=[{
                                                         "kind": "home", "place": "home", "start_date": DAY0,
                                                         "end_date": DAY0 + timedelta(days=14)}]), at))
                for d in (0, 6):
                    out.append(wrap(ev.QuarantineTestDue(order_id=oid, person_key=pk, region_code=region,
                                                         due_date=DAY0 + timedelta(days=d), stage_index=0), at))
        elif r < 0.06:  # close contacts: centralized, 80 % admitted
            oid = uuid.UUID(int=n)
            out.append(wrap(ev.ContactIdentified(person_key=pk, region_code=region, degree=1,
                                                 source_person_key=person(0), last_exposure_at=at), at))
            out.append(wrap(ev.QuarantineOrdered(order_id=oid, person_key=pk, region_code=region, reason="c",
                                                 policy_id="p", policy_version=1, stages=[{
                                                     "kind": "centralized", "place": "municipal_site",
                                                     "start_date": DAY0, "end_date": DAY0 + timedelta(days=14)}]), at))
            if rnd.random() < 0.8:
                out.append(wrap(ev.QuarantineAdmitted(person_key=pk, region_code=region, origin_region_code=region,
                                                      order_id=oid, site_id=f"site-{n % 300}", site_kind="hotel",
                                                      admitted_at=at + timedelta(hours=3)), at))
        elif r < 0.0605:  # positives: admitted and classified
            out.append(wrap(ev.TestPositive(person_key=pk, barcode=f"R{n}", lab_id="lab", region_code=region,
                                            resulted_at=at), at))
            out.append(wrap(ev.QuarantineAdmitted(person_key=pk, region_code=region, origin_region_code=region,
                                                  site_id="hosp", site_kind="hospital",
                                                  admitted_at=at + timedelta(hours=2)), at))
            out.append(wrap(ev.CaseClassified(person_key=pk, origin_region_code=region, treating_region_code=region,
                                              classification="confirmed", classified_at=at + timedelta(hours=5)), at))
        elif r < 0.08:
            out.append(wrap(ev.VaccinationRecorded(person_key=pk, region_code=region, age_group="18+", vaccine="v",
                                                   dose_number=3, vaccinated_on=DAY0), at))
    for rnd_no in range(rounds):  # mass testing: everyone in 10-in-1 pools, each tube resulted
        day_at = T0 + timedelta(days=rnd_no)
        for start in range(0, people, 10):
            members = [person(m) for m in range(start, min(start + 10, people))]
            barcode = f"B{rnd_no}-{start}"
            region = region_of(start)
            out.append(wrap(ev.TestCollected(barcode=barcode, site_id="c", region_code=region, ratio=10,
                                             member_keys=members, collected_at=day_at), day_at))
            out.append(wrap(ev.TestNegative(barcode=barcode, lab_id="lab", region_code=region, member_keys=members,
                                            resulted_at=day_at + timedelta(hours=6)), day_at))
    return out


async def totals(database) -> dict[str, int]:
    async with database.sessionmaker() as session:
        values = await queries.sums(session, None, list(METRICS), None, DAY0 + timedelta(days=400),
                                    by_dimension=False)
    return {k[0]: v for k, v in values.items() if v}


async def projection(url: str, events: list[Envelope], batch: int) -> dict:
    app = create_app(Settings(database_url=url, bus_url="memory://bench-dashboard"))
    async with app.router.lifespan_context(app):
        database = app.state.database
        handler = idempotent_batch_handler(database.sessionmaker, GROUP + ".bench", apply_batch)
        started = time.perf_counter()
        for start in range(0, len(events), batch):
            await handler(events[start:start + batch])
        seconds = time.perf_counter() - started
        first = await totals(database)
        # Replay under fresh ids (the inbox cannot help): the per-entity state must.
        replayed = [e.model_copy(update={"id": uuid.uuid4()}) for e in events[: min(len(events), 50_000)]]
        started = time.perf_counter()
        for start in range(0, len(replayed), batch):
            await handler(replayed[start:start + batch])
        replay_seconds = time.perf_counter() - started
        second = await totals(database)
    return {"events": len(events), "seconds": round(seconds, 2), "events_per_s": round(len(events) / seconds),
            "replay_events": len(replayed), "replay_events_per_s": round(len(replayed) / replay_seconds),
            "replay_changed_nothing": first == second, "totals": first}


async def through_kafka(url: str, bootstrap: str, events: list[Envelope]) -> dict:
    bus = KafkaBus(f"kafka://{bootstrap}", client_id="bench-producer")
    await bus.start()
    started = time.perf_counter()
    for start in range(0, len(events), 5000):
        await bus.publish(events[start:start + 5000])
    produce_seconds = time.perf_counter() - started
    await bus.stop()
    app = create_app(Settings(database_url=url, bus_url=f"kafka://{bootstrap}"))
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        database = app.state.database
        while True:
            async with database.sessionmaker() as session:
                applied = await session.scalar(select(func.count()).select_from(InboxEntry)
                                               .where(InboxEntry.consumer_group == GROUP))
            if applied >= len(events):
                break
            if time.perf_counter() - started > 1800:
                raise SystemExit(f"only {applied} of {len(events)} events applied in 30 min")
            await asyncio.sleep(0.5)
        seconds = time.perf_counter() - started
        got = await totals(database)
    return {"events": len(events), "produce_events_per_s": round(len(events) / produce_seconds),
            "consume_seconds": round(seconds, 2), "consume_events_per_s": round(len(events) / seconds),
            "totals": got}


async def grow_counters(database, counter_people: int, days: int = 60) -> int:
    """Counter rows a province of ``counter_people`` people writes in ``days`` days: every county,
    every day, every metric with a few dimensions (values scaled to the population)."""
    per_county = counter_people / len(COUNTIES)
    rows: dict = {}
    rnd = random.Random(3)
    for county in COUNTIES:
        for d in range(days):
            day = DAY0 - timedelta(days=days - d)
            for name in METRICS:
                for dim in ("", "a", "b"):
                    rows[(name, county, day, dim)] = int(per_county * rnd.random() * 0.001)
    async with database.sessionmaker() as session, session.begin():
        await upsert_counters(session, rows)
    async with database.engine.begin() as conn:
        if database.engine.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE dash_counter"))
    return len(rows)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def latency(url: str, counter_people: int, queries_n: int, days: int = 60) -> dict:
    app = create_app(Settings(database_url=url, bus_url="memory://bench-latency"))
    async with app.router.lifespan_context(app):
        grown = await grow_counters(app.state.database, counter_people, days)
        async with app.state.database.sessionmaker() as session:
            total_rows = await session.scalar(text("SELECT count(*) FROM dash_counter"))
        secret = app.state.settings.jwt_secret.get_secret_value()
        token = issue_token(secret, role=Role.admin, regions=["440000"])
        out = {"counter_rows": total_rows, "counter_rows_grown": grown}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
            headers = {"Authorization": f"Bearer {token}"}
            for level, region in (("province", "440000"), ("city", "440300"), ("county", "440305")):
                for path, params in (("/dashboard/kpis", {"region_code": region, "date": DAY0.isoformat()}),
                                     ("/dashboard/metrics", {"region_code": region, "to": DAY0.isoformat(),
                                                             "names": "positives,tube_backlog,in_quarantine"})):
                    for _ in range(20):  # warm up
                        (await client.get(path, params=params, headers=headers)).raise_for_status()
                    samples = []
                    for _ in range(queries_n):
                        started = time.perf_counter()
                        response = await client.get(path, params=params, headers=headers)
                        samples.append((time.perf_counter() - started) * 1000)
                        response.raise_for_status()
                    out[f"{path.rsplit('/', 1)[1]}_{level}_ms"] = {
                        "p50": round(statistics.median(samples), 2), "p99": round(percentile(samples, 99), 2)}
        return out


async def run(args) -> dict:
    events = province_events(args.people, args.rounds)
    result: dict = {"people": args.people, "rounds": args.rounds, "events": len(events)}
    with _components.postgres(args.database_url) as url:
        print(f"(a) projection on PostgreSQL: {len(events)} events …", flush=True)
        result["projection"] = await projection(await fresh_db(url, "proj"), events, args.batch)
        print(json.dumps(result["projection"], indent=1)[:600], flush=True)
        if not args.skip_kafka:
            with _components.kafka(args.kafka) as bootstrap:
                print(f"(b) through real Kafka ({_components.kafka_version()}) …", flush=True)
                result["kafka"] = await through_kafka(await fresh_db(url, "kafka"), bootstrap, events)
                result["kafka"]["same_numbers_as_projection"] = (
                    result["kafka"]["totals"] == result["projection"]["totals"])
                print(json.dumps({k: v for k, v in result["kafka"].items() if k != "totals"}), flush=True)
        print(f"(c) KPI latency, counters of {args.counter_people:,} people …", flush=True)
        result["latency"] = await latency(await fresh_db(url, "lat"), args.counter_people, args.queries)
        print(json.dumps(result["latency"], indent=1), flush=True)
    return result


async def fresh_db(url: str, name: str) -> str:
    import asyncpg

    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    database = f"bench_dash_{name}_{uuid.uuid4().hex[:6]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + f"/{database}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of 10-in-1 mass testing")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--counter-people", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--kafka", help="HOST:PORT (default: start a throw-away broker)")
    parser.add_argument("--skip-kafka", action="store_true")
    parser.add_argument("--database-url", help="postgresql+asyncpg://… (default: start a throw-away server)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    for part in ("projection", "kafka"):
        if part in result:
            result[part].pop("totals", None)
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if not result["projection"]["replay_changed_nothing"] or not result.get("kafka", {}).get(
            "same_numbers_as_projection", True):
        raise SystemExit("numbers differ between runs")


if __name__ == "__main__":
    main()
