"""Every service starts the same way: migrations, bus, relay; health, readiness, metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect

from fangkong_cli.platform import create_platform
from fangkong_cli.services import SERVICE_NAMES, SERVICES

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", SERVICE_NAMES)
async def test_service_starts_migrates_and_reports_ready(name: str, database_url: str, bus_url: str) -> None:
    entry = SERVICES[name]
    app = entry.create_app(entry.settings(database_url=database_url, bus_url=bus_url))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            health = await client.get("/healthz", headers={"X-Correlation-ID": "abc-123"})
            assert health.status_code == 200
            assert health.json() == {"status": "ok", "service": name}
            assert health.headers["x-correlation-id"] == "abc-123"
            assert (await client.get(f"/{name}/healthz")).status_code == 200
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": True, "bus": True}
            metrics = await client.get("/metrics")
            assert f'fangkong_http_requests_total{{method="GET",route="/healthz",service="{name}",status="200"}}' \
                in metrics.text
        async with app.state.database.engine.connect() as conn:
            tables = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
        assert {"outbox", "inbox", "alembic_version"} <= tables


async def test_readiness_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    entry = SERVICES["registry"]
    app = entry.create_app(entry.settings(
        database_url=f"postgresql+asyncpg://nobody@127.0.0.1:{port}/none", auto_migrate=False,
        bus_url="memory://unreachable-db"))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": False, "bus": True}


async def test_the_embedded_platform_routes_each_prefix_to_its_service(tmp_path: Path) -> None:
    platform = create_platform({"data_dir": tmp_path, "bus_url": "memory://platform-test"})
    async with platform.fallback.router.lifespan_context(platform.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://p") as client:
            overall = (await client.get("/healthz")).json()
            assert overall["services"] == sorted(SERVICE_NAMES)
            for name in SERVICE_NAMES:
                assert (await client.get(f"/{name}/healthz")).json()["service"] == name
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and all(ready.json()["checks"].values())
            assert 'service="registry"' in (await client.get("/metrics")).text
            index = (await client.get("/docs")).text
            for name in SERVICE_NAMES:
                assert f'href="/{name}/docs"' in index
                schema = (await client.get(f"/{name}/openapi.json")).json()
                assert all(path.startswith(f"/{name}/") or path in ("/healthz", "/readyz", "/metrics")
                           for path in schema["paths"]), name
                assert (await client.get(f"/{name}/docs")).status_code == 200
    assert sorted(p.name for p in tmp_path.glob("*.db")) == sorted(f"{n}.db" for n in SERVICE_NAMES)


def test_fangkong_up_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fangkong = Path(sys.executable).parent / "fangkong"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANGKONG_")}
    process = subprocess.Popen([str(fangkong), "up", "--port", str(port), "--data-dir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.3)
        assert ready is not None and ready.status_code == 200, "platform did not come up"
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err[-2000:]
    assert f"http://127.0.0.1:{port}/" in err
    assert (tmp_path / "secrets.json").exists()
