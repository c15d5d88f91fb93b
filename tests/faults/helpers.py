"""What the fault tests share: a load generator on the public HTTP APIs that keeps the ground
truth (what it sent and got a 2xx for), the dashboard's counts of a region, and the broker's
own view of a consumer group (committed offsets against end offsets, dead-letter topics)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    NotCoordinatorForGroupError,
)
from fangkong_common.auth import Role
from fangkong_common.identity import make_resident_id

from tests.multiprocess import MultiProcessPlatform

# Flows summed over the window; stocks read at its end.
FLOWS = ("tubes_collected", "tubes_resulted", "people_swabbed", "positives")
STOCKS = ("tube_backlog",)


@dataclass
class Truth:
    """What the platform accepted (2xx), by barcode: the figures the dashboard must show."""

    collected: set[str] = field(default_factory=set)
    resulted: dict[str, str] = field(default_factory=dict)  # barcode -> positive/negative
    statuses: Counter = field(default_factory=Counter)  # HTTP status (or "timeout"/"refused") -> count

    @property
    def positives(self) -> int:
        return sum(1 for r in self.resulted.values() if r == "positive")

    def expected(self) -> dict[str, int]:
        return {"tubes_collected": len(self.collected), "tubes_resulted": len(self.resulted),
                "people_swabbed": len(self.collected), "positives": self.positives,
                "tube_backlog": len(self.collected - set(self.resulted))}


class Load:
    """Tubes and results for one region through the testing service's public API (as a lab
    and a collection site post them), one person per single tube."""

    def __init__(self, platform: MultiProcessPlatform, region: str, *, timeout: float = 30.0) -> None:
        self.platform = platform
        self.region = region
        self.truth = Truth()
        self.client = httpx.AsyncClient(timeout=timeout, headers=platform.headers(Role.admin))
        self.site_id = ""
        self.lab_id = ""
        self.last_error = ""  # the last error other than 503, as the service answered it
        self._seq = 0

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def testing(self) -> str:
        return self.platform.url("testing")

    async def setup(self) -> None:
        site = await self.client.post(f"{self.testing}/testing/sites", json={
            "name": f"故障测试采样点{self.region}", "region_code": self.region, "latitude": 22.53,
            "longitude": 113.93, "swabs_per_hour": 100000})
        lab = await self.client.post(f"{self.testing}/testing/labs", json={
            "name": f"故障测试检测中心{self.region}", "region_code": self.region, "latitude": 22.54,
            "longitude": 113.95, "tubes_per_day": 1_000_000, "reagent_stock": 10_000_000})
        assert site.status_code == lab.status_code == 201, (site.text, lab.text)
        self.site_id, self.lab_id = site.json()["id"], lab.json()["id"]

    def barcodes(self, count: int) -> list[str]:
        """New barcodes of this load (unique per region across the test session)."""
        start = self._seq
        self._seq += count
        return [f"F{self.region}-{i:06d}" for i in range(start, start + count)]

    def _member(self, barcode: str) -> str:
        n = int(barcode.rsplit("-", 1)[1])
        # 1,000 sequence numbers per birthday: 10,000 people need ten birthdays.
        return make_resident_id(self.region, date(1960, 1, 1) + timedelta(days=n // 1000), n % 1000)

    def tubes_body(self, barcodes: Iterable[str]) -> dict:
        collected = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
        return {"tubes": [{"barcode": b, "ratio": 1, "members": [self._member(b)], "site_id": self.site_id,
                           "collected_at": collected} for b in barcodes]}

    def results_body(self, results: dict[str, str]) -> dict:
        tested = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        return {"results": [{"barcode": b, "result": r, "lab_id": self.lab_id, "tested_at": tested,
                             **({"ct_value": 25.0} if r == "positive" else {})} for b, r in results.items()]}

    async def _post(self, path: str, body: dict) -> int | str:
        started = time.monotonic()
        try:
            response = await self.client.post(f"{self.testing}{path}", json=body)
        except httpx.TimeoutException:
            self.truth.statuses["timeout"] += 1
            return "timeout"
        except httpx.TransportError:
            self.truth.statuses["refused"] += 1
            return "refused"
        self.truth.statuses[response.status_code] += 1
        if response.status_code >= 400 and response.status_code != 503:
            # Not the answer of an outage: keep what the service said for the assertion message.
            self.last_error = f"{path} {response.status_code} after {time.monotonic() - started:.1f} s: " \
                              f"{response.text[:300]}"
        return response.status_code

    async def post_tubes(self, barcodes: list[str]) -> bool:
        status = await self._post("/testing/tubes", self.tubes_body(barcodes))
        if status == 201:
            self.truth.collected.update(barcodes)
            return True
        return False

    async def post_results(self, results: dict[str, str]) -> bool:
        status = await self._post("/testing/results", self.results_body(results))
        if status == 200:
            self.truth.resulted.update(results)
            return True
        return False

    async def ingest(self, count: int, *, batch: int = 500, positive_every: int = 0,
                     pause: float = 0.0) -> list[str]:
        """``count`` tubes, then their results, ``batch`` at a time; every ``positive_every``-th
        result positive. Every batch must be accepted (no fault is expected here)."""
        barcodes = self.barcodes(count)
        for start in range(0, count, batch):
            part = barcodes[start:start + batch]
            assert await self.post_tubes(part), self.truth.statuses
            results = {b: ("positive" if positive_every and (start + i) % positive_every == 0 else "negative")
                       for i, b in enumerate(part)}
            assert await self.post_results(results), self.truth.statuses
            if pause:
                await asyncio.sleep(pause)
        return barcodes


async def dashboard_counts(client: httpx.AsyncClient, platform: MultiProcessPlatform, region: str) -> dict[str, int]:
    """The dashboard's figures for ``region`` (flows over the last days, stocks now)."""
    today = datetime.now(UTC).date()
    response = await client.get(f"{platform.url('dashboard')}/dashboard/metrics", headers=platform.headers(Role.admin),
                                params={"region_code": region, "from": (today - timedelta(days=3)).isoformat(),
                                        "to": (today + timedelta(days=1)).isoformat(),
                                        "names": ",".join(FLOWS + STOCKS)})
    response.raise_for_status()
    out: dict[str, int] = {}
    for series in response.json()["series"]:
        values = [p["value"] for p in series["points"]]
        out[series["name"]] = values[-1] if series["kind"] == "stock" else sum(values)
    return out


async def wait_for_counts(platform: MultiProcessPlatform, region: str, expected: dict[str, int], *,
                          timeout: float, settle: float = 3.0) -> tuple[dict[str, int], float]:
    """Poll the dashboard until it shows ``expected`` and still shows it ``settle`` seconds later
    (a duplicate applied late would push a count past it). Returns the counts and the seconds
    it took; on timeout the last counts (the caller's assertion shows the difference)."""
    started = time.monotonic()
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(timeout=30) as client:
        while time.monotonic() - started < timeout:
            try:
                counts = await dashboard_counts(client, platform, region)
            except httpx.HTTPError:
                counts = {}
            if counts == expected:
                took = time.monotonic() - started
                await asyncio.sleep(settle)
                return await dashboard_counts(client, platform, region), took
            if any(counts.get(k, 0) > v for k, v in expected.items() if k != "tube_backlog"):
                return counts, time.monotonic() - started  # counted twice: no point waiting
            await asyncio.sleep(0.5)
    return counts, time.monotonic() - started


# --- the broker's view ---------------------------------------------------------------------------


def wire(platform: MultiProcessPlatform, name: str) -> str:
    """A topic or group name as the platform's namespace puts it on the broker."""
    return f"{platform.namespace}.{name}"


async def group_lag(bootstrap: str, group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """Per partition: end offset minus the group's committed offset (both broker-side names).
    A broker just started may not have a coordinator for the group yet: asked again for 20 s."""
    topics = list(topics)
    deadline = time.monotonic() + 20
    while True:
        try:
            return await _group_lag(bootstrap, group, topics)
        except (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError, CoordinatorLoadInProgressError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _group_lag(bootstrap: str, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = {(tp.topic, tp.partition): meta.offset
                     for tp, meta in (await admin.list_consumer_group_offsets(group)).items()}
        cluster = await consumer._client.fetch_all_metadata()  # a fresh view (consumer.topics() keeps none)
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(partitions) if partitions else {}
    finally:
        await consumer.stop()
        await admin.close()
    return {(tp.topic, tp.partition): end - max(committed.get((tp.topic, tp.partition), 0), 0)
            for tp, end in ends.items()}


async def total_lag(bootstrap: str, group: str, topics: Iterable[str]) -> int:
    return sum((await group_lag(bootstrap, group, topics)).values())


async def wait_lag_zero(bootstrap: str, group: str, topics: Iterable[str], timeout: float = 60.0) -> tuple[int, float]:
    topics = list(topics)
    started = time.monotonic()
    lag = await total_lag(bootstrap, group, topics)
    while lag and time.monotonic() - started < timeout:
        await asyncio.sleep(0.5)
        lag = await total_lag(bootstrap, group, topics)
    return lag, time.monotonic() - started


async def read_topic(bootstrap: str, topic: str) -> list:
    """Every message now on ``topic`` (broker-side name), from the beginning, without a group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        cluster = await consumer._client.fetch_all_metadata()
        partitions = [TopicPartition(topic, p) for p in sorted(cluster.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        messages = []
        deadline = time.monotonic() + 30
        # Until every partition is read to the end offset it had when we started.
        while len(messages) < sum(ends.values()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end ({len(messages)} of {sum(ends.values())})")
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                messages.extend(m for m in batch if m.offset < ends[TopicPartition(m.topic, m.partition)])
        return messages
    finally:
        await consumer.stop()


async def dead_letter_counts(bootstrap: str, platform: MultiProcessPlatform) -> dict[str, int]:
    """Messages on each ``<topic>.dlq`` of the platform's namespace (topics that have any)."""
    from fangkong_common.events import topics

    counts = {t: len(await read_topic(bootstrap, wire(platform, topics.dlq(t)))) for t in topics.ALL_TOPICS}
    return {t: n for t, n in counts.items() if n}
