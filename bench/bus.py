"""Events/s through our bus beside raw aiokafka, against the real broker, in one run.

    .venv/bin/python bench/bus.py [--events 50000] [--kafka HOST:PORT] [--database-url URL] [--json out.json]

Rows: (a) raw produce, (b) raw consume, (c) ours: outbox writes + relay until
all are published, (d) ours: bus subscription + inbox until all are applied,
(e) ours end to end, (c) and (d) at once. Ratios compare each of ours with
its baseline measured in the same run (timings on 2 shared cores are noisy;
ratios are what to compare across runs). Exits non-zero if any event is lost
or applied twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import Integer, String, func, select, text  # noqa: E402
from sqlalchemy.dialects.postgresql import insert as pg_insert  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column  # noqa: E402

import _components  # noqa: E402
from fangkong_common import outbox  # noqa: E402
from fangkong_common.bus.kafka import KafkaBus  # noqa: E402
from fangkong_common.db import Base, Database  # noqa: E402
from fangkong_common.events.envelope import Envelope  # noqa: E402
from fangkong_common.inbox import InboxEntry, idempotent_batch_handler  # noqa: E402
from fangkong_common.outbox import OutboxRelay  # noqa: E402

KEYS = 1000
TRANSACTION = 500


class CounterBase(DeclarativeBase):
    pass


class PerKey(CounterBase):
    """A read model in miniature: events applied per key."""

    __tablename__ = "bench_per_key"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    applied: Mapped[int] = mapped_column(Integer)


def envelopes(topic: str, count: int, payload_bytes: int) -> list[Envelope]:
    filler = "x" * payload_bytes
    return [Envelope(type=topic, source="bench", key=f"person-{n % KEYS:04d}", payload={"seq": n, "filler": filler})
            for n in range(count)]


async def raw_produce(bootstrap: str, topic: str, messages: list[Envelope]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2,
                                max_batch_size=512 * 1024)
    await producer.start()
    values = [(m.key.encode(), m.to_bytes()) for m in messages]
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key) for key, value in values]
        await asyncio.gather(*futures)
        return time.perf_counter() - started
    finally:
        await producer.stop()


async def raw_consume(bootstrap: str, topic: str, count: int) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"raw-{uuid.uuid4().hex[:6]}",
                                enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=500)
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()
        while seen < count:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            for messages in batches.values():
                seen += len(messages)
            if batches:
                await consumer.commit()
        return time.perf_counter() - started
    finally:
        await consumer.stop()


async def write_outbox(database: Database, events: list[Envelope]) -> float:
    started = time.perf_counter()
    for start in range(0, len(events), TRANSACTION):
        async with database.sessionmaker() as session, session.begin():
            outbox.add(session, *events[start : start + TRANSACTION])
    return time.perf_counter() - started


async def until(predicate, timeout: float = 600.0) -> None:
    deadline = time.perf_counter() + timeout
    while not await predicate():
        if time.perf_counter() > deadline:
            raise SystemExit("benchmark timed out waiting for the bus")
        await asyncio.sleep(0.1)  # the poll itself costs the database a count


async def count_applied(database: Database, group: str) -> int:
    async with database.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(InboxEntry)
                                    .where(InboxEntry.consumer_group == group)) or 0


async def subscribe_counter(bus: KafkaBus, database: Database, topic: str, group: str):
    """A read model the way it should be written: one set-based upsert per batch."""

    async def apply_batch(session, envelopes: list[Envelope]) -> None:
        per_key = Counter(envelope.key for envelope in envelopes)
        statement = pg_insert(PerKey).values([{"key": key, "applied": n} for key, n in per_key.items()])
        await session.execute(statement.on_conflict_do_update(
            index_elements=[PerKey.key], set_={"applied": PerKey.applied + statement.excluded.applied}))

    return await bus.subscribe([topic], group, idempotent_batch_handler(database.sessionmaker, group, apply_batch))


async def reset(database: Database) -> None:
    async with database.engine.begin() as conn:
        for table in ("outbox", "inbox", "bench_per_key"):
            await conn.execute(text(f"TRUNCATE {table}"))


async def measure(bootstrap: str, database_url: str, count: int, payload_bytes: int) -> dict:
    database = Database(database_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(CounterBase.metadata.create_all)
        postgres_version = (await conn.execute(text("SHOW server_version"))).scalar()
    bus = KafkaBus(f"kafka://{bootstrap}", partitions=6, client_id="bench")
    await bus.start()
    run = uuid.uuid4().hex[:8]
    raw_topic, ours_topic, e2e_topic = (f"bench.{name}.{run}" for name in ("raw", "ours", "e2e"))
    await bus.ensure_topics([raw_topic, ours_topic, e2e_topic])
    figures: dict[str, float] = {}
    try:
        figures["a"] = await raw_produce(bootstrap, raw_topic, envelopes(raw_topic, count, payload_bytes))
        figures["b"] = await raw_consume(bootstrap, raw_topic, count)

        # (c) outbox + relay to the broker
        relay = OutboxRelay(database, bus, service="bench", batch_size=500, poll_seconds=0.05)
        events = envelopes(ours_topic, count, payload_bytes)
        started = time.perf_counter()
        relay.start()
        figures["c_write"] = await write_outbox(database, events)
        await until(lambda: _zero(relay.pending_count()))
        figures["c"] = time.perf_counter() - started
        await relay.stop()

        # (d) subscription + inbox + a read-model upsert, from the topic (c) filled
        started = time.perf_counter()
        sub = await subscribe_counter(bus, database, ours_topic, "bench-ours")
        await until(lambda: _at_least(count_applied(database, "bench-ours"), count))
        figures["d"] = time.perf_counter() - started
        await sub.stop()
        applied_d = await _applied_total(database)

        # (e) both at once: first write to last event applied
        await reset(database)
        events = envelopes(e2e_topic, count, payload_bytes)
        sub = await subscribe_counter(bus, database, e2e_topic, "bench-e2e")
        await sub.wait_assigned()
        relay = OutboxRelay(database, bus, service="bench", batch_size=500, poll_seconds=0.05)
        relay.start()
        started = time.perf_counter()
        await write_outbox(database, events)
        await until(lambda: _at_least(count_applied(database, "bench-e2e"), count))
        figures["e"] = time.perf_counter() - started
        await relay.stop()
        await sub.stop()
        applied_e = await _applied_total(database)
    finally:
        await bus.stop()
        await database.dispose()
    if applied_d != count or applied_e != count:
        raise SystemExit(f"lost or doubled events: applied {applied_d} and {applied_e}, expected {count} each")
    return {"events": count, "payload_bytes": payload_bytes, "seconds": figures,
            "kafka": _components.kafka_version(), "postgres": postgres_version, "cpus": os.cpu_count()}


async def _zero(awaitable) -> bool:
    return await awaitable == 0


async def _at_least(awaitable, count: int) -> bool:
    return await awaitable >= count


async def _applied_total(database: Database) -> int:
    async with database.sessionmaker() as session:
        return await session.scalar(select(func.coalesce(func.sum(PerKey.applied), 0)))


def report(result: dict) -> None:
    n, s = result["events"], result["seconds"]
    rate = {name: n / seconds for name, seconds in s.items()}
    table = Table(title=f"bus throughput, {n} events of ~{result['payload_bytes']} B payload "
                        f"(Kafka {result['kafka']}, PostgreSQL {result['postgres']}, {result['cpus']} CPUs)")
    for column in ("path", "seconds", "events/s", "vs baseline"):
        table.add_column(column, justify="right" if column != "path" else "left")
    rows = [
        ("a", "raw aiokafka produce (acks=all, idempotent)", None),
        ("b", "raw aiokafka consume (group, commit per batch)", None),
        ("c_write", "ours: outbox writes alone (transactions of 500)", None),
        ("c", "ours: outbox + relay, all published", rate["a"]),
        ("d", "ours: subscribe + inbox + batched upsert, all applied", rate["b"]),
        ("e", "ours: end to end, first write to last applied", min(rate["a"], rate["b"])),
    ]
    for name, label, baseline in rows:
        ratio = f"{rate[name] / baseline:.2f}" if baseline else "—"
        table.add_row(label, f"{s[name]:.2f}", f"{rate[name]:,.0f}", ratio)
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--payload-bytes", type=int, default=300)
    parser.add_argument("--kafka", help="HOST:PORT of a running broker (default: start one)")
    parser.add_argument("--database-url", help="postgresql+asyncpg://… (default: start a throw-away server)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    with _components.kafka(args.kafka) as bootstrap, _components.postgres(args.database_url) as url:
        result = asyncio.run(measure(bootstrap, url, args.events, args.payload_bytes))
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
