"""``fangkong simulate`` against the embedded platform (``fangkong up`` as a subprocess).

Each scenario plays at a small scale; the checks read the platform back through its
APIs and compare with the ground truth the simulator recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from fangkong_cli.main import app
from fangkong_cli.simulate import Summary, Target, play
from fangkong_cli.simulate.idcard import IdFactory, is_valid, resident_id
from fangkong_common.auth import Role, issue_token
from typer.testing import CliRunner

CST = timezone(timedelta(hours=8))
START = date.today() - timedelta(days=20)  # fixed first day: two runs of one seed are comparable


@dataclass
class Platform:
    url: str
    data_dir: Path
    token: str

    def target(self) -> Target:
        return Target(token=self.token, url=self.url)

    def get(self, path: str, **params) -> dict | list:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=30,
                             headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        return response.json()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def platforms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Platform]]:
    """Two fresh embedded platforms (a seed replayed on a fresh one must do exactly the same)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
    env["FANGKONG_LOG_LEVEL"] = "WARNING"
    started = []
    out = []
    try:
        for n in range(2):
            data_dir = tmp_path_factory.mktemp(f"platform{n}")
            port = _free_port()
            log = (data_dir / "up.log").open("w")
            process = subprocess.Popen([sys.executable, "-m", "fangkong_cli.main", "up", "--port", str(port),
                                        "--data-dir", str(data_dir)], env=env, stdout=log, stderr=subprocess.STDOUT)
            started.append(process)
            out.append((data_dir, port))
        platforms = []
        for (data_dir, port), process in zip(out, started, strict=True):
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, (data_dir / "up.log").read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the platform did not become ready"
                time.sleep(0.2)
            secret = json.loads((data_dir / "secrets.json").read_text())["jwt_secret"]
            platforms.append(Platform(url, data_dir, issue_token(secret, role=Role.admin, sub="test")))
        yield platforms
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _run(platform: Platform, scenario: str, **kwargs) -> Summary:
    return asyncio.run(play(scenario, platform.target(), progress=False, start=START, **kwargs))


@pytest.fixture(scope="module")
def school(platforms: list[Platform]) -> Summary:
    return _run(platforms[0], "school-outbreak", seed=7, scale=0.02)


# --- ID numbers ----------------------------------------------------------------------


def test_generated_id_numbers_are_valid_and_distinct() -> None:
    factory = IdFactory(["440305", "440307"], first_birth=date(2000, 1, 1), days=365)
    numbers = [factory(i) for i in range(5000)]
    assert len(set(numbers)) == 5000
    assert all(is_valid(n) for n in numbers)
    # The worked example of GB 11643: 11010519491231002X.
    assert resident_id("110105", date(1949, 12, 31), 2) == "11010519491231002X"
    assert not is_valid("110105194912310021")


# --- school outbreak ---------------------------------------------------------------------


def test_school_outbreak_summary_matches_the_ground_truth(school: Summary, platforms: list[Platform]) -> None:
    platform = platforms[0]
    truth = school.truth
    positives = {r["person"] for r in truth.of("positive")}
    contacts = [r for r in truth.of("exposed")]
    classified = {r["person"] for r in truth.of("classified")}
    assert len(positives) >= 3 and len(contacts) >= 30
    assert {r["degree"] for r in contacts} == {1, 2}
    # The dashboard (province: cases treated in supporting cities included) counts what was posted.
    board = platform.get("/dashboard/kpis", region_code="440000")["headline"]
    assert board["positives"] == len(positives) == school.figures["positives"]
    assert board["contacts"] == len(contacts) == school.figures["contacts"]
    assert board["unclassified"] == len(positives - classified)
    # Every contact has a quarantine order (one each: contacts are distinct people).
    assert platform.get("/quarantine/orders", limit=1)["total"] == len(contacts)
    for record in contacts[:8]:
        [person] = platform.get("/registry/persons", q=record["person"])["items"]
        assert platform.get("/quarantine/orders", person_id=person["id"])["total"] == 1
    # Beds and rooms are never over-used; the summary's free beds are the sites' own.
    sites = platform.get("/quarantine/sites")
    assert all(0 <= s["occupancy"] <= s["capacity"] for s in sites)
    assert sum(s["free"] for s in sites if s["kind"] in ("hospital", "fangcang")) == school.beds["beds_free"]
    # Unclassified positives: the quarantine's own list agrees with the ground truth.
    # (the city's own: a contact living in a supporting city counts there)
    waiting = [c for c in platform.get("/quarantine/cases", classified="false")
               if c["origin_region_code"].startswith("4403")]
    ours = {r["person"] for r in truth.of("positive") if r["region_code"].startswith("4403")}
    assert school.unclassified == len(waiting) == len(ours - classified)
    # The summary's KPIs are the dashboard's for the last simulated day.
    last_day = (START + timedelta(days=13)).isoformat()
    assert platform.get("/dashboard/kpis", region_code="440300", date=last_day)["kpis"] == school.kpis
    # Sampling outran the labs: tubes were left waiting, and the testing service sees them.
    assert school.figures["backlog_left"] > 0 and school.backlog["pending_tubes"] == school.figures["backlog_left"]
    assert school.requests > 0 and school.records > school.requests and school.events and school.events > 0


def test_school_outbreak_played_on_the_simulated_clock(school: Summary, platforms: list[Platform]) -> None:
    platform = platforms[0]
    clock = platform.get("/registry/clock")
    assert clock["offset_seconds"] == 0 and not clock.get("frozen")  # back to the wall clock at the end
    assert school.clock_controlled
    # Server-side times are the step's simulated instant, exactly: the first quarantine order was
    # opened at the moment the first contacts were registered.
    first = platform.get("/quarantine/orders", limit=1)["items"][0]
    first_contact = next(school.truth.of("exposed"))
    opened = datetime.fromisoformat(first["created_at"])
    assert (opened if opened.tzinfo else opened.replace(tzinfo=UTC)) == datetime.fromisoformat(first_contact["at"])
    # Positives were posted with the lab step's simulated time and counted on those days.
    per_day: dict[str, int] = {}
    for record in school.truth.of("positive"):
        day = (date.fromisoformat(record["at"][:10]) if record["at"][11:13] < "16"
               else date.fromisoformat(record["at"][:10]) + timedelta(days=1))  # UTC → Beijing day
        per_day[day.isoformat()] = per_day.get(day.isoformat(), 0) + 1
    series = platform.get("/dashboard/metrics", region_code="440000", names="positives",
                          **{"from": START.isoformat(), "to": (START + timedelta(days=14)).isoformat()})
    counted = {p["date"]: p["value"] for p in series["series"][0]["points"] if p["value"]}
    assert counted == per_day


def test_same_seed_plays_the_same_outbreak(school: Summary, platforms: list[Platform]) -> None:
    again = _run(platforms[1], "school-outbreak", seed=7, scale=0.02)
    first_difference = next(((a, b) for a, b in zip(again.truth.records, school.truth.records) if a != b), None)
    assert first_difference is None
    assert len(again.truth.records) == len(school.truth.records)
    assert again.truth.fingerprint() == school.truth.fingerprint()
    assert again.figures == school.figures


# --- spring festival and mass screening (on the first platform, in their own cities) -------


def test_spring_festival_flags_earlier_returnees_of_a_new_risk_area(school: Summary,
                                                                    platforms: list[Platform]) -> None:
    platform = platforms[0]
    summary = _run(platform, "spring-festival", seed=3, scale=0.03)
    returned = list(summary.truth.of("returned"))
    [area] = list(summary.truth.of("risk_area"))
    assert len(returned) == summary.figures["returnees"] > 50
    categories = {r["category"] for r in returned}
    assert {"inbound_international", "inbound_port_completed_elsewhere", "domestic_other"} <= categories
    # Everyone whose stays touched the area in the look-back, found at once — and nobody else.
    assert area["flagged"] and summary.figures["risk_flagged_platform"] == len(area["flagged"])
    # Returnees from the area after it was declared are flagged as they register, and their
    # province now has a risk area: they are key-region returnees.
    later = [r for r in returned if r["seq"] > area["seq"] and r["origin"] == "330106"]
    assert later and {r["category"] for r in later} == {"domestic_key_region"}
    areas = platform.get("/registry/risk-areas")
    assert [a["flagged_count"] for a in areas if a["region_code"] == "330106"] == [len(area["flagged"]) + len(later)]
    board = platform.get("/dashboard/kpis", region_code="410100")["headline"]
    assert board["returnees"] == len(returned)


def test_mass_screening_finds_every_infected_person_through_pools(school: Summary,
                                                                  platforms: list[Platform]) -> None:
    platform = platforms[0]
    summary = _run(platform, "mass-screening", seed=5, people=3000, prevalence=0.004)
    infected = {r["person"] for r in summary.truth.of("infected")}
    positives = {r["person"] for r in summary.truth.of("positive")}
    assert infected and positives == infected  # the labs keep up: every infected person is found
    pools = [r for r in summary.truth.of("collected") if r["ratio"] > 1]
    assert sum(len(r["members"]) for r in pools) == 3000
    positive_pools = {r["barcode"] for r in pools if set(r["members"]) & infected}
    assert summary.figures["pools_positive"] == len(positive_pools)
    board = platform.get("/dashboard/kpis", region_code="420000")["headline"]
    assert board["positives"] == len(positives)


def test_a_run_stops_at_until_mid_day_and_gives_the_clock_back(school: Summary, platforms: list[Platform]) -> None:
    platform = platforms[0]
    first = START - timedelta(days=40)  # clear of the other runs on this platform
    until = datetime.combine(first + timedelta(days=2), datetime.min.time(), CST) + timedelta(hours=12)
    summary = asyncio.run(play("spring-festival", platform.target(), progress=False, start=first, seed=31,
                               scale=0.02, until=until))
    clock_steps = [datetime.fromisoformat(r["at"]) for r in summary.truth.of("clock")]
    assert max(clock_steps) <= until < max(clock_steps) + timedelta(hours=11)  # the 21:00 labs never came
    reported = {datetime.fromisoformat(r["at"]).astimezone(CST).date() for r in summary.truth.of("returned")}
    assert reported == {first, first + timedelta(days=1), first + timedelta(days=2)}  # day 3 up to its 10:00 reports
    assert summary.region_code == "410100" and summary.kpis
    clock = platform.get("/registry/clock")
    assert clock["frozen"] is False and abs(clock["offset_seconds"]) < 5


# --- the command ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, message", [
    (["--scenario", "flood"], "未知场景"),
    (["--scenario", "school-outbreak", "--scale", "0"], "--scale"),
    (["--scenario", "school-outbreak", "--lang", "fr"], "--lang"),
    (["--scenario", "school-outbreak", "--service-url", "billing=http://x"], "--service-url"),
    (["--scenario", "school-outbreak", "--url", "localhost:8000"], "--url"),
    (["--scenario", "school-outbreak", "--start", "yesterday"], "--start"),
])
def test_bad_arguments_exit_with_a_clear_message(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", *args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_no_token_and_no_installation_secrets_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--scenario", "school-outbreak", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "secrets.json" in result.output and not (tmp_path / "secrets.json").exists()


def test_unreachable_platform_stops_with_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--scenario", "mass-screening", "--token", "x", "--url",
                                      f"http://127.0.0.1:{_free_port()}", "--no-progress", "--lang", "en"])
    assert result.exit_code == 1
    assert "simulation stopped" in result.output and "ConnectError" in result.output


def test_the_command_prints_the_summary_in_chinese(platforms: list[Platform], school: Summary,
                                                    tmp_path: Path) -> None:
    record = tmp_path / "truth.jsonl"
    result = CliRunner().invoke(app, ["simulate", "--scenario", "mass-screening", "--people", "200", "--seed", "9",
                                      "--url", platforms[1].url, "--data-dir", str(platforms[1].data_dir),
                                      "--record", str(record), "--no-progress"])
    assert result.exit_code == 0, result.output
    for label in ("应检尽检", "应隔尽隔", "应救尽救", "应管尽管", "待检样本管", "待分类阳性", "事件/秒"):
        assert label in result.output
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]["kind"] == "scenario"
    assert sum(1 for r in lines if r["kind"] == "collected" and r["ratio"] == 10) == 20


def test_without_a_gateway_each_service_gets_its_own_requests_and_clock() -> None:
    """--service-url: the clock is put on each of the four processes, requests go to their service."""
    from fangkong_cli.simulate.client import Api

    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url)))
        if request.url.path.endswith("/clock"):
            return httpx.Response(200, json={"now": "2026-01-01T00:00:00Z", "offset_seconds": 0,
                                             "controllable": True})
        return httpx.Response(200, json={"ok": True})

    urls = {name: f"http://{name}.local:800{i}" for i, name in enumerate(("registry", "quarantine", "testing",
                                                                           "dashboard"))}
    target = Target(token="t", service_urls=urls, transport=httpx.MockTransport(handler))

    async def run() -> None:
        async with Api(target) as api:
            assert await api.set_clock(datetime(2026, 1, 1, 8, tzinfo=UTC))
            await api.call("testing", "GET", "/testing/orders")

    asyncio.run(run())
    assert sorted(url for method, url in seen if method == "PUT") == sorted(f"{u}/{n}/clock" for n, u in urls.items())
    assert ("GET", "http://testing.local:8002/testing/orders") in seen
