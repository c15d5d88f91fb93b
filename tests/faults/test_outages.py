"""Infrastructure outages under load, each on a broker or database server of the test's own
(started by scripts/kafka, scripts/postgres in a temporary folder): Kafka stopped for a minute
in the middle of an ingest; PostgreSQL restarted while clients write and read."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import asyncpg
import httpx
import pytest
from dashboard.consumers import CONSUMERS as DASHBOARD_CONSUMERS
from fangkong_common.auth import Role
from fangkong_common.events import topics

from tests.faults.helpers import (
    Load,
    dashboard_counts,
    dead_letter_counts,
    wait_for_counts,
    wait_lag_zero,
    wire,
)
from tests.faults.infra import OwnKafka, OwnPostgres, start_platform, stop_platform
from tests.multiprocess import MultiProcessPlatform

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
OUTAGE_SECONDS = 60.0


async def pending_outbox(platform: MultiProcessPlatform, service: str) -> int:
    dsn = platform.database_url.replace("postgresql+asyncpg://", "postgresql://", 1) + f"_{service}"
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await conn.close()


@pytest.mark.proof("faults")
@pytest.mark.long_fault
@pytest.mark.timeout(900)
async def test_kafka_stopped_for_a_minute_mid_ingest_every_result_arrives_once(
    own_kafka: OwnKafka, postgres_server, tmp_path: Path, proof,
) -> None:
    base = postgres_server.database_dsn(f"fk_{uuid.uuid4().hex[:8]}").replace(
        "postgresql://", "postgresql+asyncpg://", 1)
    platform = await asyncio.to_thread(start_platform, own_kafka.url, base, tmp_path / "platform")
    region = "440309"
    total, before = 10_000, 4_000
    load = Load(platform, region)
    bootstrap = own_kafka.bootstrap
    group = wire(platform, DASHBOARD_CONSUMERS[0].group)
    group_topics = [wire(platform, t) for t in topics.ALL_TOPICS]
    proof.injected(f"{total:,} tubes and results (1 in 500 positive) posted through the testing API over ~30 s; "
                   f"Kafka stopped for {OUTAGE_SECONDS:.0f} s once {before:,} were accepted (the relay and the "
                   "consumers busy), the rest posted during the outage, then Kafka started again")
    try:
        await load.setup()
        # One paced ingest; Kafka goes down under it, while events are being published and consumed.
        ingest = asyncio.create_task(load.ingest(total, batch=500, positive_every=500, pause=1.5))
        while len(load.truth.resulted) < before and not ingest.done():
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(timeout=30) as client:
            counted_before = await dashboard_counts(client, platform, region)
        accepted_before = len(load.truth.resulted)
        stopped_at = time.monotonic()
        await asyncio.to_thread(own_kafka.stop)
        stop_seconds = time.monotonic() - stopped_at
        await ingest  # every write must be accepted while Kafka is away
        rest = total - accepted_before
        statuses = dict(load.truth.statuses)
        waiting = await pending_outbox(platform, "testing")
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
        outage = time.monotonic() - stopped_at
        started_at = time.monotonic()
        await asyncio.to_thread(own_kafka.start)
        start_seconds = time.monotonic() - started_at
        expected = load.truth.expected()
        counts, _ = await wait_for_counts(platform, region, expected, timeout=300, settle=5)
        caught_up = time.monotonic() - started_at
        assert counts == expected, (counts, expected)
        lag, _ = await wait_lag_zero(bootstrap, group, group_topics, timeout=60)
        assert lag == 0
        assert await pending_outbox(platform, "testing") == 0
        # An outage is no reason to give up on an event: nothing was dead-lettered.
        dead = await dead_letter_counts(bootstrap, platform)
        assert not dead, dead
    finally:
        await load.aclose()
        await asyncio.to_thread(stop_platform, platform)
    assert statuses == {201: total // 500, 200: total // 500}, statuses  # no write refused while Kafka was away
    proof.measured(
        f"{total:,} results sent and accepted ({rest:,} after the stop began; {waiting:,} events waiting in the "
        f"testing outbox); dashboard counts {counts['tubes_collected']:,} tubes, {counts['tubes_resulted']:,} "
        f"results, {counts['positives']}/{expected['positives']} positives, backlog {counts['tube_backlog']}: "
        f"0 lost, 0 twice; at the stop {accepted_before:,} results accepted, {counted_before['tubes_resulted']:,} "
        f"counted; outage {outage:.0f} s "
        f"(stop {stop_seconds:.1f} s, start {start_seconds:.1f} s); every count right {caught_up:.1f} s after "
        f"Kafka was started; dashboard lag 0; 0 dead letters")


PROBES = {  # one read per service that needs its database
    "registry": "/registry/persons?limit=1",
    "quarantine": "/quarantine/orders?limit=1",
    "testing": "/testing/sites",
    "dashboard": "/dashboard/kpis?region_code=440310",
}


@pytest.mark.proof("faults")
@pytest.mark.long_fault
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["fast", "immediate"])  # a clean shutdown, and a crash (recovery at start)
async def test_postgres_restarted_under_load_services_answer_503_and_recover_within_10_seconds(
    own_postgres: OwnPostgres, kafka_broker, tmp_path: Path, proof, mode: str,
) -> None:
    await own_postgres.make_durable()  # a write acknowledged must survive the crash of the server
    platform = await asyncio.to_thread(start_platform, kafka_broker.url, own_postgres.database_url(
        f"fp_{uuid.uuid4().hex[:8]}"), tmp_path / "platform")
    region = "440310"
    load = Load(platform, region, timeout=10.0)  # a request that takes longer counts as a hang
    headers = platform.headers(Role.admin)
    down = asyncio.Event()
    up_at: list[float] = []
    # Per service: statuses while the database is down, and when it first answered 2xx after.
    during: dict[str, Counter] = {name: Counter() for name in PROBES}
    after: dict[str, Counter] = {name: Counter() for name in PROBES}  # from the moment it is back
    recovered: dict[str, float] = {}
    failed_batches: list[list[str]] = []
    stop = asyncio.Event()

    async def probe(client: httpx.AsyncClient, name: str) -> None:
        while not stop.is_set():
            try:
                response = await client.get(f"{platform.url(name)}{PROBES[name]}", headers=headers)
                status: int | str = response.status_code
            except httpx.TimeoutException:
                status = "timeout"
            except httpx.TransportError:
                status = "refused"
            if down.is_set() and not up_at:
                during[name][status] += 1
            elif up_at:
                after[name][status] += 1
                if name not in recovered and isinstance(status, int) and status < 300:
                    recovered[name] = time.monotonic() - up_at[0]
            await asyncio.sleep(0.1)

    async def writer() -> None:
        """Tubes then their results, 100 at a time, for as long as the test runs; a batch refused
        (by a 503) is kept to send again once the database is back."""
        while not stop.is_set():
            barcodes = load.barcodes(100)
            if not await load.post_tubes(barcodes):
                failed_batches.append(barcodes)
                await asyncio.sleep(0.2)
                continue
            if not await load.post_results({b: "negative" for b in barcodes}):
                failed_batches.append(barcodes)
            await asyncio.sleep(0.05)

    proof.injected(f"PostgreSQL (durable: fsync and synchronous_commit on) stopped ({mode} shutdown) for 8 s and started again while a client posts tubes and "
                   "results to the testing service and reads every service's API every 0.1 s")
    try:
        await load.setup()
        async with httpx.AsyncClient(timeout=10.0) as client:
            tasks = [asyncio.create_task(probe(client, name)) for name in PROBES]
            tasks.append(asyncio.create_task(writer()))
            await asyncio.sleep(3)
            accepted_before = len(load.truth.collected)
            stopping_at = time.monotonic()
            down.set()  # from the first moment of the shutdown: "shutting down" must be a 503 too
            await asyncio.to_thread(own_postgres.stop, mode)
            down_at = time.monotonic()
            await asyncio.sleep(8)
            await asyncio.to_thread(own_postgres.start)
            up_at.append(time.monotonic())
            deadline = time.monotonic() + 30
            while len(recovered) < len(PROBES) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*tasks)
        accepted_during = len(load.truth.collected) - accepted_before
        write_statuses = dict(load.truth.statuses)
        # What was refused is sent again (idempotent: already stored tubes come back "unchanged").
        resent = 0
        for barcodes in failed_batches:
            if set(barcodes) - load.truth.collected:
                assert await load.post_tubes(barcodes), (load.truth.statuses, load.last_error)
            assert await load.post_results({b: "negative" for b in barcodes}), (load.truth.statuses, load.last_error)
            resent += 1
        expected = load.truth.expected()
        counts, _ = await wait_for_counts(platform, region, expected, timeout=120)
        # The consumers waited for the database instead of giving up on the events they held.
        dead = await dead_letter_counts(kafka_broker.bootstrap, platform)
    finally:
        stop.set()
        await load.aclose()
        await asyncio.to_thread(stop_platform, platform)
    outage = up_at[0] - down_at if up_at else float("nan")
    stopping = down_at - stopping_at
    refused_during = {name: dict(c) for name, c in during.items()}
    bad = {name: {s: n for s, n in c.items() if s not in (503,) and not (isinstance(s, int) and s < 300)}
           for name, c in during.items()}
    assert not any(bad.values()), f"while PostgreSQL was down, answers other than 503: {bad}; {load.last_error}"
    bad_after = {name: {s: n for s, n in c.items() if s != 503 and not (isinstance(s, int) and s < 300)}
                 for name, c in after.items()}
    assert not any(bad_after.values()), f"after PostgreSQL was back: {bad_after}; {load.last_error}"
    assert all(c[503] for c in during.values()), refused_during
    assert set(recovered) == set(PROBES), f"not recovered within 30 s: {set(PROBES) - set(recovered)}"
    assert max(recovered.values()) <= 10.0, recovered
    assert counts == expected, (counts, expected)
    assert not dead, f"events dead-lettered while the database was down: {dead}"
    writes_5xx = {s: n for s, n in write_statuses.items() if s not in (200, 201)}
    assert set(writes_5xx) <= {503}, write_statuses
    proof.measured(
        f"stop took {stopping:.1f} s, then down {outage:.1f} s (until started again); reads answered {', '.join(f'{n} {dict(c)}' for n, c in during.items())} "
        f"(2xx only before the shutdown took hold; otherwise only 503, no 500, no hang over 10 s); writes {write_statuses} ({writes_5xx.get(503, 0)} × 503); "
        f"recovered by themselves "
        f"{', '.join(f'{n} {s:.1f} s' for n, s in sorted(recovered.items()))} after PostgreSQL was back; "
        f"{len(load.truth.collected):,} tubes accepted in all ({accepted_during:,} during the fault, "
        f"{resent} refused batches sent again), dashboard counts {counts['tubes_collected']:,}/"
        f"{counts['tubes_resulted']:,}: 0 lost, 0 twice; 0 dead letters")
