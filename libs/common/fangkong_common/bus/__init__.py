"""One bus interface, two backends chosen by URL: ``kafka://`` and ``memory://``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from fangkong_common.bus.base import (
    Bus,
    BusUnavailable,
    DeadLetter,
    PermanentError,
    Record,
    RetryPolicy,
    Subscription,
    is_transient,
)

_memory_buses: dict[str, "Bus"] = {}


def create_bus(url: str, *, partitions: int = 6, client_id: str = "fangkong") -> Bus:
    """``memory://[name]`` gives the process's shared in-memory bus of that name
    (so services embedded in one process talk to each other); ``kafka://host:port``
    a Kafka client."""
    if url.startswith("memory://"):
        from fangkong_common.bus.memory import MemoryBus

        if url not in _memory_buses:
            # memory://name?journal=/path/bus.sqlite keeps what is not consumed yet across restarts.
            journal = parse_qs(urlsplit(url).query).get("journal", [None])[0]
            _memory_buses[url] = MemoryBus(url, partitions=partitions, journal=Path(journal) if journal else None)
        return _memory_buses[url]
    if url.startswith("kafka://"):
        from fangkong_common.bus.kafka import KafkaBus

        return KafkaBus(url, partitions=partitions, client_id=client_id)
    raise ValueError(f"unknown bus URL {url!r}: use memory:// or kafka://host:port")


def forget_memory_bus(url: str) -> None:
    bus = _memory_buses.pop(url, None)
    if bus is not None:
        bus.close()


__all__ = [
    "Bus", "BusUnavailable", "DeadLetter", "PermanentError", "Record", "RetryPolicy", "Subscription",
    "create_bus", "forget_memory_bus", "is_transient",
]
