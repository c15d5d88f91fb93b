"""Idempotent consumption: claim_new and idempotent_handler on a SQLite file database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common.events import Envelope, topics
from fangkong_common.inbox import InboxEntry, claim_new, idempotent_handler, purge

KEY = "c" * 64


def _envelope(topic: str = topics.TEST_NEGATIVE) -> Envelope:
    return Envelope(type=topic, source="unit-test", key=KEY, payload={})


async def _inbox(sessionmaker: async_sessionmaker[AsyncSession]) -> set[tuple[str, str, str]]:
    async with sessionmaker() as session:
        rows = await session.execute(select(InboxEntry.consumer_group, InboxEntry.event_id, InboxEntry.topic))
        return {tuple(row) for row in rows}


async def _claim(sessionmaker: async_sessionmaker[AsyncSession], group: str, envelopes: list[Envelope]) -> list[Envelope]:
    async with sessionmaker() as session, session.begin():
        return await claim_new(session, group, envelopes)


# --- claim_new ----------------------------------------------------------------


async def test_new_events_are_returned_and_recorded(sessionmaker) -> None:
    a, b = _envelope(topics.TEST_POSITIVE), _envelope(topics.TEST_NEGATIVE)
    assert await _claim(sessionmaker, "dashboard", [a, b]) == [a, b]
    assert await _inbox(sessionmaker) == {
        ("dashboard", str(a.id), "test.positive"),
        ("dashboard", str(b.id), "test.negative"),
    }


async def test_second_claim_of_the_same_events_returns_nothing(sessionmaker) -> None:
    batch = [_envelope(), _envelope()]
    await _claim(sessionmaker, "dashboard", batch)
    assert await _claim(sessionmaker, "dashboard", batch) == []
    assert len(await _inbox(sessionmaker)) == 2


async def test_only_the_unseen_part_of_a_batch_is_returned_in_order(sessionmaker) -> None:
    a, b, c, d = (_envelope() for _ in range(4))
    await _claim(sessionmaker, "dashboard", [b, d])
    assert await _claim(sessionmaker, "dashboard", [a, b, c, d]) == [a, c]


async def test_duplicates_inside_one_batch_count_once(sessionmaker) -> None:
    a, b = _envelope(), _envelope()
    redelivered_a = Envelope.from_bytes(a.to_bytes())  # an equal copy, as off the wire
    assert await _claim(sessionmaker, "dashboard", [a, b, a, redelivered_a, b]) == [a, b]
    assert len(await _inbox(sessionmaker)) == 2


async def test_consumer_groups_are_independent(sessionmaker) -> None:
    batch = [_envelope(), _envelope()]
    assert await _claim(sessionmaker, "dashboard", batch) == batch
    assert await _claim(sessionmaker, "quarantine", batch) == batch
    assert await _claim(sessionmaker, "dashboard", batch) == []
    assert await _claim(sessionmaker, "quarantine", batch) == []
    assert {group for group, _, _ in await _inbox(sessionmaker)} == {"dashboard", "quarantine"}


async def test_a_rolled_back_claim_is_not_remembered(sessionmaker) -> None:
    batch = [_envelope()]
    async with sessionmaker() as session:
        assert await claim_new(session, "dashboard", batch) == batch
        await session.rollback()
    assert await _inbox(sessionmaker) == set()
    assert await _claim(sessionmaker, "dashboard", batch) == batch


async def test_large_batches_are_checked_in_chunks(sessionmaker) -> None:
    batch = [_envelope() for _ in range(1201)]
    assert len(await _claim(sessionmaker, "dashboard", batch)) == 1201
    assert await _claim(sessionmaker, "dashboard", batch) == []
    extra = _envelope()
    assert await _claim(sessionmaker, "dashboard", [*batch, extra]) == [extra]


async def test_empty_batch_claims_nothing(sessionmaker) -> None:
    assert await _claim(sessionmaker, "dashboard", []) == []


async def test_purge_forgets_only_ids_older_than_the_cutoff(sessionmaker) -> None:
    await _claim(sessionmaker, "dashboard", [_envelope(), _envelope()])
    async with sessionmaker() as session, session.begin():
        assert await purge(session, datetime.now(UTC) - timedelta(hours=1)) == 0
    assert len(await _inbox(sessionmaker)) == 2
    async with sessionmaker() as session, session.begin():
        assert await purge(session, datetime.now(UTC) + timedelta(minutes=1)) == 2
    assert await _inbox(sessionmaker) == set()


# --- idempotent_handler -------------------------------------------------------


class _CounterBase(DeclarativeBase):
    pass


class Applied(_CounterBase):
    """One row per application of an event: a duplicate application shows as a second row."""

    __tablename__ = "applied"

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36))


@pytest.fixture
async def counter(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_CounterBase.metadata.create_all)


async def _applied(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(select(Applied.event_id, func.count()).group_by(Applied.event_id))
        return {event_id: count for event_id, count in rows}


async def _record(session: AsyncSession, envelope: Envelope) -> None:
    session.add(Applied(event_id=str(envelope.id)))


async def test_handler_applies_each_event_once_across_redelivery(sessionmaker, counter) -> None:
    handle = idempotent_handler(sessionmaker, "dashboard", _record)
    a, b, c = _envelope(), _envelope(), _envelope()
    await handle([a, b])
    await handle([a, b])  # redelivered after a rebalance
    await handle([b, c, c])  # overlapping batch with an inner duplicate
    assert await _applied(sessionmaker) == {str(a.id): 1, str(b.id): 1, str(c.id): 1}


async def test_handlers_of_different_groups_each_apply_the_event(sessionmaker, counter) -> None:
    a = _envelope()
    await idempotent_handler(sessionmaker, "dashboard", _record)([a])
    await idempotent_handler(sessionmaker, "quarantine", _record)([a])
    assert await _applied(sessionmaker) == {str(a.id): 2}


async def test_failed_batch_is_rolled_back_and_applied_on_redelivery(sessionmaker, counter) -> None:
    a, b = _envelope(), _envelope()
    fail_on = {b.id}

    async def flaky(session: AsyncSession, envelope: Envelope) -> None:
        await _record(session, envelope)
        if envelope.id in fail_on:
            raise RuntimeError("crash before commit")

    handle = idempotent_handler(sessionmaker, "dashboard", flaky)
    with pytest.raises(RuntimeError):
        await handle([a, b])
    # nothing of the batch stuck: neither its effects nor its inbox rows
    assert await _applied(sessionmaker) == {}
    assert await _inbox(sessionmaker) == set()

    fail_on.clear()
    await handle([a, b])
    assert await _applied(sessionmaker) == {str(a.id): 1, str(b.id): 1}
