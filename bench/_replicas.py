"""Two replicas of a service on real Kafka: the dashboard's consumer group (`dashboard.read-models`,
every topic, 6 partitions a topic) drains the same backlog with one process, then with two.

For each phase: the dashboard is stopped (SIGTERM), a backlog of pools collected and resulted
negative is published straight to the platform's Kafka namespace (keyed by barcode, so it spreads
over the partitions; new barcodes and people every phase), then one — or two, started together —
`fangkong serve dashboard` processes are started and timed until the read model (over HTTP)
counts exactly the tubes collected and resulted that the backlog holds. More than that would be
an event counted twice; the scenario fails on any difference. Then it records which partitions
each member of the group holds (DescribeGroups), how many backlog events lay on them, and how many
each replica's /metrics says it consumed. At the end one dashboard process runs again, as before.

On a 2-core machine two replicas are not expected to be faster: they share the cores with Kafka,
PostgreSQL and the other services. What the run shows is that the work splits by partition and
the counts stay exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import Self

import httpx
from _platform import COUNTY, RATIO, dashboard_sums
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from fangkong_common.bus.kafka import KafkaBus
from fangkong_common.events import schemas as ev
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope
from prometheus_client.parser import text_string_to_metric_families

from tests.multiprocess import MultiProcessPlatform, ServiceProcess

GROUP = "dashboard.read-models"  # services/dashboard/dashboard/consumers.py
TOPICS = (topics.TEST_COLLECTED, topics.TEST_NEGATIVE)
COUNTS = ["tubes_collected", "tubes_resulted"]
PUBLISH_CHUNK = 5000


def backlog(phase: int, events: int) -> list[Envelope]:
    """``events`` envelopes: half pools of 10 collected, half the same pools resulted negative, each
    pair keyed by its barcode (one partition number in both topics, so a tube's two events keep
    their order). Barcodes and member keys are new in every phase."""
    now = datetime.now(UTC)
    out: list[Envelope] = []
    for t in range(events // 2):
        barcode = f"RB{phase}{t:09d}"
        keys = [f"{(0xBE << 200) + (phase << 64) + t * RATIO + m:064x}" for m in range(RATIO)]
        out.append(Envelope.wrap(ev.TestCollected(barcode=barcode, site_id="replicas", region_code=COUNTY,
                                                  ratio=RATIO, member_keys=keys, collected_at=now),
                                 source="bench", key=barcode))
        out.append(Envelope.wrap(ev.TestNegative(barcode=barcode, lab_id="replicas", region_code=COUNTY,
                                                 member_keys=keys, collected_at=now, resulted_at=now),
                                 source="bench", key=barcode))
    return out


class Probe:
    """The broker's view of the dashboard's group: end offsets, committed offsets, members."""

    def __init__(self, platform: MultiProcessPlatform) -> None:
        self.bus = KafkaBus(f"{platform.kafka_url}?namespace={platform.namespace}", client_id="bench-replicas")
        self.bootstrap = self.bus.bootstrap
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, client_id="bench-replicas-offsets")
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="bench-replicas-admin")

    async def __aenter__(self) -> Self:
        await self.bus.start()
        await self.bus.ensure_topics(TOPICS)
        await self.consumer.start()
        await self.admin.start()
        described = await self.admin.describe_topics([self.bus.wire(t) for t in TOPICS])
        self.counts = {self.bus.local(d["topic"]): len(d["partitions"]) for d in described}
        if set(self.counts) != set(TOPICS) or not all(self.counts.values()):
            raise SystemExit(f"replicas: the backlog topics' partitions are unknown: {described}")
        return self

    async def __aexit__(self, *exc) -> None:
        await self.admin.close()
        await self.consumer.stop()
        await self.bus.stop()

    def partitions(self) -> list[TopicPartition]:
        return [TopicPartition(self.bus.wire(t), p) for t in TOPICS for p in range(self.counts[t])]

    async def end_offsets(self) -> dict[tuple[str, int], int]:
        ends = await self.consumer.end_offsets(self.partitions())
        return {(self.bus.local(tp.topic), tp.partition): offset for tp, offset in ends.items()}

    async def lag(self) -> int:
        """Events on the backlog topics not yet committed by the group."""
        ends = await self.end_offsets()
        committed = await self.bus.committed_offsets(GROUP)
        return sum(end - committed.get(tp, 0) for tp, end in ends.items())

    async def members(self, stable_only: bool = False) -> list[dict]:
        """The group's members and the partitions each holds (none while the group rebalances, when
        ``stable_only``)."""
        [response] = await self.admin.describe_consumer_groups([self.bus.wire(GROUP)])
        [group] = response.to_object()["groups"]
        if stable_only and group["state"] != "Stable":
            return []
        members = []
        for member in group["members"]:
            assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
            held = sorted((self.bus.local(topic), p) for topic, parts in assignment.assignment for p in parts)
            members.append({"client_id": member["client_id"], "partitions": held})
        return sorted(members, key=lambda m: m["client_id"])

    async def publish(self, envelopes: list[Envelope]) -> None:
        for start in range(0, len(envelopes), PUBLISH_CHUNK):
            await self.bus.publish(envelopes[start:start + PUBLISH_CHUNK])


async def consumed(client: httpx.AsyncClient, replica: ServiceProcess) -> dict[str, int]:
    """fangkong_bus_consumed_total of the dashboard's group on one process, by topic (backlog topics)."""
    text = (await client.get(f"{replica.url}/metrics")).text
    out = dict.fromkeys(TOPICS, 0)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "fangkong_bus_consumed_total" and sample.labels.get("group") == GROUP
                    and sample.labels.get("topic") in out):
                out[sample.labels["topic"]] += int(sample.value)
    return out


async def stop_dashboards(platform: MultiProcessPlatform) -> None:
    everyone = [platform.services["dashboard"], *(r for r in platform.replicas if r.name == "dashboard")]
    await asyncio.gather(*(asyncio.to_thread(p.stop) for p in everyone))
    platform.replicas[:] = [r for r in platform.replicas if r.name != "dashboard"]


async def wait_caught_up(probe: Probe, timeout: float) -> None:
    """The group has committed everything on the backlog topics."""
    deadline = time.monotonic() + timeout
    while (lag := await probe.lag()) > 0:
        if time.monotonic() > deadline:
            raise SystemExit(f"replicas: the dashboard's group is still {lag} events behind after {timeout:.0f} s")
        await asyncio.sleep(0.25)


async def watch_group(probe: Probe, history: list[tuple[float, list[dict], dict]]) -> None:
    """Every stable assignment of the group as it forms, with the offsets committed at that moment:
    whatever is committed after it on a member's partitions, that member applied."""
    last = None
    while True:
        with contextlib.suppress(KafkaError):
            members = await probe.members(stable_only=True)
            if members and members != last:
                history.append((time.perf_counter(), members, await probe.bus.committed_offsets(GROUP)))
                last = members
        await asyncio.sleep(0.05)


async def drain(platform: MultiProcessPlatform, client: httpx.AsyncClient, replicas: int, before: dict,
                expected: dict, timeout: float) -> tuple[list[ServiceProcess], float, float | None, float]:
    """Start the processes together and wait until the read model counts exactly ``expected``; the
    processes, and when they were ready, first counted an event, counted them all."""
    dashboard = platform.services["dashboard"]
    dashboard.start()
    processes = [dashboard]
    if replicas == 2:
        processes.append(await asyncio.to_thread(platform.add_replica, "dashboard"))  # starts, waits ready
    await asyncio.to_thread(dashboard.wait_ready)
    ready = time.perf_counter()
    first = None
    deadline = time.monotonic() + timeout
    while True:
        seen = await dashboard_sums(client, platform, COUNTS)
        now = time.perf_counter()
        if first is None and any(seen[n] > before[n] for n in COUNTS):
            first = now
        if any(seen[n] > expected[n] for n in COUNTS):
            raise SystemExit(f"replicas ({replicas}): the dashboard counted {seen}, more than {expected}: "
                             f"events counted twice")
        if seen == expected:
            return processes, ready, first, now
        if time.monotonic() > deadline:
            raise SystemExit(f"replicas ({replicas}): the dashboard shows {seen}, expected {expected} "
                             f"after {timeout:.0f} s")
        await asyncio.sleep(0.2)


async def phase(platform: MultiProcessPlatform, probe: Probe, client: httpx.AsyncClient, number: int,
                replicas: int, events: int, timeout: float) -> dict:
    """``replicas`` dashboard processes drain a backlog of ``events`` (phase ``number``)."""
    await wait_caught_up(probe, timeout)  # whatever came before this phase is counted
    before = await dashboard_sums(client, platform, COUNTS)
    await stop_dashboards(platform)

    ends_before = await probe.end_offsets()
    published_at = time.perf_counter()
    await probe.publish(backlog(number, events))
    publish_s = time.perf_counter() - published_at
    ends = await probe.end_offsets()
    per_partition = {tp: ends[tp] - ends_before[tp] for tp in ends}
    if sum(per_partition.values()) != events:
        raise SystemExit(f"replicas: published {events} events but the topics grew by {sum(per_partition.values())}")
    expected = {name: before[name] + events // 2 for name in COUNTS}

    history: list[tuple[float, list[dict], dict]] = []
    watch = asyncio.create_task(watch_group(probe, history))
    started = time.perf_counter()
    try:
        processes, ready, first, done = await drain(platform, client, replicas, before, expected, timeout)
        # Everything committed, and still exactly counted once it is (a late redelivery would show now).
        await wait_caught_up(probe, timeout)
        for _ in range(50):  # a stable group (it may still be settling after a refused commit)
            if members := await probe.members(stable_only=True):
                break
            await asyncio.sleep(0.2)
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    after = await dashboard_sums(client, platform, COUNTS)
    if after != expected:
        raise SystemExit(f"replicas ({replicas}): after the commits the dashboard counts {after}, "
                         f"expected exactly {expected}")
    # Each dashboard process is one member of the group.
    if len(members) != replicas:
        raise SystemExit(f"replicas ({replicas}): {len(members)} members in the group for {replicas} "
                         f"process(es): {members}")
    settled = [(at, committed) for at, held, committed in history if held == members]
    if not settled:
        raise SystemExit(f"replicas ({replicas}): the final assignment was never seen while draining: {members}")
    split_at, committed_then = settled[0]

    split = []
    for index, member in enumerate(members, 1):
        held = [tp for tp in member["partitions"] if tp[0] in TOPICS]
        split.append({"member": index, "client_id": member["client_id"],
                      "partitions_total": len(member["partitions"]),
                      "backlog_partitions": {t: [p for topic, p in held if topic == t] for t in TOPICS},
                      "backlog_events_on_its_partitions": sum(per_partition[tp] for tp in held),
                      # committed on its partitions once the group had its final assignment (redeliveries
                      # included): what this member applied
                      "committed_after_split": sum(ends[tp] - max(committed_then.get(tp, 0), ends_before[tp])
                                                   for tp in held)})
    if any(not any(m["backlog_partitions"].values()) for m in split):
        raise SystemExit(f"replicas ({replicas}): a member holds no partition of the backlog topics: {split}")
    # What each process says it consumed (fangkong_bus_consumed_total; redeliveries included).
    by_process = [{"port": p.port, "consumed": sum((await consumed(client, p)).values())} for p in processes]
    total_consumed = sum(p["consumed"] for p in by_process)
    seconds = done - started
    drain_s = done - (first or started)
    return {"replicas": replicas, "members": len(members), "events": events,
            "publish_s": round(publish_s, 2), "seconds": round(seconds, 2), "events_per_s": round(events / seconds),
            "ready_s": round(ready - started, 2), "first_counted_s": round((first or done) - started, 2),
            "split_settled_s": round(split_at - started, 2),
            # from the first event counted to the last: the drain without the processes' start-up
            "drain_s": round(drain_s, 2), "drain_events_per_s": round(events / max(drain_s, 1e-3)),
            "expected": expected, "counted": after, "added": {n: after[n] - before[n] for n in COUNTS},
            "lost": 0, "twice": 0,
            "consumed": total_consumed, "redelivered": total_consumed - events,
            "all_replicas_consumed": all(p["consumed"] > 0 for p in by_process),
            "all_members_committed": all(m["committed_after_split"] > 0 for m in split),
            "split": split, "processes": by_process}


async def replicas(platform: MultiProcessPlatform, events: int, timeout: float) -> dict:
    dashboard = platform.services["dashboard"]
    async with Probe(platform) as probe, httpx.AsyncClient(timeout=60) as client:
        try:
            one = await phase(platform, probe, client, 1, 1, events, timeout)
            print(f"  replicas: one {one}", flush=True)
            two = await phase(platform, probe, client, 2, 2, events, timeout)
            print(f"  replicas: two {two}", flush=True)
        except (Exception, SystemExit):
            for process in [dashboard, *(r for r in platform.replicas if r.name == "dashboard")]:
                print(f"--- {process.log_path.name}\n{process.log_tail(6000)}", flush=True)
            raise
        finally:
            # As before: the original dashboard process alone (a failed phase may have left none).
            for replica in [r for r in platform.replicas if r.name == "dashboard"]:
                await asyncio.to_thread(replica.stop)
                platform.replicas.remove(replica)
            if dashboard.process is None or dashboard.process.poll() is not None:
                dashboard.start()
                await asyncio.to_thread(dashboard.wait_ready)
    return {"events": events, "partitions_per_topic": probe.counts[TOPICS[0]],
            "one": one, "two": two,
            "ratio": round(two["events_per_s"] / one["events_per_s"], 3),
            "drain_ratio": round(two["drain_events_per_s"] / one["drain_events_per_s"], 3),
            "exact": True, "both_consumed": two["all_replicas_consumed"]}
