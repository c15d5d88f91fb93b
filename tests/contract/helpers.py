"""Small helpers the contract tests share."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from fangkong_common.events.envelope import Envelope


def unique_topic(label: str) -> str:
    """A fresh topic per test, so runs against one broker never see each other's messages."""
    return f"contract.{label}.{uuid.uuid4().hex[:10]}"


def event(topic: str, key: str, **payload) -> Envelope:
    return Envelope(type=topic, source="contract-test", key=key, payload=payload)


async def eventually(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
