"""Scenarios on the platform as it is deployed: the four services as `fangkong serve` processes
on real Kafka and PostgreSQL (tests/multiprocess.py), driven over real HTTP sockets.

(a) mass screening: tubes of 10 → results → single retests of the positive pools, POSTed to the
    testing service; done when the dashboard's read model counts every member swabbed and
    every tube resulted (HTTP → testing DB → outbox → Kafka → dashboard).
(b) a positive result → the person's hospital bed in quarantine and the dashboard's positives
    counter changed, each sample timed while a background of other events flows on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from _util import asyncpg_dsn, drop_database, pct, sqlalchemy_url
from fangkong_common.auth import Role
from fangkong_common.bus.kafka import KafkaBus
from fangkong_common.events import schemas as ev
from fangkong_common.events.envelope import Envelope
from tests.multiprocess import MultiProcessPlatform

CITY, COUNTY = "440300", "440305"
RATIO = 10


@contextlib.asynccontextmanager
async def running_platform(bootstrap: str, server_url: str, directory: Path) -> AsyncIterator[MultiProcessPlatform]:
    base = sqlalchemy_url(server_url).rsplit("/", 1)[0] + f"/bench_{uuid.uuid4().hex[:8]}"
    platform = MultiProcessPlatform(kafka_url=f"kafka://{bootstrap}", database_url=base, directory=directory)
    try:
        await asyncio.to_thread(platform.start)
        yield platform
    finally:
        codes = await asyncio.to_thread(platform.stop)
        if any(codes.values()):
            print(platform.logs())
        for service in platform.services:  # `fangkong migrate` made one database per service
            with contextlib.suppress(Exception):
                await drop_database(server_url, f"{asyncpg_dsn(base)}_{service}")


def today_local() -> date:
    return datetime.now(ZoneInfo("Asia/Shanghai")).date()


async def dashboard_sums(client: httpx.AsyncClient, platform: MultiProcessPlatform, names: list[str]) -> dict[str, int]:
    """Each metric summed over the days around today, as the dashboard's read model answers it."""
    day = today_local()
    response = await client.get(f"{platform.url('dashboard')}/dashboard/metrics", headers=platform.headers(
        Role.commander, regions=[CITY]), params={"region_code": CITY, "from": (day - timedelta(days=2)).isoformat(),
                                                 "to": (day + timedelta(days=1)).isoformat(), "names": ",".join(names)})
    response.raise_for_status()
    return {s["name"]: sum(p["value"] for p in s["points"]) for s in response.json()["series"]}


async def testing_places(client: httpx.AsyncClient, platform: MultiProcessPlatform, sites: int, labs: int,
                         rng: random.Random) -> tuple[list[str], list[str]]:
    commander = platform.headers(Role.commander, regions=[CITY])
    base = platform.url("testing")
    site_ids, lab_ids = [], []
    for i in range(sites):
        r = await client.post(f"{base}/testing/sites", headers=commander, json={
            "name": f"采样点{i}", "region_code": COUNTY, "latitude": 22.5 + rng.random() * 0.2,
            "longitude": 113.9 + rng.random() * 0.3, "swabs_per_hour": 600})
        r.raise_for_status()
        site_ids.append(r.json()["id"])
    for j in range(labs):
        r = await client.post(f"{base}/testing/labs", headers=commander, json={
            "name": f"实验室{j}", "region_code": COUNTY, "latitude": 22.5 + rng.random() * 0.2,
            "longitude": 113.9 + rng.random() * 0.3, "tubes_per_day": 1_000_000, "reagent_stock": 100_000_000})
        r.raise_for_status()
        lab_ids.append(r.json()["id"])
    return site_ids, lab_ids


async def post_all(client: httpx.AsyncClient, url: str, key: str, batches: Iterator[list[dict]], headers: dict,
                   clients: int, latencies: list[float]) -> int:
    """POST every batch with ``clients`` concurrent workers; the number of items sent."""
    sent = [0]

    async def worker() -> None:
        for batch in batches:  # one shared iterator: each batch goes to exactly one worker
            started = time.perf_counter()
            r = await client.post(url, json={key: batch}, headers=headers)
            latencies.append(time.perf_counter() - started)
            if r.status_code >= 300:
                raise SystemExit(f"{url}: {r.status_code} {r.text[:500]}")
            sent[0] += len(batch)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return sent[0]


def id_number(n: int) -> str:
    return f"44030519{n:010d}"  # the service hashes what it is given; the check character is not its concern


async def mass_screening(platform: MultiProcessPlatform, members: int, prevalence: float, seed: int, clients: int,
                         tubes_per_post: int, timeout: float) -> dict:
    rng = random.Random(seed)
    tubes = math.ceil(members / RATIO)
    infected = set(rng.sample(range(members), round(members * prevalence)))
    positive_tubes = sorted({n // RATIO for n in infected})
    collected_at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients * 2)) as client:
        site_ids, lab_ids = await testing_places(client, platform, 4, 4, rng)
        staff = platform.headers(Role.site_staff, regions=[CITY], sites=site_ids)
        lab = platform.headers(Role.lab, regions=[CITY], sites=lab_ids)
        testing = platform.url("testing")
        before = await dashboard_sums(client, platform, ["people_swabbed", "tubes_resulted"])

        def tube_batches() -> Iterator[list[dict]]:
            for start in range(0, tubes, tubes_per_post):
                yield [{"barcode": f"B{t:09d}", "ratio": RATIO, "site_id": site_ids[t % len(site_ids)],
                        "members": [id_number(n) for n in range(t * RATIO, min(members, (t + 1) * RATIO))],
                        "collected_at": collected_at}
                       for t in range(start, min(tubes, start + tubes_per_post))]

        positive = set(positive_tubes)

        def result_batches() -> Iterator[list[dict]]:
            tested_at = datetime.now(UTC).isoformat()
            for start in range(0, tubes, tubes_per_post):
                yield [{"barcode": f"B{t:09d}", "lab_id": lab_ids[t % len(lab_ids)], "tested_at": tested_at,
                        "result": "positive" if t in positive else "negative"}
                       for t in range(start, min(tubes, start + tubes_per_post))]

        retest_members = [n for t in positive_tubes for n in range(t * RATIO, min(members, (t + 1) * RATIO))]

        def chunks(items: list[dict]) -> Iterator[list[dict]]:
            for start in range(0, len(items), tubes_per_post):
                yield items[start:start + tubes_per_post]

        tube_lat: list[float] = []
        result_lat: list[float] = []
        started = time.perf_counter()
        await post_all(client, f"{testing}/testing/tubes", "tubes", tube_batches(), staff, clients, tube_lat)
        tubes_posted = time.perf_counter()
        await post_all(client, f"{testing}/testing/results", "results", result_batches(), lab, clients, result_lat)
        results_posted = time.perf_counter()
        # The k retest orders of each positive pool, swabbed as single tubes and resulted.
        retests = [{"barcode": f"R{n:010d}", "ratio": 1, "members": [id_number(n)], "site_id": site_ids[0],
                    "collected_at": collected_at} for n in retest_members]
        retest_results = [{"barcode": f"R{n:010d}", "lab_id": lab_ids[0], "tested_at": datetime.now(UTC).isoformat(),
                           "result": "positive" if n in infected else "negative"} for n in retest_members]
        await post_all(client, f"{testing}/testing/tubes", "tubes", chunks(retests), staff, clients, tube_lat)
        await post_all(client, f"{testing}/testing/results", "results", chunks(retest_results), lab, clients,
                       result_lat)
        http_done = time.perf_counter()

        expected = {"people_swabbed": before["people_swabbed"] + members + len(retest_members),
                    "tubes_resulted": before["tubes_resulted"] + tubes + len(retest_members)}
        deadline = time.monotonic() + timeout
        while True:
            seen = await dashboard_sums(client, platform, list(expected))
            if all(seen[name] >= value for name, value in expected.items()):
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"mass screening: the dashboard shows {seen}, expected {expected} "
                                 f"after {timeout:.0f} s")
            await asyncio.sleep(0.25)
        done = time.perf_counter()
    if seen != expected:
        raise SystemExit(f"mass screening: the dashboard counted {seen}, expected exactly {expected}")
    seconds = done - started
    return {"members": members, "tubes": tubes, "prevalence": prevalence, "infected": len(infected),
            "positive_pools": len(positive_tubes), "retest_tubes": len(retest_members), "clients": clients,
            "tubes_per_post": tubes_per_post, "seconds": round(seconds, 2),
            "members_per_s": round(members / seconds),
            "http_members_per_s": round(members / (http_done - started)),
            "tubes_phase_s": round(tubes_posted - started, 2), "results_phase_s": round(results_posted - tubes_posted, 2),
            "retests_phase_s": round(http_done - results_posted, 2),
            "dashboard_lag_s": round(done - http_done, 2),
            "tube_post_p99_ms": round(1000 * pct(tube_lat, 0.99), 1),
            "result_post_p99_ms": round(1000 * pct(result_lat, 0.99), 1),
            "seconds_for_10m_members_at_this_rate": round(10_000_000 * seconds / members),
            "dashboard": seen}


async def background_load(platform: MultiProcessPlatform, rate: int, stop: asyncio.Event, sent: list[int]) -> None:
    """``rate`` events a second of other work on the bus — pools collected and resulted negative,
    which the dashboard and quarantine consume — published in ticks of 50 ms."""
    bus = KafkaBus(f"{platform.kafka_url}?namespace={platform.namespace}", client_id="bench-load")
    await bus.start()
    tick, n = 0.05, 0
    started = time.perf_counter()
    try:
        while not stop.is_set():
            due = int((time.perf_counter() - started + tick) * rate) - sent[0]
            batch = []
            now = datetime.now(UTC)
            for _ in range(max(0, due)):
                keys = [f"{(n * RATIO + m):064x}" for m in range(RATIO)]
                barcode = f"L{n:010d}"
                payload = (ev.TestCollected(barcode=barcode, site_id="load", region_code=COUNTY, ratio=RATIO,
                                            member_keys=keys, collected_at=now) if n % 2 == 0 else
                           ev.TestNegative(barcode=f"L{n - 1:010d}", lab_id="load", region_code=COUNTY,
                                           member_keys=[f"{((n - 1) * RATIO + m):064x}" for m in range(RATIO)],
                                           resulted_at=now))
                batch.append(Envelope.wrap(payload, source="bench", key=barcode))
                n += 1
            if batch:
                await bus.publish(batch)
                sent[0] += len(batch)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick)
    finally:
        sent.append(time.perf_counter() - started)
        await bus.stop()


async def positive_latency(platform: MultiProcessPlatform, samples: int, rate: int, seed: int,
                           warm_up: float = 3.0, timeout: float = 60.0) -> dict:
    rng = random.Random(seed + 1)
    commander = platform.headers(Role.commander, regions=[CITY])
    async with httpx.AsyncClient(timeout=60) as client:
        hospital = await client.post(f"{platform.url('quarantine')}/quarantine/sites", headers=commander, json={
            "name": "市定点医院", "kind": "hospital", "region_code": CITY, "capacity": samples + 50})
        hospital.raise_for_status()
        hospital_url = f"{platform.url('quarantine')}/quarantine/sites/{hospital.json()['id']}"
        site_ids, lab_ids = await testing_places(client, platform, 1, 1, rng)
        staff = platform.headers(Role.site_staff, regions=[CITY], sites=site_ids)
        lab = platform.headers(Role.lab, regions=[CITY], sites=lab_ids)
        ids = [f"44030520{9_000_000_000 + n:010d}" for n in range(samples)]
        counted = (await dashboard_sums(client, platform, ["tubes_collected"]))["tubes_collected"]
        swabbed = await client.post(f"{platform.url('testing')}/testing/tubes", headers=staff, json={"tubes": [
            {"barcode": f"P{n:06d}", "ratio": 1, "members": [ids[n]], "site_id": site_ids[0],
             "collected_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat()} for n in range(samples)]})
        swabbed.raise_for_status()

        deadline = time.monotonic() + timeout  # the samples' tubes counted first: the lag below is the load's
        while (collected_before := (await dashboard_sums(client, platform, ["tubes_collected"]))["tubes_collected"]
               ) < counted + samples and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop, sent = asyncio.Event(), [0]
        load = asyncio.create_task(background_load(platform, rate, stop, sent))
        await asyncio.sleep(warm_up)  # the load flows before the first sample
        total, to_bed, to_counter = [], [], []
        timed_out: dict | None = None
        try:
            for n in range(samples):
                before = (await dashboard_sums(client, platform, ["positives"]))["positives"]
                beds_before = (await client.get(hospital_url, headers=commander)).json()["occupancy"]
                started = time.perf_counter()
                r = await client.post(f"{platform.url('testing')}/testing/results", headers=lab, json={"results": [
                    {"barcode": f"P{n:06d}", "result": "positive", "lab_id": lab_ids[0],
                     "tested_at": datetime.now(UTC).isoformat()}]})
                r.raise_for_status()

                async def bed() -> float:
                    # The scenario's own hospital takes this one positive (the load brings none, and
                    # positives an earlier scenario left waiting are admitted by the daily job only):
                    # its occupancy says when the bed is taken. Listing /quarantine/cases would not,
                    # once more than a page of older cases (1,000 after a 10M screening) comes first.
                    while (await client.get(hospital_url, headers=commander)).json()["occupancy"] <= beds_before:
                        await asyncio.sleep(0.02)
                    return time.perf_counter() - started

                async def counter() -> float:
                    while (await dashboard_sums(client, platform, ["positives"]))["positives"] <= before:
                        await asyncio.sleep(0.02)
                    return time.perf_counter() - started

                waits = {"bed": asyncio.ensure_future(bed()), "counter": asyncio.ensure_future(counter())}
                await asyncio.wait(waits.values(), timeout=timeout)
                if not all(w.done() for w in waits.values()):
                    # The consumers have fallen behind the load: every later sample would wait as long,
                    # so the run stops here and says so instead of waiting minutes per sample.
                    timed_out = {"sample": n, "waiting_for": [k for k, w in waits.items() if not w.done()]}
                    for w in waits.values():
                        w.cancel()
                    await asyncio.gather(*waits.values(), return_exceptions=True)
                    break
                a, b = waits["bed"].result(), waits["counter"].result()
                to_bed.append(a)
                to_counter.append(b)
                total.append(max(a, b))
                await asyncio.sleep(0.1 + rng.random() * 0.1)
        finally:
            stop.set()
            await load
        collected_after = (await dashboard_sums(client, platform, ["tubes_collected"]))["tubes_collected"]
    events, load_seconds = sent[0], sent[1]

    def ms(values: list[float], q: float) -> float | None:
        value = pct(values, q)
        return None if value is None or timed_out else round(1000 * value, 1)

    return {"samples": samples, "completed": len(total), "timeout_s": timeout, "timed_out": timed_out,
            "target_background_events_per_s": rate,
            "background_events_per_s": round(events / load_seconds), "background_events": events,
            # pools collected by the load and not yet counted when it stopped: how far the dashboard lags
            "dashboard_behind_collected_events": (events + 1) // 2 - (collected_after - collected_before),
            "p50_ms": ms(total, 0.5), "p99_ms": ms(total, 0.99),
            "max_ms": round(1000 * max(total), 1) if total and not timed_out else None,
            "completed_max_ms": round(1000 * max(total), 1) if total else None,
            "to_bed_p99_ms": ms(to_bed, 0.99), "to_counter_p99_ms": ms(to_counter, 0.99),
            # (sample, ms to bed, ms to counter) of the five slowest: is it one stall or a steady lag?
            "slowest": sorted(([n, round(1000 * a, 1), round(1000 * b, 1)]
                               for n, (a, b) in enumerate(zip(to_bed, to_counter, strict=True))),
                              key=lambda s: -max(s[1], s[2]))[:5]}
