"""Issue 10's done-when: a small seeded outbreak played on the embedded platform, and every outcome
interval the dashboard computed from events (GET /dashboard/outcomes) equal — exactly — to the
same interval computed from the ground truth the simulator recorded.

The truth side is computed here from the records alone (simulated instants, people by ID number):
a positive's result, the step that put them in a treatment bed (``admitted``, noted by the simulator
after each lab run and daily job: the platform's clock is frozen at the step), the classification,
each close contact's registration (their quarantine order is opened in that step: the simulator
waits for the orders before the clock moves), every tube's collection and result, each returnee's
registration and the first tube with them in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta, timezone
from fractions import Fraction
from math import ceil
from pathlib import Path

import httpx
import pytest

from fangkong_cli.platform import create_platform, drain
from fangkong_cli.simulate import Target, play
from fangkong_cli.simulate.truth import GroundTruth, note_admissions
from fangkong_cli.simulate.world import World
from fangkong_common.auth import Role, issue_token

CST = timezone(timedelta(hours=8))
START = date.today() - timedelta(days=20)
SPRING = START - timedelta(days=3)
SPRING_LAST = SPRING + timedelta(days=12)  # the wave's 12 days and the last daily job just past midnight
H = 3600.0
TREATMENT = ("hospital", "fangcang")


def when(record: dict) -> datetime:
    return datetime.fromisoformat(record["at"])


def beijing_day(moment: datetime) -> date:
    return moment.astimezone(CST).date()


def nearest_rank(values: list[float], p: int) -> float | None:
    """The p-th percentile by nearest rank (ceil(p/100 · n), 1-based), with exact fractions."""
    if not values:
        return None
    return sorted(values)[max(1, ceil(Fraction(p, 100) * len(values))) - 1]


def stats(values: list[float]) -> dict:
    return {"count": len(values), "median_seconds": nearest_rank(values, 50), "p90_seconds": nearest_rank(values, 90),
            "max_seconds": max(values) if values else None}


def share(values: list[float], hours: int) -> float | None:
    return sum(1 for v in values if v <= hours * H) / len(values) if values else None


@contextlib.asynccontextmanager
async def embedded(tmp_path: Path):
    # The quarantine's own timer off: the daily job runs when the simulator asks for it, at the
    # step's simulated instant, never at a moment the ground truth does not know of.
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://outcomes-{uuid.uuid4().hex}"},
                               per_service={"quarantine": {"scheduler_interval_seconds": 0}})
    secret = platform.apps["registry"].state.settings.jwt_secret.get_secret_value()
    token = issue_token(secret, role=Role.admin, sub="outcomes-test")
    async with platform.fallback.router.lifespan_context(platform.fallback):
        transport = httpx.ASGITransport(app=platform)
        async with httpx.AsyncClient(transport=transport, base_url="http://p", timeout=60,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            yield platform, Target(token=token, url="http://p", transport=transport), client


@pytest.fixture
def noting_admissions(monkeypatch: pytest.MonkeyPatch) -> None:
    """After each step that can put a positive in a bed (a lab run admits at the result, the daily
    job admits those who waited), the simulator notes who is in a bed now, at that step's instant."""
    run_labs, scheduler = World.run_labs, World.scheduler

    async def labs_then_note(self, at, capacity):
        out = await run_labs(self, at, capacity)
        await note_admissions(self, at)
        return out

    async def scheduler_then_note(self, at):
        out = await scheduler(self, at)
        await note_admissions(self, at)
        return out

    monkeypatch.setattr(World, "run_labs", labs_then_note)
    monkeypatch.setattr(World, "scheduler", scheduler_then_note)


async def outcomes(platform, client: httpx.AsyncClient, region: str, first: date, last: date) -> dict:
    assert await drain(platform.apps, timeout=60)  # every event published and consumed
    response = await client.get("/dashboard/outcomes", params={"region_code": region, "from": first.isoformat(),
                                                               "to": last.isoformat()})
    assert response.status_code == 200, response.text
    return response.json()


# --- the truth side -------------------------------------------------------------------------------------


def truth_intervals(truth: GroundTruth, first: date, last: date, as_of: datetime, prefix: str) -> dict:
    """The five intervals over days [first, last] (by the Beijing day each ended), waiting as of ``as_of``."""
    in_range = lambda end: first <= beijing_day(end) <= last
    positive: dict[str, datetime] = {}
    for r in truth.of("positive"):
        if r["region_code"].startswith(prefix):
            positive.setdefault(r["person"], when(r))
    bed = {r["person"]: when(r) for r in truth.of("admitted") if r["person"] in positive}
    classified: dict[str, datetime] = {}
    for r in truth.of("classified"):
        classified.setdefault(r["person"], when(r))

    def measured(starts: dict, ends: dict) -> tuple[list[float], list[datetime]]:
        done = [(ends[k] - s).total_seconds() for k, s in starts.items() if k in ends and in_range(ends[k])]
        waiting = [s for k, s in starts.items() if s <= as_of and (k not in ends or ends[k] > as_of)]
        return done, waiting

    to_bed, no_bed = measured(positive, bed)
    to_class, unclassified = measured(positive, classified)
    # Close contacts of a positive: ordered in the step that registered them.
    links = {(r["source"], r["person"]): when(r) for r in truth.of("exposed") if r["degree"] == 1}
    link_start = {k: positive[k[0]] for k in links if k[0] in positive}
    to_order, unordered = measured(link_start, {k: max(links[k], s) for k, s in link_start.items()})
    collected = {r["barcode"]: when(r) for r in truth.of("collected")}
    resulted = {r["barcode"]: when(r) for r in truth.of("resulted")}
    to_result, pending = measured(collected, resulted)
    swabs: dict[str, list[datetime]] = defaultdict(list)
    for r in truth.of("collected"):
        for member in r["members"]:
            swabs[member].append(when(r))
    by_category: dict[str, list[float]] = defaultdict(list)
    untested: dict[str, int] = defaultdict(int)
    categories: set[str] = set()
    for r in truth.of("returned"):
        if r["category"] == "local" or not r["region_code"].startswith(prefix):
            continue
        registered = when(r)
        categories.add(r["category"])
        tested = min((t for t in swabs[r["person"]] if t >= registered), default=None)
        if tested is not None and in_range(tested):
            by_category[r["category"]].append((tested - registered).total_seconds())
        if registered <= as_of and (tested is None or tested > as_of):
            untested[r["category"]] += 1

    def oldest(starts: list[datetime]) -> float | None:
        return (as_of - min(starts)).total_seconds() if starts else None

    return {
        "result_to_bed": stats(to_bed) | {"waiting": len(no_bed), "longest_wait_seconds": oldest(no_bed)},
        "case_to_contacts_ordered": stats(to_order) | {"share_within_24h": share(to_order, 24),
                                                       "waiting": len(unordered)},
        "collection_to_result": stats(to_result) | {"share_within_12h": share(to_result, 12),
                                                    "share_within_24h": share(to_result, 24),
                                                    "waiting": len(pending)},
        "positive_to_classified": stats(to_class) | {"unclassified": len(unclassified),
                                                     "oldest_unclassified_seconds": oldest(unclassified)},
        "registered_to_first_test": {"by_category": {c: stats(by_category[c]) | {"waiting": untested[c]}
                                                     for c in sorted(categories)}},
    }


def end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), CST).astimezone(UTC)


# --- the test -----------------------------------------------------------------------------------------


def test_the_dashboard_intervals_equal_the_ground_truth(tmp_path: Path, noting_admissions: None) -> None:
    async def run() -> tuple[dict, GroundTruth, dict, GroundTruth]:
        async with embedded(tmp_path / "school") as (platform, target, client):
            school = await play("school-outbreak", target, seed=7, scale=0.02, start=START, progress=False,
                                record=tmp_path / "school.jsonl")
            school_out = await outcomes(platform, client, "440000", START, START + timedelta(days=14))
            print(f"\nschool outbreak played in {school.wall_seconds:.1f} s")
        async with embedded(tmp_path / "spring") as (platform, target, client):
            spring = await play("spring-festival", target, seed=3, scale=0.02, start=SPRING, progress=False)
            spring_out = await outcomes(platform, client, "410000", SPRING, SPRING_LAST)
            print(f"spring festival played in {spring.wall_seconds:.1f} s")
        return school_out, school.truth, spring_out, spring.truth

    school_out, school_truth, spring_out, spring_truth = asyncio.run(run())
    last = START + timedelta(days=14)
    assert school_out["as_of"] == end_of(last).isoformat().replace("+00:00", "Z")
    expected = truth_intervals(school_truth, START, last, end_of(last), "44")
    got = school_out["intervals"]
    print("\nschool outbreak (seed 7, scale 0.02), dashboard vs ground truth:")
    for name in ("result_to_bed", "case_to_contacts_ordered", "collection_to_result", "positive_to_classified"):
        print(f"  {name}: {got[name]}")
        assert got[name] == expected[name], name
    # The outbreak is busy enough for the figures to mean something: beds ran short, doctors lagged.
    assert got["result_to_bed"]["count"] >= 10 and got["result_to_bed"]["max_seconds"] > 0
    assert got["result_to_bed"]["max_seconds"] > got["result_to_bed"]["median_seconds"]
    assert got["case_to_contacts_ordered"]["count"] >= 50 and got["collection_to_result"]["count"] >= 500
    assert got["positive_to_classified"]["count"] >= 10
    # Every day too, each as of its own end.
    for day in school_out["days"]:
        d = date.fromisoformat(day["date"])
        want = truth_intervals(school_truth, d, d, end_of(d), "44")
        for name in ("result_to_bed", "case_to_contacts_ordered", "collection_to_result", "positive_to_classified"):
            assert day["intervals"][name] == want[name], (day["date"], name)

    want = truth_intervals(spring_truth, SPRING, SPRING_LAST, end_of(SPRING_LAST), "41")
    got = spring_out["intervals"]["registered_to_first_test"]
    print(f"spring festival (seed 3, scale 0.02) registered_to_first_test: {got}")
    assert got == want["registered_to_first_test"]
    assert sum(c["count"] for c in got["by_category"].values()) >= 10
    assert "local" not in got["by_category"]
