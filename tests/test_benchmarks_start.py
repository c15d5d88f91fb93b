"""Every benchmark still imports and parses its arguments: the runner (`python -m bench`) and each
older single-area script (the smoke run of every scenario is tests/test_bench_smoke.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


@pytest.mark.parametrize("script", sorted(p.name for p in BENCH.glob("*.py") if not p.name.startswith("_")))
def test_benchmark_starts(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_the_runner_starts_and_refuses_bad_options() -> None:
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "--smoke" in done.stdout and "--only" in done.stdout and "--scale" in done.stdout
    for bad, says in ((["--only", "nonsense"], "invalid choice"), (["--scale", "ten"], "--scale wants a number"),
                      (["--scale", "10"], "at least 1000")):
        refused = subprocess.run([sys.executable, "-m", "bench", *bad], cwd=ROOT, capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode == 2 and says in refused.stderr, (bad, refused.stderr[-1000:])
