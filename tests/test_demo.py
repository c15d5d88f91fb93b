"""The README's run command: `fangkong up --demo` brings the screen up with a live outbreak."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fangkong_common.auth import Role, issue_token
from tests.multiprocess import free_port

FANGKONG = Path(sys.executable).parent / "fangkong"


def _up(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
    with log.open("a") as out:
        return subprocess.Popen([str(FANGKONG), "up", "--demo", "--port", str(port), "--data-dir", str(data_dir)],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} after {timeout} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def _stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(60)


def test_the_demo_brings_the_screen_up_with_an_outbreak_once(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "up.log"
    process = _up(tmp_path / "data", port, log)
    try:
        _wait_for(log, "demo data loaded", process)
        secret = json.loads((tmp_path / "data" / "secrets.json").read_text())["jwt_secret"]
        commander = {"Authorization": "Bearer " + issue_token(secret, role=Role.commander, regions=["440300"])}
        board = httpx.get(f"http://127.0.0.1:{port}/dashboard/kpis", headers=commander, timeout=30).json()
        kpis = {k["name"]: k for k in board["kpis"]}
        assert board["headline"]["positives"] > 10 and board["headline"]["contacts"] > 100, board
        # Today's numbers, not only history: the outbreak's last day is today, played up to now.
        assert kpis["isolated"]["denominator"] > 0 and kpis["treated"]["denominator"] > 0, board
        screen = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)
        assert screen.status_code == 200 and "echarts" in screen.text.lower()
        # The printed link signs the screen in as the demo commander.
        link = next(line for line in log.read_text().splitlines() if "#token=" in line)
        token = link.split("#token=", 1)[1].split()[0]
        assert httpx.get(f"http://127.0.0.1:{port}/dashboard/kpis", timeout=30,
                         headers={"Authorization": f"Bearer {token}"}).json()["region_code"] == "440300"
    finally:
        assert _stop(process) == 0, log.read_text()[-3000:]

    again = _up(tmp_path / "data", port, log)
    try:
        _wait_for(log, "demo data already loaded", again, timeout=60)
        board_again = httpx.get(f"http://127.0.0.1:{port}/dashboard/kpis", headers=commander, timeout=30).json()
        assert board_again["headline"]["positives"] == board["headline"]["positives"]
    finally:
        assert _stop(again) == 0, log.read_text()[-3000:]
