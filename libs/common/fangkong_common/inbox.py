"""Idempotent consumers: the event ids a consumer group has applied.

The inbox row is written in the same transaction as the event's effect, so a
redelivered event (after a crash before commit, a rebalance, a replay) finds
its id and changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import DateTime, String, delete, func
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from fangkong_common.db import Base, dialect_insert
from fangkong_common.events.envelope import Envelope
from fangkong_common.logs import correlation_id


class InboxEntry(Base):
    __tablename__ = "inbox"

    consumer_group: Mapped[str] = mapped_column(String(200), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    topic: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


def _insert_ignoring_duplicates(dialect: str):
    return dialect_insert(dialect, InboxEntry).on_conflict_do_nothing(index_elements=["consumer_group", "event_id"])


@functools.cache
def _claim_statement(dialect: str):
    return _insert_ignoring_duplicates(dialect).returning(InboxEntry.event_id)


async def claim_new(session: AsyncSession, group: str, envelopes: Sequence[Envelope]) -> list[Envelope]:
    """The envelopes this group has not applied yet, recorded as applied in ``session``.

    One ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (executemany) per 500 events: the
    primary key decides what is new (no SELECT whose plan depends on table
    statistics), and a consumer racing on the same event waits for the other's
    commit, then finds it taken. Duplicates inside the batch count once.
    """
    unique: dict[str, Envelope] = {}
    for envelope in envelopes:
        unique.setdefault(str(envelope.id), envelope)
    statement = _claim_statement(session.get_bind().dialect.name)
    items = list(unique.items())
    claimed: set[str] = set()
    for start in range(0, len(items), 500):
        rows = [{"consumer_group": group, "event_id": event_id, "topic": envelope.type}
                for event_id, envelope in items[start : start + 500]]
        # executemany of one cached statement ("insertmanyvalues"), not a VALUES list compiled per batch.
        claimed.update(await session.scalars(statement, rows))
    return [envelope for event_id, envelope in items if event_id in claimed]


Apply = Callable[[AsyncSession, Envelope], Awaitable[None]]


def idempotent_handler(
    sessionmaker: async_sessionmaker[AsyncSession], group: str, apply: Apply
) -> Callable[[list[Envelope]], Awaitable[None]]:
    """A bus handler applying each new event of a batch in one transaction with its inbox rows."""

    async def handle(envelopes: list[Envelope]) -> None:
        async with sessionmaker() as session, session.begin():
            for envelope in await claim_new(session, group, envelopes):
                # Logs written while applying carry the correlation id of the request that caused it.
                token = correlation_id.set(str(envelope.correlation_id))
                try:
                    await apply(session, envelope)
                finally:
                    correlation_id.reset(token)

    return handle


ApplyBatch = Callable[[AsyncSession, list[Envelope]], Awaitable[None]]


def idempotent_batch_handler(
    sessionmaker: async_sessionmaker[AsyncSession], group: str, apply_batch: ApplyBatch
) -> Callable[[list[Envelope]], Awaitable[None]]:
    """Like ``idempotent_handler``, but the new events of a batch are applied in one
    call, so a read model can write them with a few set-based statements instead of
    one round trip per event."""

    async def handle(envelopes: list[Envelope]) -> None:
        async with sessionmaker() as session, session.begin():
            fresh = await claim_new(session, group, envelopes)
            if fresh:
                await apply_batch(session, fresh)

    return handle


async def purge(session: AsyncSession, before: datetime) -> int:
    """Forget applied ids older than the broker keeps messages (nothing older can come back)."""
    result = await session.execute(delete(InboxEntry).where(InboxEntry.applied_at < before.astimezone(UTC)))
    return result.rowcount or 0
