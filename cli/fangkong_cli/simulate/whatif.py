"""What-if runs (issue 10): the same seeded outbreak, unchanged and once per lever, side by side.

Each run plays on a fresh throwaway embedded platform (``fangkong up`` on a temporary data
dir and a free port), so no run sees another's people, beds or tubes, and the platform a
commander works on is never touched. The intervals are the platform's own
(``GET /dashboard/outcomes`` at the end of the run), the KPIs those of the summary, the
peaks those the runner sampled while it played.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from fangkong_cli.simulate.client import SimulationError, Target
from fangkong_cli.simulate.levers import Lever, apply
from fangkong_cli.simulate.runner import CST, Summary, play

# Simulated days per scenario: every run of a comparison starts on the same first day.
SCENARIO_DAYS = {"school-outbreak": 14, "spring-festival": 12, "mass-screening": 2}
INTERVALS = ("result_to_bed", "case_to_contacts_ordered", "collection_to_result", "positive_to_classified")


@dataclass(frozen=True)
class RunSpec:
    name: str                 # "baseline", "beds=+50%", "combined"
    levers: tuple[Lever, ...]

    def label(self, lang: str) -> str:
        if not self.levers:
            return "baseline" if lang == "en" else "基线（不变）"
        if len(self.levers) > 1:
            return ("combined: " if lang == "en" else "组合：") + "; ".join(x.label(lang) for x in self.levers)
        return self.levers[0].label(lang)


def plan(levers: list[Lever], combined: bool = False) -> list[RunSpec]:
    """The baseline, then one run per lever (each alone: which lever buys the most), then all together."""
    runs = [RunSpec("baseline", ())] + [RunSpec(lever.text, (lever,)) for lever in levers]
    if combined and len(levers) > 1:
        runs.append(RunSpec("combined", tuple(levers)))
    return runs


def first_day(scenario: str) -> date:
    """The scenario ends yesterday (Beijing), as a plain run would."""
    return datetime.now(CST).date() - timedelta(days=SCENARIO_DAYS[scenario])


# --- a throwaway platform ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ThrowawayPlatform:
    """``fangkong up`` on a temporary data dir and a free port; ``stop()`` ends it and deletes the dir."""

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="fangkong-whatif-"))
        self.url = ""
        self.token = ""
        self.process: subprocess.Popen | None = None
        self._log = None

    @classmethod
    async def start(cls, *, timeout: float = 120.0) -> ThrowawayPlatform:
        from fangkong_cli.simulate.command import _admin_token

        self = cls()
        try:
            # Nothing of the caller's installation (its data dir, database, bus) leaks into the throwaway one.
            env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
            env["FANGKONG_LOG_LEVEL"] = "WARNING"
            port = _free_port()
            self._log = (self.data_dir / "up.log").open("wb")
            # Popen returns at once (the wait for readiness is async below).
            command = [sys.executable, "-m", "fangkong_cli.main", "up", "--port", str(port),
                       "--data-dir", str(self.data_dir)]
            self.process = subprocess.Popen(command, env=env, stdout=self._log,  # noqa: ASYNC220
                                            stderr=subprocess.STDOUT)
            self.url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + timeout
            async with httpx.AsyncClient(timeout=2) as client:
                while True:
                    if self.process.poll() is not None:
                        raise SimulationError(f"the throwaway platform exited ({self.process.returncode}): "
                                              + (self.data_dir / "up.log").read_text(errors="replace")[-1000:])
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(f"{self.url}/readyz")).status_code == 200:
                            break
                    if time.monotonic() > deadline:
                        raise SimulationError(f"the throwaway platform was not ready within {timeout:.0f} s")
                    await asyncio.sleep(0.1)
            self.token = _admin_token(self.data_dir, "en")
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            # Its data is thrown away: a short grace for a clean stop, no more.
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 5)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def throwaway_platform() -> AsyncIterator[ThrowawayPlatform]:
    platform = await ThrowawayPlatform.start()
    try:
        yield platform
    finally:
        await platform.stop()


# --- one run -----------------------------------------------------------------------------


async def outcomes(target: Target, region: str, day_from: date, day_to: date) -> tuple[dict | None, str | None]:
    """The platform's intervals for the run (``/dashboard/outcomes``), read until two reads agree (the
    read models trail the bus by a batch or two); (None, why) when the platform has none."""
    previous = None
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {target.token}"}) as client:
        for _ in range(60):
            response = await client.get(f"{target.base('dashboard')}/dashboard/outcomes",
                                        params={"region_code": region, "from": day_from.isoformat(),
                                                "to": day_to.isoformat()})
            if response.status_code == 404:
                return None, "GET /dashboard/outcomes → 404 (this platform has no outcome intervals)"
            if response.status_code != 200:
                return None, f"GET /dashboard/outcomes → {response.status_code}: {response.text[:300]}"
            body = response.json()
            intervals = body.get("intervals")
            if intervals == previous:
                return intervals, None
            previous = intervals
            await asyncio.sleep(0.5)
    return previous, None


def run_result(spec: RunSpec, summary: Summary, intervals: dict | None, note: str | None) -> dict:
    return {
        "name": spec.name,
        "label": {"zh": spec.label("zh"), "en": spec.label("en")},
        "levers": [lever.text for lever in spec.levers],
        "region_code": summary.region_code,
        "intervals": intervals,
        "intervals_note": note,
        "kpis": [{"name": k["name"], "label": k.get("label"), "ratio": k.get("ratio"),
                  "numerator": k.get("numerator"), "denominator": k.get("denominator")} for k in summary.kpis],
        "peaks": dict(summary.peaks),
        "end": {"beds_short": summary.awaiting_bed, "unclassified": summary.unclassified,
                "backlog_tubes": summary.backlog.get("pending_tubes", 0)},
        "figures": dict(summary.figures),
        "samples": summary.samples,
        "wall_seconds": round(summary.wall_seconds, 1),
        "events": summary.events,
    }


async def run_one(spec: RunSpec, scenario: str, platform: ThrowawayPlatform, *, seed: int, scale: float,
                  people: int, start: date, prevalence: float | None, progress: bool) -> dict:
    factors, absolute = apply(list(spec.levers))
    target = Target(token=platform.token, url=platform.url)
    summary = await play(scenario, target, seed=seed, scale=scale, people=people, start=start, progress=progress,
                         levers=factors, absolute=absolute, prevalence=prevalence)
    region = summary.region_code or ""
    end = summary.end.astimezone(CST)
    # The final step is a few minutes past the last day's midnight: the range ends on the last full day
    # (so what is still waiting is counted as of that midnight in every run alike).
    day_to = end.date() - timedelta(days=1) if end.hour == 0 else end.date()
    intervals, note = await outcomes(target, region, start, max(start, day_to))
    return run_result(spec, summary, intervals, note)


# --- the comparison ------------------------------------------------------------------------


def _write(path: Path | None, document: dict) -> None:
    """Atomically: the screen's endpoint reads this file for progress while the runs go on."""
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)


async def compare(scenario: str, levers: list[Lever], *, seed: int = 1, scale: float = 1.0, people: int = 100_000,
                  combined: bool = False, prevalence: float | None = None, progress: bool = False,
                  json_out: Path | None = None, start: date | None = None,
                  on_run: Callable[[int, int, RunSpec, dict | None], None] | None = None) -> dict:
    """Play the baseline and every what-if; the comparison document (also written to ``json_out``
    after each run, with its status, so a reader can follow)."""
    runs = plan(levers, combined)
    start = start or first_day(scenario)
    document: dict[str, Any] = {
        "version": 1, "status": "running", "scenario": scenario, "seed": seed, "scale": scale,
        "people": people if scenario == "mass-screening" else None, "start": start.isoformat(),
        "levers": [lever.text for lever in levers], "combined": combined, "runs_total": len(runs), "runs": [],
        "current": None, "error": None, "started_at": datetime.now(CST).isoformat(timespec="seconds"),
        "finished_at": None,
    }
    # The next run's platform starts while this one plays (its start-up is mostly waiting), and a
    # finished one stops in the background.
    upcoming: asyncio.Task | None = asyncio.create_task(ThrowawayPlatform.start())
    stopping: list[asyncio.Task] = []
    try:
        for i, spec in enumerate(runs):
            document["current"] = {"name": spec.name, "label": {"zh": spec.label("zh"), "en": spec.label("en")},
                                   "index": i}
            _write(json_out, document)
            if on_run:
                on_run(i, len(runs), spec, None)
            assert upcoming is not None
            platform = await upcoming
            upcoming = asyncio.create_task(ThrowawayPlatform.start()) if i + 1 < len(runs) else None
            try:
                result = await run_one(spec, scenario, platform, seed=seed, scale=scale, people=people, start=start,
                                       prevalence=prevalence, progress=progress)
            finally:
                stopping.append(asyncio.create_task(platform.stop()))
            document["runs"].append(result)
            if on_run:
                on_run(i, len(runs), spec, result)
        document["status"] = "done"
    except BaseException as exc:
        document["status"] = "failed"
        document["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise
    finally:
        if upcoming is not None:
            upcoming.cancel()
            with contextlib.suppress(BaseException):
                stopping.append(asyncio.create_task((await upcoming).stop()))
        await asyncio.gather(*stopping, return_exceptions=True)
        document["current"] = None
        document["finished_at"] = datetime.now(CST).isoformat(timespec="seconds")
        _write(json_out, document)
    return document
