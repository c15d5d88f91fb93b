"""Kafka backend (aiokafka).

Producer: acks=all and idempotence, so a retried send is not written twice;
the key picks the partition (Kafka's murmur2), so one person's events keep
their order. Consumer: manual commits after the handler's effect, batches from
``getmany``, a supervisor that reconnects while the broker is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from urllib.parse import parse_qs, urlparse

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
)

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
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.topics import DLQ_SUFFIX

log = logging.getLogger("fangkong.bus.kafka")


class KafkaBus(Bus):
    """``kafka://host:port[,host:port]?partitions=6&replication=1&client_id=registry&namespace=staging``.

    A ``namespace`` prefixes every topic and consumer group on the broker
    (``staging.test.positive``), so several deployments — or tests — can share
    one cluster without reading each other's events. The application keeps
    using the plain topic names.
    """

    def __init__(self, url: str, *, partitions: int = 6, replication: int = 1, client_id: str = "fangkong") -> None:
        parsed = urlparse(url)
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        self.url = url
        self.bootstrap = parsed.netloc
        if not self.bootstrap:
            raise ValueError(f"kafka bus URL needs host:port, got {url!r}")
        self.partitions = int(query.get("partitions", partitions))
        self.replication = int(query.get("replication", replication))
        self.client_id = query.get("client_id", client_id)
        namespace = query.get("namespace", "")
        self._prefix = f"{namespace}." if namespace else ""
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._known_topics: set[str] = set()
        self._subscriptions: list[KafkaSubscription] = []

    # --- lifecycle ------------------------------------------------------
    async def start(self) -> None:
        """Best effort: a broker that is down now is retried on first use."""
        try:
            await self._ensure_producer()
        except BusUnavailable as exc:
            log.warning("kafka not reachable at start; will retry", extra={"error": str(exc)})

    async def stop(self) -> None:
        for sub in list(self._subscriptions):
            await sub.stop()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is not None:
                return self._producer
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap,
                client_id=self.client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                max_batch_size=512 * 1024,
                request_timeout_ms=15000,
                metadata_max_age_ms=30000,
            )
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                raise BusUnavailable(f"kafka producer cannot connect to {self.bootstrap}: {exc!r}") from exc
            self._producer = producer
            return producer

    async def ping(self) -> bool:
        try:
            producer = await self._ensure_producer()
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=3)
            return True
        except (BusUnavailable, KafkaError, OSError, TimeoutError):
            return False

    # --- topics ---------------------------------------------------------
    def wire(self, name: str) -> str:
        """The broker's name of a topic or group."""
        return self._prefix + name

    def local(self, name: str) -> str:
        """The application's name of a broker topic."""
        return name[len(self._prefix):] if self._prefix and name.startswith(self._prefix) else name

    @contextlib.asynccontextmanager
    async def _admin(self) -> AsyncIterator[AIOKafkaAdminClient]:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=f"{self.client_id}-admin",
                                    request_timeout_ms=15000)
        try:
            await admin.start()
            yield admin
        except (KafkaConnectionError, OSError) as exc:
            raise BusUnavailable(f"kafka admin cannot connect to {self.bootstrap}: {exc!r}") from exc
        finally:
            await admin.close()

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        missing = [self.wire(t) for t in dict.fromkeys(topics) if self.wire(t) not in self._known_topics]
        if not missing:
            return
        async with self._admin() as admin:
            existing = set(await admin.list_topics())
            new = [
                NewTopic(name=t, num_partitions=self.partitions, replication_factor=self.replication)
                for t in missing
                if t not in existing
            ]
            if new:
                try:
                    await admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass  # created by another replica in the meantime
        self._known_topics.update(missing)

    async def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        async with self._admin() as admin:
            offsets = await admin.list_consumer_group_offsets(self.wire(group))
        return {(self.local(tp.topic), tp.partition): meta.offset for tp, meta in offsets.items()
                if meta.offset >= 0}

    # --- publish --------------------------------------------------------
    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        await self.publish_records(
            [(e.type, e.key.encode(), e.to_bytes(), [("correlation_id", str(e.correlation_id).encode())])
             for e in envelopes]
        )

    async def publish_records(self, records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        if not records:
            return
        await self.ensure_topics([topic for topic, *_ in records])
        producer = await self._ensure_producer()
        try:
            futures = [
                await producer.send(self.wire(topic), value, key=key, headers=list(headers))
                for topic, key, value, headers in records
            ]
            await asyncio.gather(*futures)
        except (KafkaError, OSError) as exc:
            raise BusUnavailable(f"kafka publish failed: {exc!r}") from exc
        for topic, *_ in records:
            metrics.BUS_PUBLISHED.labels(topic).inc()

    # --- subscribe ------------------------------------------------------
    async def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: EnvelopeHandler | RecordHandler,
        *,
        raw: bool = False,
        max_batch: int = 500,
        retry: RetryPolicy | None = None,
    ) -> "KafkaSubscription":
        sub = KafkaSubscription(self, tuple(topics), group, BatchProcessor(group, handler, raw, retry or RetryPolicy()),
                                max_batch)
        self._subscriptions.append(sub)
        sub.start()
        return sub


class KafkaSubscription(Subscription):
    def __init__(self, bus: KafkaBus, topics: tuple[str, ...], group: str, processor: BatchProcessor,
                 max_batch: int) -> None:
        self._bus = bus
        self.topics = topics
        self.group = group
        self._processor = processor
        self._max_batch = max_batch
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None
        self._instance = uuid.uuid4().hex[:8]

    def _topics_and_dead_letters(self) -> list[str]:
        return [*self.topics, *(t + DLQ_SUFFIX for t in self.topics if not t.endswith(DLQ_SUFFIX))]

    def start(self) -> None:
        self._task = asyncio.create_task(self._supervise(), name=f"kafka-consumer-{self.group}-{self._instance}")

    def assignment(self) -> set[tuple[str, int]]:
        if self._consumer is None:
            return set()
        try:
            return {(self._bus.local(tp.topic), tp.partition) for tp in self._consumer.assignment()}
        except IllegalStateError:
            return set()

    async def _supervise(self) -> None:
        delay = 0.2
        while True:
            consumer = AIOKafkaConsumer(
                *(self._bus.wire(t) for t in self.topics),
                bootstrap_servers=self._bus.bootstrap,
                client_id=f"{self._bus.client_id}-{self.group}-{self._instance}",
                group_id=self._bus.wire(self.group),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self._max_batch,
                session_timeout_ms=10000,
                heartbeat_interval_ms=1000,
                metadata_max_age_ms=30000,
            )
            try:
                # Again at every (re)start: the broker may have been down at subscribe time.
                await self._bus.ensure_topics(self._topics_and_dead_letters())
                await consumer.start()
                self._consumer = consumer
                delay = 0.2
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except (KafkaError, OSError) as exc:
                log.warning("kafka consumer lost the broker; reconnecting",
                            extra={"group": self.group, "error": repr(exc)})
            except Exception:  # noqa: BLE001 - a consumer must not die silently; log and start over
                log.exception("kafka consumer failed; restarting", extra={"group": self.group})
            finally:
                self._consumer = None
                try:
                    await consumer.stop()
                except Exception:  # noqa: BLE001 - a consumer that never started may fail to stop
                    pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=self._max_batch)
            if not batches:
                continue
            records = [
                Record(self._bus.local(m.topic), m.partition, m.offset, m.key, m.value, tuple(m.headers or ()))
                for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition))
                for m in batches[tp]
            ]
            dead = await self._processor.process(records)
            if dead:
                await publish_dead_letters(self._bus, dead)
            offsets = {tp: messages[-1].offset + 1 for tp, messages in batches.items() if messages}
            try:
                await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group rebalanced while we worked: the new owner gets these
                # again and the inbox makes that harmless.
                log.warning("commit refused after rebalance", extra={"group": self.group, "error": repr(exc)})

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        if self in self._bus._subscriptions:
            self._bus._subscriptions.remove(self)
