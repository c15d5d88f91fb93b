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

    async def make_durable(self) -> None:
        """scripts/postgres turns fsync and synchronous_commit off for speed: a commit is
        acknowledged before it is on disk, and a crash (immediate shutdown) loses it. A restart
        test must run on a durable server, or a "lost write" is the cluster's, not the
        platform's. ALTER SYSTEM lands in postgresql.auto.conf, read after the script's file."""
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                await conn.execute(f"ALTER SYSTEM SET {setting} = on")
            await conn.execute("SELECT pg_reload_conf()")
            await conn.execute("CHECKPOINT")
            values = {row["name"]: row["setting"] for row in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', "
                "'full_page_writes')")}
        finally:
            await conn.close()
        assert values == {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}, values

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


