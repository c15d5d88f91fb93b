"""The scenario runner: ``await play(scenario, target, seed=, scale=, ...) -> Summary``.

Importable on purpose: ``fangkong up --demo`` plays a small seeded scenario to bring
the command screen alive, end-to-end tests play one against the multi-process
platform, and what-if runs (issue 10) play the same seed under changed capacities.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as dtime
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from fangkong_cli.simulate.client import Api, SimulationError, Target, wait_for
from fangkong_cli.simulate.truth import GroundTruth, iso

# A day of the platform is a day in Beijing time.
CST = timezone(timedelta(hours=8), "CST")
SCENARIOS = ("school-outbreak", "spring-festival", "mass-screening")


class ScenarioEnd(Exception):
    """The next step lies past ``Options.until``: the scenario ends there."""


@dataclass
class Options:
    seed: int = 1
    scale: float = 1.0
    people: int = 100_000            # mass-screening: the city's population
    # Stop at this simulated moment (a partial last day): `fangkong up --demo` plays up to the present.
    until: datetime | None = None
    start: date | None = None        # first simulated day (Beijing time); default: so the run ends today
    prevalence: float = 3e-4         # mass-screening: share of people infected
    # Capacity levers (what-if runs of issue 10 change these; 1.0 = the scenario as written).
    levers: dict[str, float] = field(default_factory=dict)
    # Absolute lever values (pool_ratio=20, supporting_cities=3): they replace the scenario's figure.
    absolute: dict[str, int] = field(default_factory=dict)

    def lever(self, name: str, default: float = 1.0) -> float:
        return self.levers.get(name, default)

    def count(self, name: str, base: int) -> int:
        """A whole-number figure of the scenario (``base``) under the levers: set, or scaled."""
        if name in self.absolute:
            return self.absolute[name]
        return max(0, round(base * self.levers.get(name, 1.0)))


@dataclass
class Summary:
    scenario: str
    seed: int
    scale: float
    start: datetime                   # simulated
    end: datetime                     # simulated
    clock_controlled: bool
    kpis: list[dict] = field(default_factory=list)
    headline: dict[str, int] = field(default_factory=dict)
    region_code: str | None = None
    backlog: dict[str, Any] = field(default_factory=dict)
    beds: dict[str, int] = field(default_factory=dict)
    unclassified: int = 0
    awaiting_bed: int = 0
    figures: dict[str, int] = field(default_factory=dict)   # what the simulator did
    requests: int = 0
    records: int = 0
    wall_seconds: float = 0.0
    events: int | None = None         # events the platform published to its bus during the run
    truth: GroundTruth | None = None
    timings: dict[str, float] = field(default_factory=dict)  # wall seconds per phase
    # Peaks over the run (testing backlog, positives waiting for a bed) and the samples they come from.
    peaks: dict[str, int] = field(default_factory=dict)
    samples: list[dict] = field(default_factory=list)

    @property
    def events_per_second(self) -> float | None:
        return self.events / self.wall_seconds if self.events is not None and self.wall_seconds > 0 else None


class Sim:
    """One run: the API, the seeded randomness, the ground truth, progress, the clock."""

    def __init__(self, api: Api, options: Options, truth: GroundTruth, progress: Progress | None) -> None:
        self.api = api
        self.options = options
        self.rng = random.Random(options.seed)
        self.truth = truth
        self.progress = progress
        self.clock_controlled = False
        self.now: datetime | None = None
        self.region: str = ""  # the scenario's city, set as it starts (the summary's region if it ends early)
        self.tubes_collected = 0
        self.results_posted = 0
        self.figures: dict[str, int] = {}
        self.scenario = ""
        self.report_day: date | None = None
        self.timings: dict[str, float] = {}
        self.run_tag = "0000"
        self.peaks: dict[str, int] = {"backlog_tubes": 0, "beds_short": 0}
        self.samples: list[dict] = []

    def scaled(self, n: float, minimum: int = 1) -> int:
        return max(minimum, round(n * self.options.scale))

    def start_moment(self, days: int) -> datetime:
        """Midnight (Beijing) of the first day: the run ends yesterday unless a start was given (the present stays ahead of it)."""
        first = self.options.start or (datetime.now(CST).date() - timedelta(days=days))
        moment = datetime.combine(first, dtime(0, 0), CST)
        self.run_tag = hashlib.sha1(f"{self.scenario}:{self.options.seed}:{first}".encode()).hexdigest()[:4].upper()
        return moment

    async def at(self, moment: datetime) -> None:
        """Put the platform's clock at ``moment``; the step's server-side times follow it."""
        if self.options.until is not None and moment > self.options.until:
            raise ScenarioEnd(moment)
        if self.now is not None and moment < self.now:
            raise SimulationError(f"the simulated clock may only move forward ({iso(self.now)} → {iso(moment)})")
        self.now = moment
        self.clock_controlled = await self.api.set_clock(moment)
        self.truth.add("clock", moment)

    @contextlib.asynccontextmanager
    async def timed(self, phase: str):
        """Wall seconds per phase of the run (where the time goes, for the report)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started

    def task(self, description: str, total: float | None) -> Callable[[float], None]:
        if self.progress is None:
            return lambda advance=1: None
        task_id = self.progress.add_task(description, total=total)
        return lambda advance=1: self.progress.advance(task_id, advance)

    def sample(self, **values: int) -> None:
        """Record the state at this step (simulated time) and keep the peaks: what a commander lived
        through during the run, not only how it ended."""
        self.samples.append({"at": iso(self.now) if self.now else None, **values})
        for name, value in values.items():
            self.peaks[name] = max(self.peaks.get(name, 0), value)

    async def beds_short(self) -> int:
        """Positives the quarantine has not found a bed for (cases awaiting_bed), as it says now."""
        cases = await self.api.call("quarantine", "GET", "/quarantine/cases",
                                    params={"classified": "false", "limit": 1000})
        return sum(1 for c in cases if c["status"] == "awaiting_bed")

    async def settle(self, what: str, check: Callable[[], Awaitable[bool]], timeout: float = 300) -> None:
        await wait_for(check, what=what, timeout=timeout)


def make_progress(enabled: bool) -> Progress | None:
    if not enabled:
        return None
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)


async def play(scenario: str, target: Target, *, seed: int = 1, scale: float = 1.0, people: int = 100_000,
               start: date | None = None, record: Path | None = None, progress: bool | Progress | None = True,
               levers: dict[str, float] | None = None, absolute: dict[str, int] | None = None,
               prevalence: float | None = None, until: datetime | None = None) -> Summary:
    """Play ``scenario`` against the platform at ``target`` and return what the command center sees."""
    from fangkong_cli.simulate import scenarios

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if not 0 < scale <= 100:
        raise ValueError("scale must be in (0, 100]")
    options = Options(seed=seed, scale=scale, people=people, start=start, levers=dict(levers or {}),
                      absolute=dict(absolute or {}), until=until)
    if prevalence is not None:
        options.prevalence = prevalence
    truth = GroundTruth(record)
    bar = progress if isinstance(progress, Progress) else make_progress(bool(progress))
    started = time.perf_counter()
    async with Api(target) as api:
        clock = await api.clock()
        if clock is not None and not clock.controllable:
            api.clock_controllable = False
        events_before = await api.events_published()
        sim = Sim(api, options, truth, bar)
        sim.scenario = scenario
        try:
            if bar is not None and not isinstance(progress, Progress):
                bar.start()
            runner = {"school-outbreak": scenarios.school_outbreak, "spring-festival": scenarios.spring_festival,
                      "mass-screening": scenarios.mass_screening}[scenario]
            try:
                region = await runner(sim)
            except ScenarioEnd:
                region = sim.region
            summary = await collect(sim, scenario, region)
        finally:
            if bar is not None and not isinstance(progress, Progress):
                bar.stop()
            if sim.clock_controlled:
                await api.set_clock(None)  # back to the wall clock
            truth.close()
        events_after = await api.events_published()
        summary.wall_seconds = time.perf_counter() - started
        summary.requests, summary.records = api.requests, api.records
        if events_before is not None and events_after is not None:
            summary.events = events_after - events_before
    summary.truth = truth
    return summary


async def collect(sim: Sim, scenario: str, region: str) -> Summary:
    """What the command center wants to know at the end, read back through the APIs."""
    api = sim.api
    start = datetime.fromisoformat(next(sim.truth.of("clock"))["at"])
    summary = Summary(scenario=scenario, seed=sim.options.seed, scale=sim.options.scale, start=start,
                      end=sim.now or start, clock_controlled=sim.clock_controlled, region_code=region)
    # The KPIs of the last full simulated day (the final step may be a few minutes past midnight).
    day = (sim.report_day or (sim.now or start).astimezone(CST).date()).isoformat()
    # The province: cases treated in a supporting city count for their own city once classified.
    # The read models trail the services by a few batches: read until two reads agree.
    board, previous = None, None
    for _ in range(120):
        board = await api.call("dashboard", "GET", "/dashboard/kpis", params={"region_code": region, "date": day})
        if board == previous:
            break
        previous = board
        await asyncio.sleep(1.0)
    summary.kpis, summary.headline = board["kpis"], board["headline"]
    forecast = await api.call("testing", "GET", "/testing/capacity/forecast", params={"days": 3, "region_code": region})
    summary.backlog = {"pending_tubes": forecast.get("pending_tubes", 0),
                       "backlog_tubes_at_end": forecast.get("backlog_tubes_at_end", 0),
                       "lab_capacity_tubes_per_day": forecast.get("lab_capacity_tubes_per_day", 0),
                       "share_resulted_within_24h": forecast.get("share_resulted_within_24h"),
                       "advice": [a.get("kind") for a in forecast.get("advice", [])]}
    # Another scenario may have played on this installation: only this one's province (its city and
    # the cities supporting it) and this city's cases.
    sites = [s for s in await api.call("quarantine", "GET", "/quarantine/sites") if s["region_code"][:2] == region[:2]]
    beds = {"beds_total": 0, "beds_free": 0, "rooms_total": 0, "rooms_free": 0, "sites": len(sites),
            "sites_low": 0}
    for site in sites:
        prefix = "beds" if site["kind"] in ("hospital", "fangcang") else "rooms"
        beds[f"{prefix}_total"] += site["capacity"]
        beds[f"{prefix}_free"] += site["free"]
        beds["sites_low"] += bool(site["capacity_low"])
    summary.beds = beds
    cases = [c for c in await api.call("quarantine", "GET", "/quarantine/cases",
                                       params={"classified": "false", "limit": 1000})
             if c["origin_region_code"][:4] == region[:4]]
    summary.unclassified = len(cases)
    summary.awaiting_bed = sum(1 for c in cases if c["status"] == "awaiting_bed")
    counts = sim.truth.counts
    summary.figures = {"positives": counts["positive"], "contacts": counts["exposed"],
                       "classified": counts["classified"], "tubes": sim.tubes_collected,
                       "results": sim.results_posted, **sim.figures}
    summary.timings = {k: round(v, 2) for k, v in sim.timings.items()}
    # The end state counts too (a run that ends before any sample still has its figures).
    sim.sample(backlog_tubes=summary.backlog.get("pending_tubes", 0), beds_short=await sim.beds_short())
    summary.peaks, summary.samples = dict(sim.peaks), list(sim.samples)
    return summary


__all__ = ["SCENARIOS", "Options", "Sim", "Summary", "Target", "play"]
