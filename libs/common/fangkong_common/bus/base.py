"""The bus interface and the consumer semantics both backends share.

A handler receives a batch of envelopes and must apply their effect in one
transaction (normally with the inbox, so redelivery is harmless). The bus
commits the batch's offsets only after the handler returned. When a handler
fails:

* transient errors (database or network down) are retried with backoff, as
  long as it takes: the events are fine, the world is not;
* any other error is retried a few times, then the batch is split and replayed
  one event at a time so the one that keeps failing is isolated and sent to
  ``<topic>.dlq`` with the error in its headers; the others are applied.

Messages that are not a valid envelope (or whose payload breaks its versioned
schema) go straight to the dead-letter topic.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from pydantic import ValidationError

from fangkong_common import metrics
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import PAYLOAD_MODELS, UnknownEventError, payload_model
from fangkong_common.events.topics import dlq

log = logging.getLogger("fangkong.bus")


@dataclass(frozen=True)
class Record:
    """One message as the broker stores it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None


@dataclass(frozen=True)
class DeadLetter:
    record: Record
    reason: str
    error_type: str
    group: str

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            *[(k, v) for k, v in self.record.headers if not k.startswith("dlq.")],
            ("dlq.reason", self.reason[:4000].encode()),
            ("dlq.error_type", self.error_type.encode()),
            ("dlq.original_topic", self.record.topic.encode()),
            ("dlq.original_partition", str(self.record.partition).encode()),
            ("dlq.original_offset", str(self.record.offset).encode()),
            ("dlq.consumer_group", self.group.encode()),
        ]

    @property
    def topic(self) -> str:
        return dlq(self.record.topic)


EnvelopeHandler = Callable[[list[Envelope]], Awaitable[None]]
RecordHandler = Callable[[list[Record]], Awaitable[None]]


class PermanentError(Exception):
    """Raise from a handler for an event that can never be applied: no retries."""


class BusUnavailable(ConnectionError):
    """The broker cannot be reached now; try again later."""


# SQLSTATEs of a database that is away or restarting, not of a bad statement: connection
# exceptions (08xxx), shutting down or starting up (57P01-57P03), too many connections; and a
# transaction chosen as a deadlock victim or failing serialization (40P01, 40001), which is retried
# by definition (two consumers of a group touching the same rows).
# asyncpg's "the database system is shutting down / starting up" arrives as a plain DBAPIError
# (not OperationalError), so only its code says it is transient.
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300", "40P01", "40001")


def _sqlstate(exc: BaseException | None) -> str | None:
    """The SQLSTATE of the database error in ``exc`` (wrapped by SQLAlchemy or not), if any."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if isinstance(code, str):
            return code
        exc = getattr(exc, "orig", None) or exc.__cause__
    return None


def is_transient(exc: BaseException) -> bool:
    """True for errors that say the infrastructure is down, not that the event is bad."""
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return True
    try:
        from sqlalchemy import exc as sa_exc
    except ImportError:  # pragma: no cover - sqlalchemy is a dependency
        return False
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DisconnectionError):
        return True
    code = _sqlstate(exc)
    return code is not None and code.startswith(_TRANSIENT_SQLSTATES)


@dataclass
class RetryPolicy:
    attempts: int = 3
    """Tries of a non-transient error before isolating the failing event."""
    base_delay: float = 0.05
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return ceiling / 2 + random.random() * ceiling / 2


def parse_record(record: Record) -> Envelope:
    """Envelope, and the payload against its versioned model when the type is ours."""
    envelope = Envelope.from_bytes(record.value)
    if any(event_type == envelope.type for event_type, _ in PAYLOAD_MODELS):
        payload_model(envelope.type, envelope.version).model_validate(envelope.payload)
    return envelope


@dataclass
class BatchProcessor:
    """Runs a handler over a batch with the retry / isolate / dead-letter rules."""

    group: str
    handler: EnvelopeHandler | RecordHandler
    raw: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    async def process(self, records: Sequence[Record]) -> list[DeadLetter]:
        dead: list[DeadLetter] = []
        items: list[tuple[Record, object]] = []
        for record in records:
            if self.raw:
                items.append((record, record))
                continue
            try:
                items.append((record, parse_record(record)))
            except (ValidationError, UnknownEventError, ValueError) as exc:
                dead.append(DeadLetter(record, f"unparseable: {exc}", type(exc).__name__, self.group))
        if items:
            dead.extend(await self._apply(items))
        for letter in dead:
            metrics.BUS_DEAD_LETTERS.labels(self.group, letter.record.topic).inc()
            log.warning(
                "dead letter",
                extra={"group": self.group, "topic": letter.record.topic,
                       "offset": letter.record.offset, "reason": letter.reason},
            )
        for record, _ in items:
            metrics.BUS_CONSUMED.labels(self.group, record.topic).inc()
        return sorted(dead, key=lambda d: (d.record.topic, d.record.partition, d.record.offset))

    async def _apply(self, items: list[tuple[Record, object]]) -> list[DeadLetter]:
        error = await self._call_with_retries([value for _, value in items])
        if error is None:
            return []
        if len(items) == 1:
            return [DeadLetter(items[0][0], repr(error), type(error).__name__, self.group)]
        # Isolate: replay one at a time, in order, so one bad event does not block its batch.
        dead: list[DeadLetter] = []
        for item in items:
            dead.extend(await self._apply([item]))
        return dead

    async def _call_with_retries(self, values: list) -> BaseException | None:
        """None on success; the last error once a non-transient one exhausted its tries."""
        attempt = 0
        failures = 0
        while True:
            try:
                await self.handler(values)
                return None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - every handler error is classified here
                attempt += 1
                if is_transient(exc):
                    metrics.BUS_HANDLER_RETRIES.labels(self.group, "transient").inc()
                    log.warning("transient handler error, retrying", extra={"group": self.group, "error": repr(exc)})
                else:
                    failures += 1
                    if isinstance(exc, PermanentError) or failures >= self.retry.attempts:
                        return exc
                    metrics.BUS_HANDLER_RETRIES.labels(self.group, "error").inc()
                await asyncio.sleep(self.retry.delay(min(attempt, 10)))


async def publish_dead_letters(bus: "Bus", dead: Sequence[DeadLetter]) -> None:
    """Publish dead letters, waiting out a broker outage: the offsets of a batch are
    committed only after its dead letters are safely on their topic."""
    delay = 0.05
    while True:
        try:
            await bus.publish_records([(d.topic, d.record.key, d.record.value, d.headers()) for d in dead])
            return
        except BusUnavailable as exc:
            log.warning("dead letters not published yet", extra={"error": repr(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Subscription(abc.ABC):
    """A running consumer in a group. ``stop`` leaves the group without committing
    what is being processed, so it is redelivered to the group."""

    group: str
    topics: tuple[str, ...]

    @abc.abstractmethod
    def assignment(self) -> set[tuple[str, int]]: ...

    async def wait_assigned(self, timeout: float = 30.0) -> set[tuple[str, int]]:
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"group {self.group} got no partitions within {timeout}s")
            await asyncio.sleep(0.05)
        return self.assignment()

    @abc.abstractmethod
    async def stop(self) -> None: ...


class Bus(abc.ABC):
    """Publish batches of envelopes; subscribe handlers under consumer groups.

    The topic of an envelope is its type. The partition is chosen by the key, so
    the events of one person are consumed in the order they were published.
    """

    url: str

    async def start(self) -> None:  # noqa: B027 - optional hook
        pass

    async def stop(self) -> None:  # noqa: B027 - optional hook
        pass

    @abc.abstractmethod
    async def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Publish all, or raise: an error means any of them may not have been sent."""

    @abc.abstractmethod
    async def publish_records(self, records: Sequence[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]]) -> None:
        """Publish raw (topic, key, value, headers): dead letters and tests of bad input."""

    @abc.abstractmethod
    async def subscribe(
        self,
        topics: Sequence[str],
        group: str,
        handler: EnvelopeHandler | RecordHandler,
        *,
        raw: bool = False,
        max_batch: int = 500,
        retry: RetryPolicy | None = None,
    ) -> Subscription: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the broker answers (readiness)."""

    async def ensure_topics(self, topics: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Create the topics (and nothing else) where the backend needs it."""

    @abc.abstractmethod
    async def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """(topic, partition) -> next offset the group will read (what it committed)."""
