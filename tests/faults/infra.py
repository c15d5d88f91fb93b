"""Brokers and database servers of a fault test's own, and the platform on them."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.multiprocess import MultiProcessPlatform

ROOT = Path(__file__).resolve().parents[2]


def script(name: str, *args: str) -> dict:
    completed = subprocess.run([str(ROOT / "scripts" / name), *args], check=False, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"scripts/{name} {' '.join(args)} failed:\n{completed.stderr[-4000:]}")
    lines = [line for line in completed.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


@dataclass
class OwnKafka:
    bootstrap: str
    directory: Path

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap}"

    def stop(self) -> None:
        script("kafka", "stop", "--dir", str(self.directory))

    def start(self) -> None:
        script("kafka", "start", "--dir", str(self.directory))


@dataclass
class OwnPostgres:
    dsn: str
    directory: Path

    def database_url(self, name: str) -> str:
        return self.dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1) + f"/{name}"

    def stop(self, mode: str = "fast") -> None:
        script("postgres", "stop", "--dir", str(self.directory), "--mode", mode)

    def start(self) -> None:
        script("postgres", "start", "--dir", str(self.directory))


def start_platform(kafka_url: str, database_url: str, directory: Path) -> MultiProcessPlatform:
    platform = MultiProcessPlatform(kafka_url=kafka_url, database_url=database_url, directory=directory)
    try:
        platform.start()
    except BaseException:
        platform.stop()
        raise
    return platform


def stop_platform(platform: MultiProcessPlatform) -> None:
    codes = platform.stop()
    if any(codes.values()):
        print(platform.logs())


