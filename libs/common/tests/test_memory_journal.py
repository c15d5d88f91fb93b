"""The in-process bus with a journal: what no group has consumed survives the process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fangkong_common.bus import Record
from fangkong_common.bus.memory import MemoryBus


def _records(n: int, start: int = 0, topic: str = "person.returned") -> list[tuple]:
    return [(topic, f"k{i % 3}".encode(), f'{{"n": {i}}}'.encode(), [("h", b"v")]) for i in range(start, start + n)]


async def _consume(bus: MemoryBus, group: str, expected: int, topic: str = "person.returned") -> list[Record]:
    seen: list[Record] = []

    async def handler(batch: list[Record]) -> None:
        seen.extend(batch)

    subscription = await bus.subscribe([topic], group, handler, raw=True)
    for _ in range(200):
        if len(seen) >= expected:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # nothing more may come
    await subscription.stop()
    return seen


async def test_a_restart_delivers_what_was_published_but_not_consumed(tmp_path: Path) -> None:
    journal = tmp_path / "bus.sqlite"
    first = MemoryBus("memory://a", partitions=4, journal=journal)
    await first.publish_records(_records(5))
    assert len(await _consume(first, "quarantine", 5)) == 5
    # The dashboard's group has joined (subscribed) but the process dies before it reads anything.
    late = await first.subscribe(["person.returned"], "dashboard", lambda batch: asyncio.sleep(3600), raw=True)
    await first.publish_records(_records(5, start=5))
    await asyncio.sleep(0.05)
    late._task.cancel()  # a crash: nothing after this is committed or closed

    second = MemoryBus("memory://b", partitions=4, journal=journal)
    again = await _consume(second, "quarantine", 5)
    assert sorted(r.value for r in again) == sorted(v for _, _, v, _ in _records(5, start=5))
    assert all(r.headers == (("h", b"v"),) for r in again)
    assert len(await _consume(second, "dashboard", 10)) == 10


async def test_consumed_records_are_trimmed_and_offsets_go_on_where_they_ended(tmp_path: Path) -> None:
    journal = tmp_path / "bus.sqlite"
    first = MemoryBus("memory://a", partitions=4, journal=journal)
    await first.publish_records(_records(12))
    consumed = await _consume(first, "quarantine", 12)
    ends = {}
    for record in consumed:
        ends[record.partition] = max(ends.get(record.partition, 0), record.offset + 1)

    second = MemoryBus("memory://b", partitions=4, journal=journal)
    assert second.backlog() == 0
    assert second.records("person.returned") == []  # trimmed from memory and from the file
    await second.publish_records(_records(3, start=12))
    fresh = await _consume(second, "quarantine", 3)
    assert len(fresh) == 3
    for record in fresh:
        assert record.offset >= ends.get(record.partition, 0)  # never an offset a consumer already committed


async def test_the_partition_count_of_the_journal_wins(tmp_path: Path) -> None:
    journal = tmp_path / "bus.sqlite"
    MemoryBus("memory://a", partitions=4, journal=journal)
    reopened = MemoryBus("memory://b", partitions=6, journal=journal)
    # Keys were spread over 4 partitions; 6 would send a person's next event elsewhere and break its order.
    assert reopened.partitions == 4


async def test_a_long_running_bus_forgets_what_every_group_consumed(tmp_path: Path, monkeypatch) -> None:
    from fangkong_common.bus import memory

    monkeypatch.setattr(memory, "TRIM_EVERY", 10)
    journal = tmp_path / "bus.sqlite"
    bus = MemoryBus("memory://a", partitions=2, journal=journal)
    await bus.publish_records(_records(30))
    assert len(await _consume(bus, "quarantine", 30)) == 30
    # Only one group has subscribed: what it consumed is gone, from memory and from the file.
    assert len(bus.records("person.returned")) < 30
    await bus.publish_records(_records(30, start=30, topic="test.positive"))
    lagging = await bus.subscribe(["test.positive"], "dashboard", lambda batch: asyncio.sleep(3600), raw=True)
    assert len(await _consume(bus, "registry", 30, topic="test.positive")) == 30
    # The dashboard's group holds test.positive: nothing of it may go while it has not read it.
    assert len(bus.records("test.positive")) == 30
    lagging._task.cancel()
    reopened = MemoryBus("memory://b", partitions=2, journal=journal)
    assert len(reopened.records("test.positive")) == 30
    await reopened.publish_records(_records(2, start=60))
    fresh = await _consume(reopened, "quarantine", 2)
    assert len(fresh) == 2 and all(r.offset >= 10 for r in fresh)  # offsets go on past the trimmed ones
