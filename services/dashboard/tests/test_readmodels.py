"""Read models from events: the numbers, region roll-up, replay and idempotency, on both buses and databases."""

from __future__ import annotations

import random

import pytest

from fangkong_common.testing import eventually, running

from dashboard import queries
from dashboard.config import Settings
from dashboard.main import create_app
from dashboard.readmodel import apply_batch
from dashboard.models import Base as _Base  # noqa: F401

from outbreak_events import BEIJING_CHAOYANG, DAY, EXPECTED_SHENZHEN, outbreak

ALL = list(EXPECTED_SHENZHEN)


async def levels(h, region: str | None) -> dict[str, int]:
    async with h.session() as session:
        values = await queries.sums(session, region, ALL, None, DAY, by_dimension=False)
    return {name: values.get((name, ""), 0) for name in ALL}


async def kpis(h, region):
    async with h.session() as session:
        return {k["name"]: (k["numerator"], k["denominator"]) for k in await queries.kpis(session, region, DAY)}


async def test_outbreak_on_the_bus_gives_the_expected_numbers(database_url: str, bus_url: str) -> None:
    events = outbreak()
    app = create_app(Settings(database_url=database_url, bus_url=bus_url))
    async with running(app) as h:
        await h.bus.publish(events)

        async def settled():
            got = await levels(h, "440300")
            assert got == EXPECTED_SHENZHEN
            return True

        await eventually(settled, timeout=60)
        assert await kpis(h, "440300") == {"tested": (4, 4), "isolated": (1, 2), "treated": (1, 1),
                                            "managed": (2, 5)}
        # Rolled up: county → city → province; Beijing's case is not Shenzhen's.
        assert (await levels(h, "440305"))["returnees"] == 6
        assert (await levels(h, "440304"))["contacts"] == 3
        assert (await levels(h, "440000"))["returnees"] == 7  # Guangzhou's returnee joins at the province
        beijing = await levels(h, BEIJING_CHAOYANG[:2] + "0000")
        assert beijing["positives"] == 1 and beijing["cases"] == 1
        assert (await levels(h, "440300"))["cases"] == 1

        # The same events again (a replay, a redelivery): nothing changes.
        await h.bus.publish(events)
        await h.bus.publish(events[:5])
        # Wait for a marker event published after the duplicates to be applied.
        marker = outbreak()[0].model_copy(update={"id": __import__("uuid").uuid4()})
        await h.bus.publish([marker])

        async def marker_applied():
            from sqlalchemy import select
            from fangkong_common.inbox import InboxEntry
            async with h.session() as session:
                return await session.scalar(select(InboxEntry.event_id).where(InboxEntry.event_id == str(marker.id)))

        await eventually(marker_applied, timeout=60)
        assert await levels(h, "440300") == EXPECTED_SHENZHEN


async def test_replay_in_any_order_into_an_empty_database_gives_the_same_numbers(database_url: str) -> None:
    """Repeated facts under new event ids and a shuffled order change nothing either."""
    events = outbreak()
    app = create_app(Settings(database_url=database_url, bus_url="memory://replay-order"))
    async with running(app) as h:
        shuffled = events[:]
        random.Random(7).shuffle(shuffled)
        # Re-sent facts under fresh ids (a producer retrying after a lost ack, a re-import).
        repeats = [e.model_copy(update={"id": __import__("uuid").uuid4()}) for e in events]
        for start in range(0, len(shuffled), 4):
            async with h.session() as session, session.begin():
                await apply_batch(session, shuffled[start:start + 4])
        async with h.session() as session, session.begin():
            await apply_batch(session, repeats)
        assert await levels(h, "440300") == EXPECTED_SHENZHEN
        assert await kpis(h, "440300") == {"tested": (4, 4), "isolated": (1, 2), "treated": (1, 1),
                                            "managed": (2, 5)}

        # Facts past their retention are purged; what they established stays, even when the
        # events come again.
        from datetime import UTC, datetime, timedelta
        from sqlalchemy import func, select
        from dashboard.models import Fact
        from dashboard.stream import purge
        # Nothing is purged while the newest fact is recent (event time, not wall clock) ...
        await purge(h.app, now=datetime.now(UTC) + timedelta(days=400))
        async with h.session() as session:
            assert await session.scalar(select(func.count()).select_from(Fact)) > 0
        # ... and everything once the retention is passed.
        await purge(h.app, facts_before=DAY + timedelta(days=1))
        async with h.session() as session:
            assert await session.scalar(select(func.count()).select_from(Fact)) == 0
        async with h.session() as session, session.begin():
            await apply_batch(session, [e.model_copy(update={"id": __import__("uuid").uuid4()}) for e in events])
        assert await levels(h, "440300") == EXPECTED_SHENZHEN


async def test_an_event_the_projection_cannot_read_goes_to_the_dead_letter_topic(tmp_path) -> None:
    """A malformed payload must not stop the read models: it is dead-lettered, the rest applied."""
    from fangkong_common.events.envelope import Envelope
    from fangkong_common.events.topics import dlq

    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'dlq.db'}", bus_url="memory://dash-dlq"))
    async with running(app) as h:
        good = outbreak()[0]
        bad = Envelope(type="test.positive", source="test", key=good.key, payload={"person_key": "not-a-key"})
        await h.bus.publish([bad, good])

        async def applied():
            got = await levels(h, "440300")
            return got["returnees"] == 1 and h.bus.records(dlq("test.positive"))

        await eventually(applied, timeout=60)
        [dead] = h.bus.records(dlq("test.positive"))
        assert dict(dead.headers)["dlq.consumer_group"] == b"dashboard.read-models"


async def _apply_retrying(h, events) -> None:
    """What the bus does when a batch fails (a deadlock victim, a lock timeout): try again."""
    import asyncio

    for attempt in range(5):
        try:
            async with h.session() as session, session.begin():
                await apply_batch(session, events)
            return
        except Exception:  # noqa: BLE001
            if attempt == 4:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_concurrent_consumers_see_each_others_new_rows(postgres_url: str) -> None:
    """Two replicas (two partitions) applying at once a due test and the swab that takes it: the one
    creates the due-test row, the other the swab fact, neither committed yet. Each due test must end
    up taken (found when a second replica was added for the scale-out run)."""
    import asyncio

    from fangkong_common.events import schemas as ev
    from outbreak_events import SHENZHEN_NANSHAN, T0, order_id, pk, wrap

    app = create_app(Settings(database_url=postgres_url, bus_url="memory://dash-new-rows"))
    async with running(app) as h:
        people = range(200, 240)
        for n in people:
            due = wrap(ev.QuarantineTestDue(order_id=order_id(n), person_key=pk(n), region_code=SHENZHEN_NANSHAN,
                                            due_date=DAY, stage_index=0))
            swab = wrap(ev.TestCollected(barcode=f"race-{n}", site_id="s", region_code=SHENZHEN_NANSHAN, ratio=1,
                                         member_keys=[pk(n)], collected_at=T0))
            await asyncio.gather(_apply_retrying(h, [due]), _apply_retrying(h, [swab]))
        got = await levels(h, "440300")
        assert (got["tests_due"], got["tests_due_tested"]) == (len(people), len(people))


@pytest.mark.postgres
async def test_concurrent_consumers_do_not_lose_each_others_updates(postgres_url: str) -> None:
    """Two replicas applying an admission and a release of the same order at once: the state rows are
    locked, so every order ends released with nobody left counted as held at a site."""
    import asyncio
    from datetime import timedelta

    from fangkong_common.events import schemas as ev
    from outbreak_events import SHENZHEN_NANSHAN, T0, order_id, pk, stage, wrap

    app = create_app(Settings(database_url=postgres_url, bus_url="memory://dash-race"))
    async with running(app) as h:
        async def apply(events):
            await _apply_retrying(h, events)

        orders = range(100, 140)
        await apply([wrap(ev.QuarantineOrdered(order_id=order_id(n), person_key=pk(n), region_code=SHENZHEN_NANSHAN,
                                               reason="c", policy_id="p", policy_version=1,
                                               stages=[stage("centralized", "municipal_site")])) for n in orders])
        for n in orders:
            admitted = wrap(ev.QuarantineAdmitted(person_key=pk(n), region_code=SHENZHEN_NANSHAN,
                                                  origin_region_code=SHENZHEN_NANSHAN, order_id=order_id(n),
                                                  site_id="hotel-9", site_kind="hotel",
                                                  admitted_at=T0 + timedelta(hours=1)))
            released = wrap(ev.QuarantineReleased(order_id=order_id(n), person_key=pk(n),
                                                  region_code=SHENZHEN_NANSHAN, released_at=T0 + timedelta(hours=2),
                                                  outcome="completed"))
            await asyncio.gather(apply([admitted]), apply([released]))
        got = await levels(h, "440300")
        assert got["isolation_required"] == 0
        assert got["isolation_admitted"] == 0
        assert got["in_quarantine"] == 0
        assert got["released"] == len(orders)
