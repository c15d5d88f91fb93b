"""`fangkong simulate --scenario school-outbreak` against the multi-process platform: four
`fangkong serve` processes on real Kafka and PostgreSQL, reached only over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fangkong_common.auth import Role
from tests.multiprocess import MultiProcessPlatform

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
FANGKONG = Path(sys.executable).parent / "fangkong"


def test_the_school_outbreak_plays_through_to_its_summary_on_kafka_and_postgresql(
    multiprocess_platform: MultiProcessPlatform, tmp_path: Path
) -> None:
    platform = multiprocess_platform
    record = tmp_path / "truth.jsonl"
    played = subprocess.run(
        [str(FANGKONG), "simulate", "--scenario", "school-outbreak", "--scale", "0.02", "--seed", "11",
         "--token", platform.token(Role.admin), "--record", str(record), "--no-progress", "--lang", "en",
         *platform.service_url_options()],
        capture_output=True, text=True, timeout=600)
    assert played.returncode == 0, played.stdout[-3000:] + played.stderr[-3000:] + platform.logs()
    for heading in ("KPI", "not yet classified", "events/s"):
        assert heading.lower() in played.stdout.lower(), played.stdout[-3000:]

    truth = [json.loads(line) for line in record.read_text().splitlines()]
    positives = {r["person"] for r in truth if r["kind"] == "positive"}
    classified = {r["person"] for r in truth if r["kind"] == "classified"}
    exposed = [r for r in truth if r["kind"] == "exposed"]
    assert positives and exposed and classified <= positives

    # What the services hold, read back through their own APIs, matches what was played.
    commander = platform.headers(Role.admin)
    cases = httpx.get(f"{platform.url('quarantine')}/quarantine/cases", params={"limit": 1000}, headers=commander,
                      timeout=30).json()
    assert len(cases) == len(positives)
    assert sum(1 for c in cases if c["classification"]) == len(classified)
    orders = httpx.get(f"{platform.url('quarantine')}/quarantine/orders", params={"limit": 1},
                       headers=commander, timeout=30).json()
    assert orders["total"] >= len({r["person"] for r in exposed})
    assert platform.stop() == {name: 0 for name in platform.services}, platform.logs()
