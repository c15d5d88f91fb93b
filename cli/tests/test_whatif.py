"""What-if runs (issue 10): levers, the comparison asked for from the screen's endpoint and run
end to end (``fangkong simulate --what-if ... --json-out`` in a subprocess, each run on a
throwaway embedded platform), its direction, and the brief.

One tiny comparison (school outbreak, scale 0.01: about ten positives, a handful of beds)
serves every end-to-end check, to keep the wall time down.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from fangkong_cli.main import app
from fangkong_cli.platform import create_platform
from fangkong_cli.simulate.levers import LeverError, apply, parse_lever, parse_levers
from fangkong_cli.simulate.whatif import plan
from fangkong_common.auth import Role, issue_token
from fangkong_common.settings import CommonSettings
from typer.testing import CliRunner

SCALE = 0.01
SEED = 7


# --- levers ----------------------------------------------------------------------------------


def test_levers_parse_relative_and_absolute_values() -> None:
    assert parse_lever("beds=+50%").factor == pytest.approx(1.5)
    assert parse_lever("labs=-20%").factor == pytest.approx(0.8)
    assert parse_lever(" Pool_Ratio = 20 ").value == 20
    assert parse_lever("supporting-cities=3").value == 3
    assert parse_lever("supporting-cities=-100%").factor == 0
    levers = parse_levers(["beds=+50%", "labs=+30%", "pool-ratio=20", "supporting-cities=3"], combined=True)
    assert apply(levers) == ({"beds": 1.5, "labs": 1.3}, {"pool_ratio": 20, "supporting_cities": 3})
    # Each lever its own run beside the baseline; --combined adds one with all of them.
    assert [r.name for r in plan(levers)] == ["baseline", "beds=+50%", "labs=+30%", "pool-ratio=20",
                                             "supporting-cities=3"]
    assert plan(levers, combined=True)[-1].levers == tuple(levers)


@pytest.mark.proof("bad input")
@pytest.mark.parametrize(("text", "says"), [
    ("beds", "LEVER=VALUE"), ("beds=", "LEVER=VALUE"), ("wards=+50%", "unknown lever 'wards'"),
    ("beds=50", "changes by a percentage"), ("beds=+50", "cannot read"), ("beds=-95%", "-90% to +1000%"),
    ("beds=+0%", "changes nothing"), ("pool-ratio=+50%", "absolute value"), ("pool-ratio=7", "one of 1, 5, 10, 20"),
    ("supporting-cities=9", "between 0 and 7"), ("labs=abc%", "cannot read"),
])
def test_bad_levers_are_refused_with_the_reason(text: str, says: str, proof) -> None:
    proof.injected(f"--what-if {text!r}")
    with pytest.raises(LeverError) as caught:
        parse_lever(text)
    assert says in caught.value.en and caught.value.zh
    proof.measured(f"refused: {caught.value.en}")


def test_lever_given_twice_or_combined_with_itself_is_refused() -> None:
    with pytest.raises(LeverError, match="given twice"):
        parse_levers(["beds=+50%", "beds=+50%"])
    with pytest.raises(LeverError, match="needs each lever once"):
        parse_levers(["beds=+50%", "beds=-50%"], combined=True)
    assert len(parse_levers(["beds=+50%", "beds=-50%"])) == 2  # separate runs: fine


@pytest.mark.proof("bad input")
@pytest.mark.parametrize(("args", "flag", "says"), [
    (["--what-if", "beds=50"], "--what-if", "changes by a percentage"),
    (["--what-if", "beds=+50%", "--what-if", "pool-ratio=3"], "--what-if", "one of 1, 5, 10, 20"),
    (["--what-if", "beds=+50%", "--brief", "out.txt"], "--brief", ".xlsx or .pdf"),
    (["--combined"], "--what-if", "at least one --what-if"),
])
def test_bad_what_if_flags_stop_before_any_run(args: list[str], flag: str, says: str, monkeypatch, proof) -> None:
    from fangkong_cli.simulate import whatif

    async def no_platform(*_a, **_k):
        raise AssertionError("a platform was started despite a bad flag")

    monkeypatch.setattr(whatif.ThrowawayPlatform, "start", no_platform)
    proof.injected(f"fangkong simulate --scenario school-outbreak {' '.join(args)} --lang en")
    result = CliRunner().invoke(app, ["simulate", "--scenario", "school-outbreak", *args, "--lang", "en"])
    assert result.exit_code == 2, result.output
    assert flag in result.output and says in result.output.replace("\n", " ")
    proof.measured(f"exit 2 naming {flag} before any run")


def test_a_lever_the_scenario_lacks_is_refused() -> None:
    result = CliRunner().invoke(app, ["simulate", "--scenario", "mass-screening", "--what-if", "supporting-cities=3",
                                      "--lang", "en"])
    assert result.exit_code == 2 and "has no supporting-cities lever" in result.output.replace("\n", " ")


# --- the comparison from the screen's endpoint, end to end -------------------------------------------


async def _comparison_through_the_endpoint(data_dir: Path) -> dict:
    """On an in-process embedded platform: start a comparison as a commander, try what must be
    refused while it runs, follow it to the end, fetch its briefs."""
    overrides = {"data_dir": data_dir, "bus_url": f"memory://whatif-{uuid.uuid4().hex}"}
    platform = create_platform(overrides)
    settings = CommonSettings(**overrides)
    secret = settings.jwt_secret.get_secret_value()

    def headers(role: Role, **kw) -> dict:
        return {"Authorization": "Bearer " + issue_token(secret, role=role, issuer=settings.jwt_issuer,
                                                           audience=settings.jwt_audience, **kw)}

    commander = headers(Role.commander, regions=["440300"])
    admin = headers(Role.admin)
    seen: dict = {}
    async with platform.fallback.router.lifespan_context(platform.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://p",
                                     timeout=60) as client:
            body = {"scenario": "school-outbreak", "levers": ["beds=-50%"], "seed": SEED, "scale": SCALE}
            seen["viewer"] = (await client.post("/simulations", json=body, headers=headers(Role.viewer))).status_code
            seen["no_token"] = (await client.post("/simulations", json=body)).status_code
            seen["bad_lever"] = await client.post("/simulations", json={**body, "levers": ["beds=lots"]},
                                                  headers=commander)
            started = time.monotonic()
            first = await client.post("/simulations", json=body, headers=commander)
            assert first.status_code == 202, first.text
            job = first.json()
            seen["busy"] = (await client.post("/simulations", json=body, headers=commander)).status_code
            seen["brief_early"] = (await client.get(f"/simulations/{job['id']}/brief",
                                                    headers=commander)).status_code
            progress = []
            while job["status"] == "running":
                assert time.monotonic() - started < 300, job
                await asyncio.sleep(1.0)
                job = (await client.get(f"/simulations/{job['id']}", headers=commander)).json()
                progress.append(job["runs_done"])
            seen["seconds"] = time.monotonic() - started
            seen["job"] = job
            seen["progress"] = progress
            seen["job_en"] = (await client.get("/simulations/current", params={"lang": "en"},
                                               headers=commander)).json()
            for fmt in ("xlsx", "pdf"):
                response = await client.get(f"/simulations/{job['id']}/brief", params={"format": fmt},
                                            headers=commander)
                seen[fmt] = response
            # A second one, stopped while it runs: its process group (its throwaway platforms) ends.
            second = (await client.post("/simulations", json={**body, "scenario": "mass-screening", "people": 2000,
                                                              "levers": ["labs=+30%"]}, headers=commander)).json()
            await asyncio.sleep(3)
            seen["stopped"] = (await client.delete(f"/simulations/{second['id']}", headers=admin)).json()
            seen["stopped_pid"] = platform.fallback.state.simulations.jobs[second["id"]].process.pid
        seen["document"] = json.loads((data_dir / "simulations" / job["id"] / "comparison.json").read_text())
    return seen


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return asyncio.run(_comparison_through_the_endpoint(tmp_path_factory.mktemp("whatif")))


@pytest.mark.proof("access")
def test_the_endpoint_refuses_what_it_must(compared: dict, proof) -> None:
    proof.injected("POST /simulations as viewer, without a token, with lever 'beds=lots', and a second one "
                   "while the first ran; the brief before it was done")
    assert compared["viewer"] == 403 and compared["no_token"] == 401
    bad = compared["bad_lever"]
    assert bad.status_code == 422 and "beds" in bad.json()["detail"]["message_en"]
    assert compared["busy"] == 409
    assert compared["brief_early"] == 409
    proof.measured(f"viewer {compared['viewer']}, no token {compared['no_token']}, bad lever {bad.status_code}, "
                   f"second while running {compared['busy']}, early brief {compared['brief_early']}")


def test_the_screen_comparison_runs_to_the_end(compared: dict) -> None:
    job = compared["job"]
    assert job["status"] == "done", job
    assert job["runs_total"] == job["runs_done"] == 2
    assert compared["progress"] == sorted(compared["progress"])  # progress only moves forward
    table = job["table"]
    assert table["columns"] == ["基线（不变）", "定点医院/方舱床位 -50%"]
    english = compared["job_en"]["table"]
    assert english["columns"] == ["baseline", "hospital & fangcang beds -50%"]
    labels = [row["label"] for row in english["rows"]]
    for wanted in ("result → hospital bed median", "case → contacts under order p90", "collection → result max",
                   "positive → classified median", "tested (应检尽检)", "treated (应救尽救)",
                   "peak testing backlog (tubes)", "peak positives waiting for a bed"):
        assert wanted in labels
    assert all(len(row["cells"]) == 2 for row in table["rows"])


def test_fewer_beds_make_positives_wait_longer(compared: dict) -> None:
    """The same outbreak (same positives, same contacts) with half the beds: more positives wait
    for a bed at the peak. (Beds are scaled, so at this scale the baseline already runs short.)"""
    baseline, fewer = compared["document"]["runs"]
    assert fewer["levers"] == ["beds=-50%"]
    for figure in ("positives", "contacts", "tubes", "students"):
        assert baseline["figures"][figure] == fewer["figures"][figure], figure
    assert baseline["peaks"]["beds_short"] > 0, "no positive waited even at the baseline: pick another seed"
    assert fewer["peaks"]["beds_short"] > baseline["peaks"]["beds_short"]
    # Beds change nothing of the testing: the backlog peak is the same.
    assert fewer["peaks"]["backlog_tubes"] == baseline["peaks"]["backlog_tubes"]
    treated = {r["name"]: {k["name"]: k["ratio"] for k in r["kpis"]} for r in (baseline, fewer)}
    assert treated["beds=-50%"]["treated"] < treated["baseline"]["treated"]


def test_the_brief_opens_and_carries_the_table(compared: dict, tmp_path: Path) -> None:
    from fangkong_cli.simulate.whatif_table import rows, save_brief
    from openpyxl import load_workbook

    response = compared["xlsx"]
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(response.content)).active
    cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert cells[0][0] == "推演对比：如果……会怎样"
    header = next(r for r in cells if r[0] == "类别")
    assert header[1:4] == ["指标", "基线（不变）", "定点医院/方舱床位 -50%"]
    body = {r[1]: r[2:4] for r in cells[cells.index(header) + 1:]}
    expected = rows(compared["document"], "zh")
    assert len(body) == len(expected)
    for row in expected:
        base, variant = row.cells
        assert body[row.label][0] == base.text
        assert body[row.label][1] == (variant.text if variant.delta is None else f"{variant.text} ({variant.delta})")
    beds = body["阳性待床位峰值（人）"]
    peaks = [r["peaks"]["beds_short"] for r in compared["document"]["runs"]]
    assert beds[0] == f"{peaks[0]:,}" and beds[1].startswith(f"{peaks[1]:,} (+")
    # The command's --brief writes the same workbook.
    path = tmp_path / "brief.xlsx"
    save_brief(compared["document"], path)
    assert [list(r) for r in load_workbook(path).active.iter_rows(values_only=True)] == cells
    pdf = compared["pdf"]
    if pdf.status_code == 503:  # no CJK font on this machine: the daily report says the same
        assert "font" in pdf.text
    else:
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF") and len(pdf.content) > 5000


def test_intervals_are_the_platforms_and_fewer_beds_wait_longer_for_one(compared: dict) -> None:
    """The intervals come from each run's own platform (GET /dashboard/outcomes at the end of the
    run); half the beds: the same positives, a longer wait for a bed; testing unchanged."""
    from fangkong_cli.simulate.whatif import INTERVALS
    from fangkong_cli.simulate.whatif_table import rows

    baseline, fewer = compared["document"]["runs"]
    for run in (baseline, fewer):
        assert run["intervals"] is not None, run["intervals_note"]
        assert set(INTERVALS) <= set(run["intervals"])
    bed, bed_fewer = baseline["intervals"]["result_to_bed"], fewer["intervals"]["result_to_bed"]
    # The same positives in both: each has a bed by now or is still waiting for one.
    assert bed["count"] + bed["waiting"] == bed_fewer["count"] + bed_fewer["waiting"] > 0
    assert bed_fewer["waiting"] >= bed["waiting"]
    assert (bed_fewer["max_seconds"] or 0) >= (bed["max_seconds"] or 0)
    assert (bed_fewer["p90_seconds"] or 0) >= (bed["p90_seconds"] or 0)
    worse = [(bed_fewer[k] or 0) > (bed[k] or 0) for k in ("waiting", "max_seconds", "p90_seconds",
                                                              "longest_wait_seconds")]
    assert any(worse), (bed, bed_fewer)
    # Beds change nothing of the testing: collection → result is the same, interval for interval.
    assert fewer["intervals"]["collection_to_result"] == baseline["intervals"]["collection_to_result"]
    # The table shows the endpoint's figures (hours, one decimal) and marks the longer wait worse.
    table = {row.label: row.cells for row in rows(compared["document"], "en")}
    longest = table["result → hospital bed max"]
    assert longest[0].value == bed["max_seconds"] and longest[1].value == bed_fewer["max_seconds"]
    if bed_fewer["max_seconds"] != bed["max_seconds"]:
        assert longest[1].better is False and longest[1].delta.startswith("+")


def test_a_comparison_stopped_from_the_screen_leaves_nothing_running(compared: dict) -> None:
    stopped = compared["stopped"]
    assert stopped["status"] == "stopped"
    assert stopped["runs_done"] in (0, None) or stopped["runs_done"] < 2
    deadline = time.monotonic() + 20
    while True:  # the whole group: the command and its throwaway platforms
        try:
            os.killpg(compared["stopped_pid"], 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes of the stopped comparison are still running"
        time.sleep(0.2)
