"""Consumer faults on the platform as processes (real Kafka, real PostgreSQL): poison messages,
the same event twice or out of order, a consumer killed mid-batch, a rebalance. Ground truth is
what each test itself published or got a 2xx for; the figures are the dashboard's and the
broker's own (committed offsets against end offsets)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from dashboard.consumers import CONSUMERS as DASHBOARD_CONSUMERS
from fangkong_common.bus.kafka import KafkaBus
from fangkong_common.events import schemas as ev
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope
from quarantine.consumers import CONSUMERS as QUARANTINE_CONSUMERS
from registry.consumers import CONSUMERS as REGISTRY_CONSUMERS
from testing.consumers import CONSUMERS as TESTING_CONSUMERS

from tests.faults.events import good_event, key_of, poison
from tests.faults.helpers import (
    Load,
    group_lag,
    read_topic,
    total_lag,
    wait_for_counts,
    wait_lag_zero,
    wire,
)
from tests.multiprocess import MultiProcessPlatform

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

# Every consumer group of the platform, by the service (and database) that runs it.
GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    spec.group: (service, tuple(spec.topics))
    for service, specs in (("dashboard", DASHBOARD_CONSUMERS), ("quarantine", QUARANTINE_CONSUMERS),
                           ("registry", REGISTRY_CONSUMERS), ("testing", TESTING_CONSUMERS))
    for spec in specs
}
DASHBOARD_GROUP = DASHBOARD_CONSUMERS[0].group


def bootstrap(platform: MultiProcessPlatform) -> str:
    return platform.kafka_url.removeprefix("kafka://")


def bus_of(platform: MultiProcessPlatform) -> KafkaBus:
    return KafkaBus(f"{platform.kafka_url}?namespace={platform.namespace}", client_id="fault-test")


def dsn_of(platform: MultiProcessPlatform, service: str) -> str:
    base = platform.database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    return f"{base}_{service}"


async def applied(platform: MultiProcessPlatform, service: str, group: str, event_ids: list[str]) -> set[str]:
    """The ids among ``event_ids`` whose effect ``group`` committed (its inbox row commits with it)."""
    conn = await asyncpg.connect(dsn_of(platform, service))
    try:
        rows = await conn.fetch("SELECT event_id FROM inbox WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
                                group, event_ids)
    finally:
        await conn.close()
    return {row["event_id"] for row in rows}


async def all_lag(platform: MultiProcessPlatform) -> dict[str, int]:
    return {group: await total_lag(bootstrap(platform), wire(platform, group), [wire(platform, t) for t in group_topics])
            for group, (_service, group_topics) in GROUPS.items()}


@pytest.mark.proof("faults")
async def test_a_poison_message_on_every_topic_is_dead_lettered_with_its_reason_and_the_consumers_go_on(
    shared_platform: MultiProcessPlatform, proof,
) -> None:
    platform = shared_platform
    region = "440311"
    proof.injected(f"{len(topics.ALL_TOPICS)} poison messages (one per topic of the catalogue: not JSON, not an "
                   "envelope, a payload breaking its schema, an unknown version), each followed by a valid event")
    poisons: dict[str, bytes] = {}
    goods: dict[str, Envelope] = {}
    records = []
    for i, topic in enumerate(topics.ALL_TOPICS):
        _kind, poisons[topic] = poison(topic, i)
        goods[topic] = good_event(topic, region)
        # Same key as the good event: one partition, so the good one comes after the poison.
        records.append((topic, goods[topic].key.encode(), poisons[topic], [("fault", b"poison")]))
        records.append((topic, goods[topic].key.encode(), goods[topic].to_bytes(), []))
    bus = bus_of(platform)
    await bus.start()
    try:
        await bus.publish_records(records)
    finally:
        await bus.stop()
    lag_before = await all_lag(platform)

    # The consumers go on: every group reaches the end of its topics, and applied each good event.
    waits = await asyncio.gather(*(wait_lag_zero(bootstrap(platform), wire(platform, group),
                                                 [wire(platform, t) for t in group_topics], timeout=60)
                                   for group, (_service, group_topics) in GROUPS.items()))
    lag_after = {group: lag for group, (lag, _seconds) in zip(GROUPS, waits, strict=True)}
    assert lag_after == {group: 0 for group in GROUPS}, lag_after
    missing: dict[str, list[str]] = {}
    for group, (service, group_topics) in GROUPS.items():
        wanted = {str(goods[t].id): t for t in group_topics}
        got = await applied(platform, service, group, list(wanted))
        if set(wanted) - got:
            missing[group] = sorted(wanted[i] for i in set(wanted) - got)
    assert not missing, f"valid events after a poison message not applied: {missing}"

    # Each poison message once per group that reads its topic, on <topic>.dlq, with the reason.
    letters_per_topic: dict[str, int] = {}
    groups_of: dict[str, set[str]] = defaultdict(set)
    for group, (_service, group_topics) in GROUPS.items():
        for topic in group_topics:
            groups_of[topic].add(group)
    good_ids = {str(e.id).encode() for e in goods.values()}
    read = await asyncio.gather(*(read_topic(bootstrap(platform), wire(platform, topics.dlq(topic)))
                                  for topic in topics.ALL_TOPICS))
    for topic, letters in zip(topics.ALL_TOPICS, read, strict=True):
        headers = [{k: v.decode(errors="replace") for k, v in m.headers} for m in letters]
        assert not [m for m in letters if any(i in m.value for i in good_ids)], f"a valid {topic} event dead-lettered"
        ours = [(m, h) for m, h in zip(letters, headers, strict=True) if m.value == poisons[topic]]
        assert {h["dlq.consumer_group"] for _, h in ours} == groups_of[topic], (topic, headers)
        assert len(ours) == len(groups_of[topic]), (topic, headers)
        for _m, h in ours:
            assert h["dlq.original_topic"] == topic and h["dlq.reason"] and h["dlq.error_type"], h
            assert h["fault"] == "poison", h  # the original headers travel with it
        letters_per_topic[topic] = len(ours)
    proof.measured(f"{sum(letters_per_topic.values())} dead letters on {len(letters_per_topic)} <topic>.dlq topics "
                   f"(one per group reading the topic), each with dlq.reason/error_type/original offset; "
                   f"{len(goods)} valid events after them applied by every group reading them; lag over "
                   f"{len(GROUPS)} groups {sum(lag_before.values())} just after publishing, "
                   f"{sum(lag_after.values())} after")


def negative(barcode: str, region: str, member: str) -> Envelope:
    at = datetime.now(UTC)
    return Envelope.wrap(ev.TestNegative(barcode=barcode, lab_id="fault-lab", region_code=region,
                                         member_keys=[member], collected_at=at - timedelta(hours=2),
                                         resulted_at=at - timedelta(hours=1)), source="testing", key=member)


def collected(barcode: str, region: str, member: str) -> Envelope:
    at = datetime.now(UTC) - timedelta(hours=2)
    return Envelope.wrap(ev.TestCollected(barcode=barcode, site_id="fault-site", region_code=region, ratio=1,
                                          member_keys=[member], collected_at=at), source="testing", key=member)


@pytest.mark.proof("faults")
async def test_the_same_event_twice_and_results_before_their_tubes_are_counted_once(
    shared_platform: MultiProcessPlatform, proof,
) -> None:
    platform = shared_platform
    region = "440307"
    tubes = 300
    members = {f"FD{region}-{i:05d}": key_of(str(i)) for i in range(tubes)}
    firsts = [collected(b, region, m) for b, m in members.items()]
    results = [negative(b, region, m) for b, m in members.items()]
    late = list(members)[: tubes // 2]  # these tubes' results are published before their collection
    proof.injected(f"{tubes} tube collections and {tubes} results published straight on the broker, every event "
                   f"twice (same id), and for {len(late)} tubes the result before the collection")
    bus = bus_of(platform)
    await bus.start()
    try:
        early_results = [r for r in results if r.payload["barcode"] in late]
        await bus.publish(early_results + early_results)
        counts, _ = await wait_for_counts(platform, region, {
            "tubes_collected": 0, "tubes_resulted": len(late), "people_swabbed": 0, "positives": 0,
            "tube_backlog": 0}, timeout=60, settle=1)
        assert counts["tubes_resulted"] == len(late), counts
        await bus.publish(firsts + firsts)
        rest = [r for r in results if r.payload["barcode"] not in late]
        await bus.publish(rest + rest + early_results)  # and the early ones a third time
    finally:
        await bus.stop()
    expected = {"tubes_collected": tubes, "tubes_resulted": tubes, "people_swabbed": tubes, "positives": 0,
                "tube_backlog": 0}
    counts, seconds = await wait_for_counts(platform, region, expected, timeout=60)
    assert counts == expected
    lag, _ = await wait_lag_zero(bootstrap(platform), wire(platform, DASHBOARD_GROUP),
                                 [wire(platform, t) for t in topics.ALL_TOPICS])
    assert lag == 0
    published = 2 * len(late) + 2 * tubes + 2 * (tubes - len(late)) + len(late)
    proof.measured(f"{published} messages for {tubes} tubes: dashboard counts {counts['tubes_collected']} collected, "
                   f"{counts['tubes_resulted']} resulted, {counts['people_swabbed']} swabbed, backlog "
                   f"{counts['tube_backlog']} (0 counted twice, none left in the backlog by the early results); "
                   f"settled in {seconds:.1f} s; lag 0")


async def committed_and_lag(platform: MultiProcessPlatform, group: str, group_topics) -> tuple[int, int]:
    lags = await group_lag(bootstrap(platform), wire(platform, group), [wire(platform, t) for t in group_topics])
    return sum(lags.values()), len(lags)


@pytest.mark.proof("faults")
@pytest.mark.long_fault  # ~30 s: the dead member holds its partitions until its session times out
async def test_a_consumer_killed_mid_batch_and_restarted_loses_nothing_and_counts_nothing_twice(
    shared_platform: MultiProcessPlatform, proof,
) -> None:
    platform = shared_platform
    region = "440306"
    count = 4000
    load = Load(platform, region)
    await load.setup()
    proof.injected(f"{count} tubes and their results posted through the testing API; the dashboard process "
                   "(consumer of every topic) killed with SIGKILL while it had a backlog and a transaction open in its "
                   "database (a batch half applied), then started again")
    bootstrap_ = bootstrap(platform)
    group, group_topics = wire(platform, DASHBOARD_GROUP), [wire(platform, t) for t in topics.ALL_TOPICS]
    lag_at_start = await total_lag(bootstrap_, group, group_topics)
    ingest = asyncio.create_task(load.ingest(count, batch=500, positive_every=400))
    # Kill while the dashboard holds a backlog and has a transaction open in its database:
    # a batch is being applied, and its offsets are not committed.
    deadline = time.monotonic() + 60
    lag_at_kill = 0
    database = await asyncpg.connect(dsn_of(platform, "dashboard"))
    try:
        while time.monotonic() < deadline:
            lag_at_kill = await total_lag(bootstrap_, group, group_topics)
            open_transactions = await database.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL AND state <> 'idle'")
            if lag_at_kill > 300 and open_transactions:
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail(f"the dashboard never had a batch to be killed in (lag {lag_at_kill})")
        killed_at = time.monotonic()
        code = platform.services["dashboard"].stop(signal.SIGKILL)
        await database.close()
        assert code == -signal.SIGKILL
        await ingest  # the writes go on while the consumer is dead
        await asyncio.to_thread(platform.restart, "dashboard")
    finally:
        if not ingest.done():
            ingest.cancel()
        if not database.is_closed():
            await database.close()
        await load.aclose()
    expected = load.truth.expected()
    counts, _ = await wait_for_counts(platform, region, expected, timeout=90)
    assert counts == expected, (counts, expected)
    lag, _ = await wait_lag_zero(bootstrap_, group, group_topics)
    assert lag == 0
    proof.measured(f"killed with {lag_at_kill} events not committed (lag before the load: {lag_at_start}) and "
                   f"{open_transactions} transaction(s) open; "
                   f"{expected['tubes_collected']} tubes and {expected['tubes_resulted']} results accepted, "
                   f"dashboard counts {counts['tubes_collected']}/{counts['tubes_resulted']}, positives "
                   f"{counts['positives']}/{expected['positives']}, backlog {counts['tube_backlog']}; 0 lost, 0 twice; "
                   f"counts right {time.monotonic() - killed_at:.1f} s after the kill; lag 0")


async def group_members(platform: MultiProcessPlatform, group: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap(platform))
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([wire(platform, group)])
        return sum(len(g[5]) for g in response.groups)
    finally:
        await admin.close()


@pytest.mark.proof("faults")
@pytest.mark.long_fault  # ~30 s: a process joins, then leaves
async def test_events_consumed_across_a_rebalance_are_applied_once(
    shared_platform: MultiProcessPlatform, proof,
) -> None:
    platform = shared_platform
    region = "440308"
    load = Load(platform, region)
    await load.setup()
    proof.injected("6,000 tubes and results posted while a second dashboard process joins the consumer group "
                   "(rebalance) and later leaves it with SIGTERM (rebalance again)")
    try:
        first = asyncio.create_task(load.ingest(1500, batch=250, pause=0.2))
        replica = await asyncio.to_thread(platform.add_replica, "dashboard")
        await first
        deadline = time.monotonic() + 30
        members = await group_members(platform, DASHBOARD_GROUP)
        while members < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            members = await group_members(platform, DASHBOARD_GROUP)
        assert members == 2, members
        second = asyncio.create_task(load.ingest(1500, batch=250, pause=0.2))
        await asyncio.sleep(1.0)
        code = await asyncio.to_thread(replica.stop, signal.SIGTERM)
        await second
        platform.replicas.remove(replica)
    finally:
        await load.aclose()
    expected = load.truth.expected()
    counts, seconds = await wait_for_counts(platform, region, expected, timeout=90)
    assert counts == expected, (counts, expected)
    assert code == 0
    proof.measured(f"group had {members} members, then 1; {expected['tubes_collected']} tubes and "
                   f"{expected['tubes_resulted']} results accepted, dashboard counts "
                   f"{counts['tubes_collected']}/{counts['tubes_resulted']}, backlog {counts['tube_backlog']}: "
                   f"0 lost, 0 twice (right {seconds:.1f} s after the last post)")


@pytest.mark.proof("faults")
@pytest.mark.long_fault  # ~30 s: a service process is killed and started again
async def test_a_producer_killed_while_publishing_loses_nothing_and_its_republished_events_count_once(
    shared_platform: MultiProcessPlatform, proof,
) -> None:
    """The testing service (outbox relay, and consumer of quarantine.test_due) killed with SIGKILL
    while results come in and its relay publishes: a batch published but not yet marked is sent
    again after the restart, and the consumers' inbox must make that harmless."""
    platform = shared_platform
    region = "440312"
    load = Load(platform, region, timeout=10.0)
    await load.setup()
    refused: list[list[str]] = []
    batches, size = 12, 400

    async def writer() -> None:
        for _ in range(batches):
            barcodes = load.barcodes(size)
            if not await load.post_tubes(barcodes) or not await load.post_results(
                    {b: "negative" for b in barcodes}):
                refused.append(barcodes)
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.3)

    proof.injected(f"{batches * size:,} tubes and results posted to the testing service; the service killed with "
                   "SIGKILL while its outbox had unpublished events, started again; refused batches sent again")
    database = await asyncpg.connect(dsn_of(platform, "testing"))
    task = asyncio.create_task(writer())
    try:
        deadline = time.monotonic() + 60
        pending = 0
        while time.monotonic() < deadline and not task.done():
            pending = await database.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            if len(load.truth.resulted) >= 3 * size and pending:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("never caught the testing service with unpublished events")
        await database.close()
        code = platform.services["testing"].stop(signal.SIGKILL)
        assert code == -signal.SIGKILL
        killed_at = time.monotonic()
        await asyncio.to_thread(platform.restart, "testing")
        restarted = time.monotonic() - killed_at
        await task
        for barcodes in refused:  # idempotent: what was stored before the kill comes back "unchanged"
            if set(barcodes) - load.truth.collected:
                assert await load.post_tubes(barcodes), load.truth.statuses
            assert await load.post_results({b: "negative" for b in barcodes}), load.truth.statuses
    finally:
        if not task.done():
            task.cancel()
        if not database.is_closed():
            await database.close()
        await load.aclose()
    expected = load.truth.expected()
    counts, _ = await wait_for_counts(platform, region, expected, timeout=90)
    assert counts == expected, (counts, expected)
    assert expected["tubes_collected"] == batches * size
    # How many events of this region the broker holds more than once (republished after the kill).
    on_broker: list[str] = []
    for topic in (topics.TEST_COLLECTED, topics.TEST_NEGATIVE):
        for message in await read_topic(bootstrap(platform), wire(platform, topic)):
            try:
                envelope = Envelope.from_bytes(message.value)
            except ValueError:
                continue  # another test's poison message on the shared topics
            if envelope.payload.get("region_code") == region:
                on_broker.append(str(envelope.id))
    duplicates = len(on_broker) - len(set(on_broker))
    assert len(set(on_broker)) == 2 * batches * size
    proof.measured(f"killed with {pending} events unpublished in its outbox; back in {restarted:.1f} s; "
                   f"{len(refused)} batches refused and sent again; {len(on_broker):,} messages on the broker for "
                   f"{len(set(on_broker)):,} events ({duplicates} republished); dashboard counts "
                   f"{counts['tubes_collected']:,}/{counts['tubes_resulted']:,} of "
                   f"{expected['tubes_collected']:,}/{expected['tubes_resulted']:,}: 0 lost, 0 twice")
