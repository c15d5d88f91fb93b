"""Outbox, relay and inbox against both buses and both databases."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common import outbox
from fangkong_common.bus import Bus
from fangkong_common.bus.memory import MemoryBus
from fangkong_common.db import Base, Database
from fangkong_common.events.envelope import Envelope
from fangkong_common.inbox import InboxEntry, idempotent_handler
from fangkong_common.outbox import OutboxMessage, OutboxRelay
from tests.contract.helpers import event, eventually, unique_topic


class CounterBase(DeclarativeBase):
    pass


class Tally(CounterBase):
    """A stand-in for a read model: how many times each key's events were applied."""

    __tablename__ = "tally"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    applied: Mapped[int] = mapped_column(Integer)


@pytest.fixture
async def database(database_url: str):
    db = Database(database_url)
    async with db.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(CounterBase.metadata.create_all)
    try:
        yield db
    finally:
        await db.dispose()


async def write_events(database: Database, topic: str, count: int, per_transaction: int = 10) -> list[Envelope]:
    written: list[Envelope] = []
    for start in range(0, count, per_transaction):
        batch = [event(topic, f"k{n % 7}", seq=n) for n in range(start, min(count, start + per_transaction))]
        async with database.sessionmaker() as session, session.begin():
            outbox.add(session, *batch)
        written.extend(batch)
    return written


async def consume_ids(bus: Bus, topic: str, expected: int, timeout: float = 60.0) -> list[Envelope]:
    got: list[Envelope] = []

    async def handler(envelopes: list[Envelope]) -> None:
        got.extend(envelopes)

    sub = await bus.subscribe([topic], f"reader-{uuid.uuid4().hex[:8]}", handler)
    try:
        await eventually(lambda: len({e.id for e in got}) >= expected, timeout, f"{expected} events")
    finally:
        await sub.stop()
    return got


async def test_rolled_back_transaction_publishes_nothing(database: Database) -> None:
    topic = unique_topic("rollback")
    with pytest.raises(RuntimeError):
        async with database.sessionmaker() as session, session.begin():
            outbox.add(session, event(topic, "k", seq=1))
            raise RuntimeError("the use case failed after adding its event")
    async with database.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 0


async def test_relay_publishes_committed_events_in_order_and_marks_them(database: Database, bus: Bus) -> None:
    topic = unique_topic("relay")
    written = await write_events(database, topic, 60)
    relay = OutboxRelay(database, bus, service="contract", batch_size=25, poll_seconds=5)
    relay.start()
    try:
        received = await consume_ids(bus, topic, 60)
        assert await relay.pending_count() == 0
    finally:
        await relay.stop()
    by_key: dict[str, list[int]] = {}
    for envelope in received:
        by_key.setdefault(envelope.key, []).append(envelope.payload["seq"])
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"{key} out of order"
    assert {e.id for e in received} == {e.id for e in written}


async def test_a_commit_wakes_the_relay_without_waiting_for_the_poll(database: Database) -> None:
    bus = MemoryBus(f"memory://wake-{uuid.uuid4().hex}")
    topic = unique_topic("wake")
    relay = OutboxRelay(database, bus, service="contract", poll_seconds=60)
    relay.start()
    try:
        await asyncio.sleep(0.2)  # the relay has found nothing and sleeps on its 60 s poll
        await write_events(database, topic, 1)
        await eventually(lambda: len(bus.records(topic)) == 1, timeout=5, what="publish long before the poll")
    finally:
        await relay.stop()


async def test_outbox_and_relay_lose_nothing_while_the_broker_is_down(
    database: Database, bus: Bus, request: pytest.FixtureRequest
) -> None:
    if isinstance(bus, MemoryBus):
        def go_down() -> None:
            bus.simulate_outage(True)

        def come_back() -> None:
            bus.simulate_outage(False)
    else:
        broker = request.getfixturevalue("kafka_broker")
        if not broker.controllable:
            pytest.skip("an external broker (FANGKONG_TEST_KAFKA) cannot be stopped by the test")
        go_down, come_back = broker.stop, broker.start

    topic = unique_topic("outage")
    await bus.ensure_topics([topic])
    relay = OutboxRelay(database, bus, service="contract", batch_size=50, poll_seconds=0.2)
    relay.start()
    try:
        before = await write_events(database, topic, 100)
        go_down()
        try:
            during = await write_events(database, topic, 100)
            await asyncio.sleep(2)
            assert await relay.pending_count() > 0, "with the broker down, events wait in the outbox"
        finally:
            come_back()
        received = await consume_ids(bus, topic, 200, timeout=90)
    finally:
        await relay.stop()
    assert {e.id for e in received} == {e.id for e in before + during}


async def test_the_inbox_makes_redelivery_harmless(database: Database, bus: Bus) -> None:
    topic = unique_topic("inbox")
    events = [event(topic, f"k{n % 5}", seq=n) for n in range(50)]

    async def apply(session, envelope: Envelope) -> None:
        row = await session.get(Tally, envelope.key)
        if row is None:
            session.add(Tally(key=envelope.key, applied=1))
        else:
            row.applied += 1

    handler = idempotent_handler(database.sessionmaker, "tally-group", apply)
    sub = await bus.subscribe([topic], "tally-group", handler)
    try:
        await bus.publish(events)
        await bus.publish(events[:30])  # a producer retrying after a lost acknowledgement
        await bus.publish(events[10:])

        async def applied_total() -> int:
            async with database.sessionmaker() as session:
                return await session.scalar(select(func.coalesce(func.sum(Tally.applied), 0)))

        async def inbox_rows() -> int:
            async with database.sessionmaker() as session:
                return await session.scalar(select(func.count()).select_from(InboxEntry))

        deadline = asyncio.get_running_loop().time() + 30
        while await inbox_rows() < 50 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # let the duplicates arrive too
    finally:
        await sub.stop()
    assert await inbox_rows() == 50
    assert await applied_total() == 50


@pytest.mark.postgres
async def test_two_relays_on_postgresql_publish_each_event_once(postgres_url: str) -> None:
    database = Database(postgres_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    bus = MemoryBus(f"memory://replicas-{uuid.uuid4().hex}")
    topic = unique_topic("replicas")
    written = await write_events(database, topic, 2000, per_transaction=100)
    relays = [OutboxRelay(database, bus, service=f"replica-{i}", batch_size=50, poll_seconds=0.1) for i in range(2)]
    for relay in relays:
        relay.start()
    try:
        await eventually(lambda: len(bus.records(topic)) >= 2000, timeout=60, what="2000 published")
        await asyncio.sleep(0.5)
    finally:
        for relay in relays:
            await relay.stop()
        await database.dispose()
    published = [Envelope.from_bytes(r.value).id for r in bus.records(topic)]
    assert len(published) == len(set(published)) == 2000
    assert set(published) == {e.id for e in written}


async def test_add_many_keeps_call_order_and_rolls_back_with_the_transaction(database: Database) -> None:
    topic = unique_topic("bulk")
    first = event(topic, "k", seq=0)
    bulk = [event(topic, f"k{n}", seq=n) for n in range(1, 2001)]
    last = event(topic, "k", seq=2001)
    async with database.sessionmaker() as session, session.begin():
        outbox.add(session, first)  # buffered until a flush
        await outbox.add_many(session, bulk)  # COPY on PostgreSQL: must land after `first`
        outbox.add(session, last)
    lost = [event(topic, "gone", seq=n) for n in range(5)]
    with pytest.raises(RuntimeError):
        async with database.sessionmaker() as session, session.begin():
            await outbox.add_many(session, lost)
            raise RuntimeError("the use case failed")
    async with database.sessionmaker() as session:
        stored = (await session.scalars(select(OutboxMessage.event_id).where(OutboxMessage.topic == topic)
                                        .order_by(OutboxMessage.seq))).all()
    assert stored == [str(e.id) for e in [first, *bulk, last]]
