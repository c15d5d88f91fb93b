"""Our bus against FastStream on the same broker: the same envelopes (same bytes, same keys),
the same producer settings (acks=all, idempotent, linger 2 ms, 512 KiB batches), six partitions.

produce: publish every message and wait for every acknowledgement (ours: KafkaBus.publish in
         chunks; FastStream: broker.publish(no_confirm=True) and then await the futures of the
         chunk, i.e. the same pipelining with the same acks).
consume: a fresh consumer group reads the topic from the start, parses each message into the
         Envelope model and commits after each batch (ours: subscribe; FastStream: a batch
         subscriber with AckPolicy.ACK); timed from the first message to the last.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from fangkong_common.bus.kafka import KafkaBus
from fangkong_common.events.envelope import Envelope

CHUNK = 5000
PRODUCER = {"acks": "all", "enable_idempotence": True, "linger_ms": 2, "max_batch_size": 512 * 1024}


def messages(topic: str, count: int, payload_bytes: int) -> list[Envelope]:
    filler = "x" * payload_bytes
    return [Envelope(type=topic, source="bench", key=f"person-{n % 1000:04d}", payload={"seq": n, "filler": filler})
            for n in range(count)]


async def _ours_produce(bus: KafkaBus, envelopes: list[Envelope]) -> float:
    started = time.perf_counter()
    for start in range(0, len(envelopes), CHUNK):
        await bus.publish(envelopes[start:start + CHUNK])
    return time.perf_counter() - started


async def _faststream_produce(broker: KafkaBroker, topic: str, envelopes: list[Envelope]) -> float:
    records = [(e.key.encode(), e.to_bytes(), str(e.correlation_id)) for e in envelopes]
    started = time.perf_counter()
    for start in range(0, len(records), CHUNK):
        futures = [await broker.publish(value, topic, key=key, headers={"correlation_id": cid}, no_confirm=True)
                   for key, value, cid in records[start:start + CHUNK]]
        await asyncio.gather(*futures)
    return time.perf_counter() - started


class _Clock:
    """First and last message seen, and how many."""

    def __init__(self, count: int) -> None:
        self.count, self.seen, self.first, self.last = count, 0, 0.0, 0.0
        self.done = asyncio.Event()

    def saw(self, n: int) -> None:
        now = time.perf_counter()
        if not self.seen:
            self.first = now
        self.seen += n
        self.last = now
        if self.seen >= self.count:
            self.done.set()


async def _ours_consume(bus: KafkaBus, topic: str, count: int, timeout: float) -> _Clock:
    clock = _Clock(count)

    async def handle(envelopes: list[Envelope]) -> None:
        clock.saw(len(envelopes))

    sub = await bus.subscribe([topic], f"bench-ours-{uuid.uuid4().hex[:6]}", handle, max_batch=500)
    try:
        await asyncio.wait_for(clock.done.wait(), timeout)
    finally:
        await sub.stop()
    return clock


async def _faststream_consume(bootstrap: str, topic: str, count: int, timeout: float) -> _Clock:
    clock = _Clock(count)
    broker = KafkaBroker(bootstrap, logger=None)

    @broker.subscriber(topic, group_id=f"bench-fs-{uuid.uuid4().hex[:6]}", batch=True, max_records=500,
                       auto_offset_reset="earliest", ack_policy=AckPolicy.ACK)
    async def handle(envelopes: list[Envelope]) -> None:
        clock.saw(len(envelopes))

    await broker.start()
    try:
        await asyncio.wait_for(clock.done.wait(), timeout)
    finally:
        await broker.stop()
    return clock


async def bus_vs_faststream(bootstrap: str, count: int, payload_bytes: int, timeout: float = 600.0) -> dict:
    run = uuid.uuid4().hex[:8]
    ours_topic, fs_topic = f"bench.ours.{run}", f"bench.faststream.{run}"
    bus = KafkaBus(f"kafka://{bootstrap}", partitions=6, client_id="bench-ours")
    await bus.start()
    broker = KafkaBroker(bootstrap, logger=None, **PRODUCER)
    await broker.start()
    try:
        await bus.ensure_topics([ours_topic, fs_topic])
        # Both producers connected and warm before the clock starts (ours connects on first use).
        warm = f"bench.warm.{run}"
        await bus.ensure_topics([warm])
        await bus.publish(messages(warm, 10, payload_bytes))
        await asyncio.gather(*[await broker.publish(e.to_bytes(), warm, key=e.key.encode(), no_confirm=True)
                               for e in messages(warm, 10, payload_bytes)])
        envelopes = messages(ours_topic, count, payload_bytes)
        size = sum(len(e.to_bytes()) for e in envelopes) / count
        # Alternate who goes first so a warm broker or page cache favours neither.
        fs_produce = await _faststream_produce(broker, fs_topic, [e.model_copy(update={"type": fs_topic})
                                                                  for e in envelopes])
        ours_produce = await _ours_produce(bus, envelopes)
        ours = await _ours_consume(bus, ours_topic, count, timeout)
        fs = await _faststream_consume(bootstrap, fs_topic, count, timeout)
    finally:
        await broker.stop()
        await bus.stop()
    if ours.seen != count or fs.seen != count:
        raise SystemExit(f"bus vs FastStream: consumed {ours.seen} and {fs.seen} of {count}")

    def rate(clock: _Clock) -> float:
        return round(count / max(clock.last - clock.first, 1e-6))

    return {"messages": count, "payload_bytes": payload_bytes, "message_bytes": round(size), "acks": "all",
            "ours_produce_per_s": round(count / ours_produce), "faststream_produce_per_s": round(count / fs_produce),
            "ours_consume_per_s": rate(ours), "faststream_consume_per_s": rate(fs)}
