from __future__ import annotations

import pytest

from fangkong_common.bus import create_bus, forget_memory_bus


@pytest.fixture
async def bus(bus_url: str):
    """A started bus of the parametrised backend (memory, then real Kafka)."""
    instance = create_bus(bus_url, partitions=4, client_id="contract")
    await instance.start()
    try:
        yield instance
    finally:
        await instance.stop()
        forget_memory_bus(bus_url)
