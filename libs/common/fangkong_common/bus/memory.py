"""In-process bus with Kafka's semantics: partitioned topics keyed like Kafka,
consumer groups that split partitions, offsets committed only after the
handler's effect, redelivery of what was not committed, dead-letter topics.

For the embedded mode (one process) and unit tests. Messages live in memory;
with ``memory://name?journal=PATH`` (what `fangkong up` uses) they are also
written to a journal file, so a consumer's backlog survives the process
(see journal.py). The deployed mode uses Kafka.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fangkong_common import metrics
from fangkong_common.aio import cancel_and_wait
from fangkong_common.bus.base import (
    BatchProcessor,
    Bus,
    BusUnavailable,
    EnvelopeHandler,
    Record,
    RecordHandler,
    RetryPolicy,
    Subscription,
    publish_dead_letters,
)
from fangkong_common.bus.journal import Journal
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.topics import dlq

log = logging.getLogger("fangkong.bus.memory")

_member_ids = itertools.count(1)
# Committed records between two trims of a journaled bus.
TRIM_EVERY = 20_000


class _Log(list):
    """One partition: its records from offset ``base`` on (earlier ones were trimmed from the journal)."""

    base = 0

    @property
    def end(self) -> int:
        return self.base + len(self)


@dataclass
class _Group:
    name: str
    members: list["MemorySubscription"] = field(default_factory=list)
    committed: dict[tuple[str, int], int] = field(default_factory=dict)
    generation: int = 0


class MemoryBus(Bus):
    def __init__(self, url: str = "memory://", partitions: int = 4, journal: Path | None = None) -> None:
        self.url = url
        self.partitions = partitions
        self._logs: dict[str, list[_Log]] = {}
        self._groups: dict[str, _Group] = {}
        self._condition: asyncio.Condition | None = None
        self._condition_loop: asyncio.AbstractEventLoop | None = None
        self._outage = False
        self._committed_since_trim = 0
        self._journal = Journal(journal, partitions) if journal else None
        if self._journal is not None:
            self._reload(self._journal)

    def _reload(self, journal: Journal) -> None:
        """What an earlier process left: every group's offsets and the records some group still needs."""
        self.partitions = journal.partitions
        journal.trim()
        for name, committed in journal.committed().items():
            self._groups[name] = _Group(name, committed=committed)
        for (topic, partition), end in journal.ends().items():
            self._topic(topic)[partition].base = end
        for record in journal.records():
            log_ = self._topic(record.topic)[record.partition]
            if not log_:
                log_.base = record.offset
            log_.append(record)
        log.info("in-process bus reloaded its journal", extra={"backlog": self.backlog()})

    def _consumed(self, records: int) -> None:
        """With a journal (a long-running embedded platform), forget what every group has consumed,
        now and then, in memory and on disk; without one, tests may still read every record."""
        if self._journal is None:
            return
        self._committed_since_trim += records
        if self._committed_since_trim < TRIM_EVERY:
            return
        self._committed_since_trim = 0
        for (topic, partition), floor in self._journal.trim().items():
            log_ = self._topic(topic)[partition]
            if floor > log_.base:
                del log_[: floor - log_.base]
                log_.base = floor

    @property
    def _changed(self) -> asyncio.Condition:
        """The wake-up for idle consumers, bound to the running loop (a bus named
        in one test's loop may be reused in the next)."""
        loop = asyncio.get_running_loop()
        if self._condition is None or self._condition_loop is not loop:
            self._condition = asyncio.Condition()
            self._condition_loop = loop
        return self._condition

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # --- topics -----------------------------------------------------------
    def _topic(self, topic: str) -> list[_Log]:
        if topic not in self._logs:
            self._logs[topic] = [_Log() for _ in range(self.partitions)]
        return self._logs[topic]

    def partition_for(self, key: bytes | None, topic: str) -> int:
        if key is None:
            return sum(len(p) for p in self._topic(topic)) % self.partitions
        return zlib.crc32(key) % self.partitions

    def records(self, topic: str) -> list[Record]:
        """Every record of a topic, partition by partition (for tests and tools)."""
        return [r for part in self._topic(topic) for r in part]

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._topic(topic)

    async def ping(self) -> bool:
        return not self._outage

    def simulate_outage(self, down: bool) -> None:
        """Make publishing fail as a stopped broker would (tests of the outbox and DLQ paths)."""
        self._outage = down

    async def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        state = self._groups.get(group)
        return dict(state.committed) if state else {}

    def backlog(self) -> int:
        """Records not yet committed by a group that has members: what a stop would lose."""
        total = 0
        for group in self._groups.values():
            topics = {t for member in group.members for t in member.topics}
            for topic in topics:
                for partition, log_ in enumerate(self._topic(topic)):
                    total += log_.end - max(log_.base, group.committed.get((topic, partition), 0))
        return total

    # --- publish ----------------------------------------------------------
    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.publish_records(
            [(e.type, e.key.encode(), e.to_bytes(), [("correlation_id", str(e.correlation_id).encode())])
             for e in envelopes]
        )

    async def publish_records(self, records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        if self._outage:
            raise BusUnavailable("in-memory bus is simulating an outage")
        ends: dict[tuple[str, int], int] = {}
        batch: list[Record] = []
        for topic, key, value, headers in records:
            partition = self.partition_for(key, topic)
            offset = ends.get((topic, partition), self._topic(topic)[partition].end)
            ends[(topic, partition)] = offset + 1
            batch.append(Record(topic, partition, offset, key, value, tuple(headers)))
        if self._journal is not None:
            # On disk first: once this returns, the outbox forgets the events. Synchronous on
            # purpose: no other publisher may take these offsets while the write is under way.
            self._journal.append(batch)
        for record in batch:
            self._topic(record.topic)[record.partition].append(record)
            metrics.BUS_PUBLISHED.labels(record.topic).inc()
        async with self._changed:
            self._changed.notify_all()

    # --- groups -----------------------------------------------------------
    def _rebalance(self, group: _Group) -> None:
        group.generation += 1
        members = sorted(group.members, key=lambda m: m.member_id)
        for member in members:
            member._assigned = {}
        if not members:
            return
        topics = sorted({t for m in members for t in m.topics})
        pairs = [(t, p) for t in topics for p in range(len(self._topic(t)))]
        for index, pair in enumerate(pairs):
            member = members[index % len(members)]
            member._assigned[pair] = max(group.committed.get(pair, 0), self._topic(pair[0])[pair[1]].base)

    async def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: EnvelopeHandler | RecordHandler,
        *,
        raw: bool = False,
        max_batch: int = 500,
        retry: RetryPolicy | None = None,
    ) -> "MemorySubscription":
        state = self._groups.setdefault(group, _Group(group))
        if self._journal is not None:
            self._journal.subscribed(group, topics)
        sub = MemorySubscription(
            self, state, tuple(topics), BatchProcessor(group, handler, raw, retry or RetryPolicy()), max_batch
        )
        for topic in topics:
            self._topic(topic)
        state.members.append(sub)
        self._rebalance(state)
        sub._task = asyncio.create_task(sub._run(), name=f"memory-consumer-{group}-{sub.member_id}")
        async with self._changed:
            self._changed.notify_all()
        return sub

    async def _leave(self, sub: "MemorySubscription") -> None:
        if sub in sub._group.members:
            sub._group.members.remove(sub)
            self._rebalance(sub._group)
            async with self._changed:
                self._changed.notify_all()


class MemorySubscription(Subscription):
    def __init__(
        self, bus: MemoryBus, group: _Group, topics: tuple[str, ...], processor: BatchProcessor, max_batch: int
    ) -> None:
        self._bus = bus
        self._group = group
        self.group = group.name
        self.topics = topics
        self._processor = processor
        self._max_batch = max_batch
        self.member_id = next(_member_ids)
        # partition -> next offset to hand to the handler (reset from the
        # group's committed offsets at every rebalance)
        self._assigned: dict[tuple[str, int], int] = {}
        self._task: asyncio.Task | None = None

    def assignment(self) -> set[tuple[str, int]]:
        return set(self._assigned)

    def _fetch(self) -> tuple[int, list[Record]]:
        batch: list[Record] = []
        for (topic, partition), position in sorted(self._assigned.items()):
            log_ = self._bus._topic(topic)[partition]
            room = self._max_batch - len(batch)
            if room <= 0:
                break
            start = max(position, log_.base) - log_.base
            batch.extend(log_[start : start + room])
        return self._group.generation, batch

    async def _run(self) -> None:
        while True:
            generation, batch = self._fetch()
            if not batch:
                async with self._bus._changed:
                    generation_now, pending = self._fetch()
                    if not pending:
                        await self._bus._changed.wait()
                continue
            dead = await self._processor.process(batch)
            if dead:
                await publish_dead_letters(self._bus, dead)
            self._commit(generation, batch)

    def _commit(self, generation: int, batch: list[Record]) -> None:
        last: dict[tuple[str, int], int] = {}
        for record in batch:
            last[(record.topic, record.partition)] = record.offset + 1
        for pair, offset in last.items():
            # Like Kafka after a rebalance: a member may only commit partitions it still owns.
            if pair in self._assigned:
                self._group.committed[pair] = max(self._group.committed.get(pair, 0), offset)
                if generation == self._group.generation:
                    self._assigned[pair] = offset
                else:
                    self._assigned[pair] = self._group.committed[pair]
        if self._bus._journal is not None:
            owned = {pair: self._group.committed[pair] for pair in last if pair in self._assigned}
            if owned:
                self._bus._journal.commit(self._group.name, owned)
            self._bus._consumed(len(batch))

    async def stop(self) -> None:
        """Leave the group; whatever was fetched but not committed is redelivered."""
        await cancel_and_wait(self._task)
        self._task = None
        await self._bus._leave(self)
