"""Transactional outbox: events are written with the state change, then published.

``add(session, envelope)`` inside the service's own transaction; the
``OutboxRelay`` publishes pending rows in order, in batches, and marks them
sent. While the broker is down rows wait and the relay backs off; nothing is
lost. On PostgreSQL several relay replicas share the table with
``FOR UPDATE SKIP LOCKED``. A commit that added events wakes the relay of its
own process at once, so there is no fixed sleep between commit and publish;
the poll interval only bounds the delay for rows written by other processes.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, DateTime, Index, Integer, String, Text, delete, event, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from fangkong_common import metrics
from fangkong_common.aio import cancel_and_wait
from fangkong_common.bus.base import Bus, is_transient
from fangkong_common.db import Base, Database
from fangkong_common.events.envelope import Envelope

log = logging.getLogger("fangkong.outbox")

_PENDING_FLAG = "fangkong.outbox.pending"
_ROWS = "fangkong.outbox.rows"


class OutboxMessage(Base):
    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                     autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    envelope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("ix_outbox_pending", "seq", postgresql_where=published_at.is_(None),
              sqlite_where=published_at.is_(None)),
        Index("ix_outbox_published_at", "published_at"),
    )


def add(session: AsyncSession, *envelopes: Envelope) -> None:
    """Queue events in the caller's transaction; they are published after it commits.

    The rows are written with one INSERT executemany when the session flushes
    or commits (about twice as fast as ORM objects), and not at all if the
    transaction rolls back.
    """
    rows = session.sync_session.info.setdefault(_ROWS, [])
    rows.extend(
        {"event_id": str(e.id), "topic": e.type, "key": e.key, "envelope": e.model_dump_json()} for e in envelopes
    )
    session.sync_session.info[_PENDING_FLAG] = True


async def add_many(session: AsyncSession, envelopes: Sequence[Envelope]) -> None:
    """Like ``add`` for a large batch (thousands of events from one set-based use case),
    written at once: by COPY on PostgreSQL, one executemany on SQLite. Still in the
    caller's transaction; events buffered by ``add`` before it are written first, so
    the order of the outbox is the order of the calls."""
    if not envelopes:
        return
    buffered = session.sync_session.info.pop(_ROWS, None)
    if buffered:  # what add() buffered goes in first (a flush of a clean session would not write it)
        await session.execute(insert(OutboxMessage.__table__), buffered)
    rows = [(str(e.id), e.type, e.key, e.model_dump_json()) for e in envelopes]
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        raw = await connection.get_raw_connection()
        if not raw.driver_connection.is_in_transaction():
            # SQLAlchemy's asyncpg adapter opens the transaction on its first statement: a COPY
            # straight on the driver before that would commit on its own, outside the use case.
            await session.execute(select(1))
        await raw.driver_connection.copy_records_to_table(
            OutboxMessage.__tablename__, records=rows, columns=["event_id", "topic", "key", "envelope"])
    else:
        await session.execute(insert(OutboxMessage.__table__), [
            {"event_id": event_id, "topic": topic, "key": key, "envelope": envelope}
            for event_id, topic, key, envelope in rows])
    session.sync_session.info[_PENDING_FLAG] = True


# sync engine -> relays to wake after a commit that added outbox rows
_relays: "weakref.WeakKeyDictionary[object, set[OutboxRelay]]" = weakref.WeakKeyDictionary()


@event.listens_for(Session, "before_flush")
def _write_rows(session: Session, _flush_context, _instances) -> None:
    rows = session.info.pop(_ROWS, None)
    if rows:
        # Runs inside the async session's greenlet, where the sync API is allowed. The Core
        # table, not the ORM entity: a plain executemany without the ORM's bulk bookkeeping.
        session.execute(insert(OutboxMessage.__table__), rows)


@event.listens_for(Session, "before_commit")
def _write_rows_before_commit(session: Session) -> None:
    rows = session.info.pop(_ROWS, None)
    if rows:
        session.execute(insert(OutboxMessage.__table__), rows)


@event.listens_for(Session, "after_commit")
def _wake_relays(session: Session) -> None:
    if not session.info.pop(_PENDING_FLAG, False):
        return
    for relay in list(_relays.get(session.bind, ())):
        relay.wake()


@event.listens_for(Session, "after_rollback")
def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING_FLAG, None)
    session.info.pop(_ROWS, None)


class OutboxRelay:
    def __init__(
        self,
        database: Database,
        bus: Bus,
        *,
        service: str,
        batch_size: int = 500,
        poll_seconds: float = 0.5,
        retention: timedelta = timedelta(days=2),
    ) -> None:
        self.database = database
        self.bus = bus
        self.service = service
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.retention = retention
        self._wake = asyncio.Event()
        # One batch at a time per relay: SQLite has no SKIP LOCKED, so a second caller in
        # the same process (a test flushing, the loop) would otherwise publish rows twice.
        self._publishing = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._last_purge = datetime.min.replace(tzinfo=UTC)

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        _relays.setdefault(self.database.engine.sync_engine, set()).add(self)
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")

    async def stop(self) -> None:
        _relays.get(self.database.engine.sync_engine, set()).discard(self)
        await cancel_and_wait(self._task)
        self._task = None

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        async with self._publishing, self.database.sessionmaker() as session, session.begin():
            rows = (
                await session.execute(
                    select(OutboxMessage.seq, OutboxMessage.topic, OutboxMessage.key, OutboxMessage.envelope)
                    .where(OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.seq)
                    .limit(self.batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            await self.bus.publish_records(
                [(row.topic, row.key.encode(), row.envelope.encode(), []) for row in rows]
            )
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.seq.in_([row.seq for row in rows]))
                .values(published_at=datetime.now(UTC))
            )
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        return len(rows)

    async def pending_count(self) -> int:
        async with self.database.sessionmaker() as session:
            return await session.scalar(
                select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
            ) or 0

    async def purge(self) -> int:
        """Forget rows published longer ago than the retention."""
        cutoff = datetime.now(UTC) - self.retention
        async with self.database.sessionmaker() as session, session.begin():
            result = await session.execute(delete(OutboxMessage).where(OutboxMessage.published_at < cutoff))
        return result.rowcount or 0

    async def _run(self) -> None:
        failures = 0
        while True:
            self._wake.clear()
            try:
                published = await self.publish_pending()
                failures = 0
                await self._housekeeping()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any outage
                failures += 1
                metrics.OUTBOX_PUBLISH_ERRORS.labels(self.service).inc()
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "outbox publish failed; retrying",
                        extra={"service": self.service, "error": repr(exc), "failures": failures})
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(failures, 6)))
                continue
            if published >= self.batch_size:
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
            except TimeoutError:
                pass

    async def _housekeeping(self) -> None:
        now = datetime.now(UTC)
        if now - self._last_purge < timedelta(minutes=10):
            return
        self._last_purge = now
        await self.purge()
        metrics.OUTBOX_PENDING.labels(self.service).set(await self.pending_count())
