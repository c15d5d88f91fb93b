"""One body of bus contract tests, run against the in-process bus and real Kafka."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from prometheus_client import REGISTRY

from fangkong_common.bus import Bus, PermanentError, Record, RetryPolicy
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.topics import dlq
from tests.contract.helpers import event, eventually, unique_topic

FAST_RETRY = RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05)


async def collect_raw(bus: Bus, topic: str, count: int, timeout: float = 30.0) -> list[Record]:
    got: list[Record] = []

    async def handler(records: list[Record]) -> None:
        got.extend(records)

    sub = await bus.subscribe([topic], f"reader-{uuid.uuid4().hex[:8]}", handler, raw=True)
    try:
        await eventually(lambda: len(got) >= count, timeout, f"{count} records on {topic}")
    finally:
        await sub.stop()
    return got


async def test_events_of_one_key_arrive_in_publish_order(bus: Bus) -> None:
    topic = unique_topic("order")
    keys = [f"person-{i}" for i in range(10)]
    await bus.publish([event(topic, keys[n % 10], seq=n) for n in range(300)])
    seen: dict[str, list[int]] = defaultdict(list)

    async def handler(envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            seen[envelope.key].append(envelope.payload["seq"])

    sub = await bus.subscribe([topic], "order-group", handler, max_batch=7)
    try:
        await eventually(lambda: sum(map(len, seen.values())) >= 300, what="all 300 events")
    finally:
        await sub.stop()
    for key in keys:
        assert seen[key] == sorted(seen[key]), f"{key} out of order"
        assert len(seen[key]) == 30


async def test_two_consumers_of_a_group_split_the_partitions(bus: Bus) -> None:
    topic = unique_topic("split")
    received: dict[str, list[Envelope]] = {"a": [], "b": []}

    def handler_for(name: str):
        async def handler(envelopes: list[Envelope]) -> None:
            received[name].extend(envelopes)
        return handler

    first = await bus.subscribe([topic], "split-group", handler_for("a"))
    second = await bus.subscribe([topic], "split-group", handler_for("b"))
    try:
        everything = {(topic, p) for p in range(4)}
        await eventually(
            lambda: first.assignment() and second.assignment()
            and not first.assignment() & second.assignment()
            and first.assignment() | second.assignment() == everything,
            timeout=45, what="a stable split of the partitions",
        )
        await bus.publish([event(topic, f"k{n % 40}", seq=n) for n in range(200)])
        await eventually(lambda: len(received["a"]) + len(received["b"]) >= 200, what="200 events")
    finally:
        await first.stop()
        await second.stop()
    keys_a = {e.key for e in received["a"]}
    keys_b = {e.key for e in received["b"]}
    assert keys_a and keys_b, "both members must get work"
    assert not keys_a & keys_b, "a key belongs to one partition, hence one member"
    assert len({e.id for e in received["a"] + received["b"]}) == 200


async def test_offsets_are_committed_only_after_the_handler_succeeded(bus: Bus) -> None:
    topic = unique_topic("commit")
    release = asyncio.Event()
    handled: list[Envelope] = []

    async def slow_handler(envelopes: list[Envelope]) -> None:
        await release.wait()
        handled.extend(envelopes)

    await bus.publish([event(topic, "k", seq=n) for n in range(5)])
    sub = await bus.subscribe([topic], "commit-group", slow_handler)
    try:
        await sub.wait_assigned()
        await asyncio.sleep(1.0)  # the consumer has fetched and is inside the handler
        assert sum((await bus.committed_offsets("commit-group")).values()) == 0
        release.set()
        await eventually(lambda: len(handled) == 5, what="handled")

        async def committed() -> int:
            return sum(v for (t, _), v in (await bus.committed_offsets("commit-group")).items() if t == topic)

        deadline = asyncio.get_running_loop().time() + 15
        while await committed() < 5 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        assert await committed() == 5
    finally:
        await sub.stop()


async def test_a_consumer_that_dies_before_commit_is_replaced_and_the_events_redelivered(bus: Bus) -> None:
    topic = unique_topic("redeliver")
    await bus.publish([event(topic, f"k{n}", seq=n) for n in range(20)])
    fetched_by_dead: list[Envelope] = []
    never = asyncio.Event()

    async def dies_mid_batch(envelopes: list[Envelope]) -> None:
        fetched_by_dead.extend(envelopes)
        await never.wait()  # killed here, before any commit

    doomed = await bus.subscribe([topic], "redeliver-group", dies_mid_batch)
    await eventually(lambda: len(fetched_by_dead) > 0, what="the first consumer to fetch")
    await doomed.stop()

    survivor_got: list[Envelope] = []

    async def survivor(envelopes: list[Envelope]) -> None:
        survivor_got.extend(envelopes)

    replacement = await bus.subscribe([topic], "redeliver-group", survivor)
    try:
        await eventually(lambda: len({e.id for e in survivor_got}) == 20, timeout=45, what="all 20 redelivered")
    finally:
        await replacement.stop()
    assert {e.id for e in fetched_by_dead} <= {e.id for e in survivor_got}


async def test_poison_messages_go_to_the_dead_letter_topic_and_the_consumer_goes_on(bus: Bus) -> None:
    topic = unique_topic("poison")
    good_before = event(topic, "k", seq=1)
    rejected = event(topic, "k", seq=2, reject=True)
    good_after = event(topic, "k", seq=3)
    await bus.publish([good_before])
    await bus.publish_records([(topic, b"k", b"{not json", [("origin", b"fuzzer")])])
    await bus.publish([rejected, good_after])
    applied: list[int] = []

    async def handler(envelopes: list[Envelope]) -> None:
        if any(e.payload.get("reject") for e in envelopes):
            raise PermanentError("payload says reject")
        applied.extend(e.payload["seq"] for e in envelopes)

    sub = await bus.subscribe([topic], "poison-group", handler, retry=FAST_RETRY)
    try:
        await eventually(lambda: applied == [1, 3], what="both good events applied, in order")
        letters = await collect_raw(bus, dlq(topic), 2)
    finally:
        await sub.stop()
    by_reason = {letter.header("dlq.error_type"): letter for letter in letters}
    assert by_reason["ValidationError"].value == b"{not json"
    assert by_reason["ValidationError"].header("origin") == "fuzzer"
    assert by_reason["ValidationError"].header("dlq.reason").startswith("unparseable")
    assert by_reason["PermanentError"].header("dlq.reason") == "PermanentError('payload says reject')"
    assert Envelope.from_bytes(by_reason["PermanentError"].value).id == rejected.id
    assert all(letter.header("dlq.original_topic") == topic for letter in letters)
    assert all(letter.header("dlq.consumer_group") == "poison-group" for letter in letters)


async def test_a_transient_handler_error_is_retried_not_dead_lettered(bus: Bus) -> None:
    topic = unique_topic("transient")
    attempts = {"n": 0}
    applied: list[int] = []

    async def flaky(envelopes: list[Envelope]) -> None:
        attempts["n"] += 1
        if attempts["n"] <= 4:  # more tries than the retry policy gives a real error
            raise ConnectionRefusedError("database restarting")
        applied.extend(e.payload["seq"] for e in envelopes)

    await bus.publish([event(topic, "k", seq=n) for n in range(3)])
    sub = await bus.subscribe([topic], "transient-group", flaky, retry=FAST_RETRY)
    try:
        await eventually(lambda: sorted(applied) == [0, 1, 2], what="applied after the outage")
    finally:
        await sub.stop()
    assert attempts["n"] >= 5
    dead = REGISTRY.get_sample_value("fangkong_bus_dead_letters_total", {"group": "transient-group", "topic": topic})
    assert not dead


@pytest.mark.kafka
async def test_a_kafka_consumer_rides_out_a_broker_restart(kafka_broker) -> None:
    if not kafka_broker.controllable:
        pytest.skip("an external broker (FANGKONG_TEST_KAFKA) cannot be restarted by the test")
    from fangkong_common.bus import create_bus

    bus = create_bus(kafka_broker.url, partitions=4, client_id="restart")
    topic = unique_topic("restart")
    got: list[Envelope] = []

    async def handler(envelopes: list[Envelope]) -> None:
        got.extend(envelopes)

    sub = await bus.subscribe([topic], "restart-group", handler)
    try:
        await sub.wait_assigned()
        await bus.publish([event(topic, f"k{n}", seq=n) for n in range(10)])
        await eventually(lambda: len(got) >= 10, what="events before the restart")
        await asyncio.to_thread(kafka_broker.stop)
        assert await bus.ping() is False, "readiness must report the broker down"
        await asyncio.to_thread(kafka_broker.start)
        after = [event(topic, f"k{n}", seq=n) for n in range(10, 20)]
        deadline = asyncio.get_running_loop().time() + 60
        while True:  # the producer reconnects on its own; a send may fail while it does
            try:
                await bus.publish(after)
                break
            except ConnectionError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.5)
        await eventually(lambda: {e.id for e in after} <= {e.id for e in got}, timeout=90,
                         what="events after the restart")
    finally:
        await sub.stop()
        await bus.stop()


@pytest.mark.kafka
async def test_kafka_namespaces_share_a_broker_without_seeing_each_other(kafka_broker) -> None:
    from fangkong_common.bus import create_bus

    topic = unique_topic("shared-name")
    staging = create_bus(f"{kafka_broker.url}?namespace=staging{uuid.uuid4().hex[:6]}", partitions=2)
    production = create_bus(f"{kafka_broker.url}?namespace=prod{uuid.uuid4().hex[:6]}", partitions=2)
    await staging.start()
    await production.start()
    try:
        await staging.publish([event(topic, "k", seq=1)])
        await production.publish([event(topic, "k", seq=2), event(topic, "k", seq=3)])
        # The same topic and group names in each namespace: each reads its own events only.
        seen_staging = await collect_raw(staging, topic, 1)
        seen_production = await collect_raw(production, topic, 2)
        await asyncio.sleep(1.0)
        assert [r.topic for r in seen_staging] == [topic]  # the application sees plain names
        assert len(seen_staging) == 1 and len(seen_production) == 2
        assert [Envelope.from_bytes(r.value).payload["seq"] for r in seen_production] == [2, 3]
    finally:
        await staging.stop()
        await production.stop()
