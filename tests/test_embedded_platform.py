"""`fangkong up`'s platform: a clean stop loses no event, each service gets its own database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from fangkong_cli.databases import ensure_postgres_databases, service_database_urls
from fangkong_cli import platform as platform_module
from fangkong_cli.platform import create_platform
from fangkong_cli.services import SERVICE_NAMES
from fangkong_common.auth import Role, issue_token
from fangkong_common.testing import eventually
from registry.domain.idcard import make_resident_id
from tests.multiprocess import free_port

CITY, COUNTY = "440300", "440305"


class Platform:
    """The embedded platform in this process, as `fangkong up` assembles it."""

    def __init__(self, data_dir: Path, per_service: dict | None = None) -> None:
        # A new bus name each start: like a new process, the in-process bus starts empty.
        self.app = create_platform({"data_dir": data_dir, "bus_url": f"memory://{uuid.uuid4().hex}"},
                                   per_service=per_service)
        settings = self.app.apps["registry"].state.settings
        self.commander = {"Authorization": "Bearer " + issue_token(
            settings.jwt_secret.get_secret_value(), role=Role.commander, regions=[CITY])}

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.fallback.router.lifespan_context(self.app.fallback)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://p", timeout=30)
        return self.client

    async def __aexit__(self, *exc) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(*exc)


async def _register_returnees(client: httpx.AsyncClient, headers: dict, count: int) -> list[str]:
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    keys = []
    for n in range(count):
        person = await client.post("/registry/persons", headers=headers, json={
            "id_number": make_resident_id(COUNTY, date(1980 + n % 30, 1 + n % 12, 1 + n % 28), n),
            "name": f"归国人员{n}", "region_code": COUNTY, "grid": "g1"})
        assert person.status_code == 201, person.text
        keys.append(person.json()["id"])
        travel = await client.post(f"/registry/persons/{keys[-1]}/travel", headers=headers, json={
            "origin_kind": "international", "origin_country": "GB", "arrival_date": today.isoformat(),
            "port_of_entry": CITY, "transport": {"kind": "flight", "number": "CZ304"}})
        assert travel.status_code in (200, 201), travel.text
    return keys


async def test_a_clean_stop_right_after_writes_delivers_every_event_before_it_exits(tmp_path: Path) -> None:
    first = Platform(tmp_path)
    async with first as client:
        # Stop at once: the registry's person.returned events are still on their way to the
        # quarantine service (and its quarantine.ordered to the dashboard) when the stop begins.
        keys = await _register_returnees(client, first.commander, 20)

    second = Platform(tmp_path)  # a restart: the in-process bus is empty again
    async with second as client:
        orders = (await client.get("/quarantine/orders", params={"limit": 100},
                                   headers=second.commander)).json()["items"]
        assert sorted(o["person_key"] for o in orders) == sorted(keys)
        regions = (await client.get("/dashboard/regions", params={"region_code": CITY},
                                    headers=second.commander)).json()
        assert regions, "the dashboard saw none of the orders"


def test_one_postgresql_url_gives_each_service_its_own_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FANGKONG_TESTING_DATABASE_URL", raising=False)
    monkeypatch.setenv("FANGKONG_REGISTRY_DATABASE_URL", "postgresql+asyncpg://other/registry_elsewhere")
    urls = service_database_urls("postgresql+asyncpg://fk:pw@db:5432/fangkong", SERVICE_NAMES)
    assert make_url(urls["testing"]).database == "fangkong_testing"
    assert make_url(urls["testing"]).password == "pw"
    assert urls["registry"] == "postgresql+asyncpg://other/registry_elsewhere"
    assert len({make_url(u).database for u in urls.values()}) == 4
    with pytest.raises(ValueError, match="PostgreSQL"):
        service_database_urls("sqlite+aiosqlite:///x.db", SERVICE_NAMES)
    with pytest.raises(ValueError, match="database name"):
        service_database_urls("postgresql+asyncpg://fk@db:5432", SERVICE_NAMES)


@pytest.mark.postgres
async def test_the_platform_on_postgresql_creates_and_uses_a_database_per_service(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SERVICE_NAMES:
        monkeypatch.delenv(f"FANGKONG_{name.upper()}_DATABASE_URL", raising=False)
    urls = service_database_urls(postgres_url, SERVICE_NAMES)
    assert sorted(await ensure_postgres_databases(postgres_url, urls.values())) == sorted(
        make_url(u).database for u in urls.values())
    assert await ensure_postgres_databases(postgres_url, urls.values()) == []  # the second start creates nothing

    platform = Platform(tmp_path, per_service={n: {"database_url": u} for n, u in urls.items()})
    async with platform as client:
        assert (await client.get("/readyz")).status_code == 200
        [key] = await _register_returnees(client, platform.commander, 1)
    assert not list(tmp_path.glob("*.db")), "a service fell back to SQLite"
    for name, url in urls.items():
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                tables = set((await connection.execute(text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))).scalars())
        finally:
            await engine.dispose()
        assert {"outbox", "inbox"} <= tables, name
        assert ("persons" in tables) == (name == "registry"), (name, tables)


def _start_up(data_dir: Path, port: int) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
    process = subprocess.Popen([str(Path(sys.executable).parent / "fangkong"), "up", "--port", str(port),
                                "--data-dir", str(data_dir)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"fangkong up did not come up: {process.communicate()[1][-2000:]}")


async def test_after_a_crash_the_restarted_platform_delivers_what_was_on_its_way(tmp_path: Path) -> None:
    port = free_port()
    process = _start_up(tmp_path, port)
    secret = json.loads((tmp_path / "secrets.json").read_text())["jwt_secret"]
    commander = {"Authorization": "Bearer " + issue_token(secret, role=Role.commander, regions=[CITY])}
    accepted: list[str] = []
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()

    async def register(client: httpx.AsyncClient, worker: int) -> None:
        for n in range(worker * 1000, worker * 1000 + 200):
            person = await client.post("/registry/persons", headers=commander, json={
                "id_number": make_resident_id(COUNTY, date(1960 + n % 40, 1 + n % 12, 1 + n % 28), n % 997),
                "name": f"归国人员{n}", "region_code": COUNTY, "grid": "g1"})
            key = person.json()["id"]
            travel = await client.post(f"/registry/persons/{key}/travel", headers=commander, json={
                "origin_kind": "international", "origin_country": "GB", "arrival_date": today.isoformat(),
                "port_of_entry": CITY, "transport": {"kind": "flight", "number": "CZ304"}})
            assert travel.status_code in (200, 201), travel.text
            accepted.append(key)  # committed with its outbox row: its order must come, crash or not

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        writers = [asyncio.create_task(register(client, worker)) for worker in range(6)]
        while len(accepted) < 150:
            await asyncio.sleep(0.01)
        process.kill()  # SIGKILL in the middle of the burst: no drain, no clean shutdown
        process.wait(10)
        await asyncio.gather(*writers, return_exceptions=True)
    assert len(accepted) >= 150

    restarted = _start_up(tmp_path, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            async def all_ordered():
                orders = (await client.get("/quarantine/orders", params={"limit": 1000}, headers=commander)).json()
                found = {o["person_key"] for o in orders["items"]}
                assert set(accepted) <= found, f"{len(set(accepted) - found)} accepted returnees have no order"
                return found

            await eventually(all_ordered, timeout=30)
    finally:
        restarted.send_signal(signal.SIGINT)
        restarted.wait(30)
    assert restarted.returncode == 0


async def test_the_journal_keeps_events_a_consumer_had_not_read_when_the_process_died(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = tmp_path / "bus.sqlite"
    first = create_platform({"data_dir": tmp_path, "bus_url": f"memory://first?journal={journal}"})
    settings = first.apps["registry"].state.settings
    headers = {"Authorization": "Bearer " + issue_token(settings.jwt_secret.get_secret_value(),
                                                        role=Role.commander, regions=[CITY])}
    lifespan = first.fallback.router.lifespan_context(first.fallback)
    await lifespan.__aenter__()
    # The quarantine service is slow today: its consumers have not read a thing when the process dies.
    for subscription in first.apps["quarantine"].state.subscriptions:
        subscription._task.cancel()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://p") as client:
        keys = await _register_returnees(client, headers, 10)

    async def published() -> bool:
        return await first.apps["registry"].state.relay.pending_count() == 0

    await eventually(published)
    # The crash: every task of the first process stops where it is, nothing is drained or closed.
    for service_app in first.apps.values():
        service_app.state.relay._task.cancel()
        for subscription in service_app.state.subscriptions:
            subscription._task.cancel()

    second = create_platform({"data_dir": tmp_path, "bus_url": f"memory://second?journal={journal}"})
    async with second.fallback.router.lifespan_context(second.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://p") as client:
            async def all_ordered():
                orders = (await client.get("/quarantine/orders", params={"limit": 100}, headers=headers)).json()
                assert sorted(o["person_key"] for o in orders["items"]) == sorted(keys)
                return True

            await eventually(all_ordered, timeout=20)
    # Close the dead first process's leftovers after the check (a crashed process drains nothing).
    monkeypatch.setattr(platform_module, "drain", lambda apps: asyncio.sleep(0))
    await lifespan.__aexit__(None, None, None)


@pytest.mark.kafka
@pytest.mark.postgres
async def test_the_embedded_platform_runs_the_same_on_kafka_and_postgresql(
    tmp_path: Path, postgres_url: str, kafka_broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `fangkong up --bus kafka://… --database-url postgresql+asyncpg://…`, assembled in this process.
    for name in SERVICE_NAMES:
        monkeypatch.delenv(f"FANGKONG_{name.upper()}_DATABASE_URL", raising=False)
    urls = service_database_urls(postgres_url, SERVICE_NAMES)
    await ensure_postgres_databases(postgres_url, urls.values())
    app = create_platform({"data_dir": tmp_path, "bus_url": f"{kafka_broker.url}?namespace=e{uuid.uuid4().hex[:10]}"},
                          per_service={n: {"database_url": u} for n, u in urls.items()})
    settings = app.apps["registry"].state.settings
    headers = {"Authorization": "Bearer " + issue_token(settings.jwt_secret.get_secret_value(),
                                                        role=Role.commander, regions=[CITY])}
    async with app.fallback.router.lifespan_context(app.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p", timeout=30) as client:
            assert (await client.get("/readyz")).json()["checks"] == {name: True for name in SERVICE_NAMES}
            keys = await _register_returnees(client, headers, 3)

            async def ordered():
                orders = (await client.get("/quarantine/orders", headers=headers)).json()["items"]
                assert sorted(o["person_key"] for o in orders) == sorted(keys)
                return True

            await eventually(ordered, timeout=60)
    assert not list(tmp_path.glob("*.db")) and not (tmp_path / "bus.sqlite").exists()
