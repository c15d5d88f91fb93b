"""The benchmark runner still runs: `python -m bench --smoke` against the session's Kafka and
PostgreSQL runs every scenario scaled down and writes its figures and the table. No timing is
asserted (the full run is on demand; docs/PERFORMANCE.md holds its figures)."""

from __future__ import annotations

import ast
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def runner_scenarios() -> set[str]:
    """The names in bench/__main__.py's SCENARIOS, read without importing the runner (it puts bench/
    at the front of sys.path, which the rest of the test session should not inherit)."""
    tree = ast.parse((ROOT / "bench" / "__main__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "SCENARIOS" for t in targets):
                return {key.value for key in node.value.keys}
    raise AssertionError("bench/__main__.py has no SCENARIOS")

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


def numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, dict):
        return [n for v in value.values() for n in numbers(v)]
    return []


@pytest.fixture(scope="module")
def smoke_run(kafka_broker, postgres_server, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, str]:
    directory = tmp_path_factory.mktemp("bench")
    out, figures = directory / "PERFORMANCE.md", directory / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--kafka", kafka_broker.bootstrap,
                           "--database-url", postgres_server.dsn, "--json", str(figures), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done, json.loads(figures.read_text()), out.read_text()


def test_every_scenario_produces_its_figures(smoke_run) -> None:
    _, results, _ = smoke_run
    assert results["smoke"] is True
    assert set(results["scenarios"]) == runner_scenarios() and len(runner_scenarios()) == 9
    for name, figures in results["scenarios"].items():
        assert "error" not in figures, (name, figures)
        values = numbers(figures)
        assert values and all(math.isfinite(v) for v in values), (name, figures)
    s = results["scenarios"]
    # The figures each goal is judged by, present and positive.
    for name, key in (("screening", "members_per_s"), ("positive", "p99_ms"),
                      ("retests", "pool_to_retests_single_post_p99_ms"), ("plan", "median_total_s"),
                      ("risk_area", "seconds"), ("kpi", "kpis_p99_ms_worst"), ("faststream", "ours_produce_per_s"),
                      ("faststream", "faststream_consume_per_s"), ("bus", "e_per_s")):
        assert s[name][key] is not None and s[name][key] >= 0, (name, key, s[name])
    # The mass screening counted every member and tube on the dashboard, retests included.
    screening = s["screening"]
    assert screening["dashboard"] == {"people_swabbed": screening["members"] + screening["retest_tubes"],
                                      "tubes_resulted": screening["tubes"] + screening["retest_tubes"]}
    assert s["positive"]["samples"] == s["positive"]["completed"] == 3 and s["positive"]["background_events"] > 0
    # One, then two dashboard processes drained a backlog: the group split the partitions among every
    # member, and the read model counted each event once (whether both consumed is timing at this size).
    replicas = s["replicas"]
    for phase, processes in (("one", 1), ("two", 2)):
        f = replicas[phase]
        assert f["counted"] == f["expected"] and len(f["processes"]) == processes, f
        assert len(f["split"]) == f["members"] == processes, f
    for name in ("http", "kafka", "rows"):
        assert all(v > 0 for v in numbers(results["baselines"][name])), results["baselines"][name]
    env = results["environment"]
    assert env["cores"] >= 1 and env["postgres"] and env["kafka"] and env["python"]


def test_the_document_is_rendered(smoke_run) -> None:
    _, results, document = smoke_run
    assert "<!-- BEGIN GENERATED: bench -->" in document and "<!-- END GENERATED: bench -->" in document
    assert "smoke run" in document and results["started"] in document
    table = [line for line in document.splitlines() if line.startswith("| ") and "---" not in line][1:]
    figures = {"Mass screening", "Positive result", "Positive pool", "Capacity re-plan", "New risk area",
               "Dashboard KPI", "Our bus vs FastStream: produce", "Our bus vs FastStream: consume"}
    for figure in figures:
        [row] = [line for line in table if figure in line and "share" not in line and "10M members" not in line]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] not in ("—", "") and not cells[2].startswith("failed"), row
        assert cells[5] == "— (not at goal size)", row  # a smoke run claims no goal
    assert "bare uvicorn endpoint" in document and "raw aiokafka" in document and "COPY" in document


def test_the_table_claims_a_goal_only_at_its_size_and_a_stuck_sample_is_a_miss(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import _report

    plan = {"sites": 1000, "labs": 200, "slots": 48, "median_total_s": 6.2, "solve_s": 2.0}
    small_plan = dict(plan, sites=40, median_total_s=0.1)
    stuck = {"samples": 50, "completed": 2, "timeout_s": 60.0, "timed_out": {"sample": 2, "waiting_for": ["counter"]},
             "background_events_per_s": 990, "completed_max_ms": 1234.0, "dashboard_behind_collected_events": 5000,
             "p99_ms": None}
    results = {"scenarios": {"plan": plan, "positive": stuck, "kpi": {"error": "SystemExit: boom"}},
               "baselines": {"http": {"p99_ms": 10.0}}}
    rows = {row["scenario"]: row for row in _report.rows(results)}
    assert rows["plan"]["met"] is False and rows["plan"]["ratio"] == 3.1  # at its size: 6.2 s misses ≤ 5 s
    assert rows["positive"]["met"] is False and rows["positive"]["measured"].startswith("> 60")
    assert "counter" in rows["positive"]["measured"]
    assert rows["kpi"]["met"] is False and rows["kpi"]["measured"].startswith("failed: SystemExit: boom")
    [small] = _report.rows({"scenarios": {"plan": small_plan}, "baselines": {}})
    assert small["met"] is None  # fast, but not at the goal's size: no claim
