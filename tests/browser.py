"""What the browser tests of the command screen share: Debian's Chromium (scripts/test installs it)
and the embedded platform served by uvicorn on a loopback port inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is installed by scripts/test")


@contextlib.asynccontextmanager
async def serving(app, port: int):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    try:
        yield
    finally:
        server.should_exit = True
        await task
