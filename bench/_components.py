"""Start the real components for a benchmark (the project's own scripts), or use given ones."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str, *args: str) -> dict:
    done = subprocess.run([str(ROOT / "scripts" / name), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"scripts/{name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


@contextlib.contextmanager
def kafka(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as directory:
        info = _script("kafka", "start", "--dir", directory, "--partitions", "6")
        try:
            yield info["bootstrap"]
        finally:
            _script("kafka", "stop", "--dir", directory)


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="bench-pg-") as directory:
        info = _script("postgres", "start", "--dir", directory)
        try:
            yield info["url"]
        finally:
            _script("postgres", "destroy", "--dir", directory)


def kafka_version() -> str:
    jars = sorted((ROOT / ".cache" / "kafka" / "jars").glob("kafka_2.13-*.jar"))
    return jars[-1].stem.removeprefix("kafka_2.13-") if jars else "unknown"
