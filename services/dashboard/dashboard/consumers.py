"""Consumer groups of the dashboard service (what it learns from other services' events).

One group reads every topic: the read models are one projection, applied a batch
at a time with set-based writes (ConsumerSpec.apply_batch).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.app import ConsumerSpec
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope

from dashboard import readmodel

GROUP = "dashboard.read-models"


def build(on_commit: Callable[[], None] | None = None) -> list[ConsumerSpec]:
    async def apply_batch(session: AsyncSession, envelopes: list[Envelope]) -> None:
        outcome = await readmodel.apply_batch(session, envelopes)
        if on_commit is not None and (outcome.nonzero() or outcome.sites):
            # Wake the live feed only once the changes are visible to other sessions.
            event.listen(session.sync_session, "after_commit", lambda _s: on_commit(), once=True)

    return [ConsumerSpec(group=GROUP, topics=topics.ALL_TOPICS, apply_batch=apply_batch, max_batch=1000)]


CONSUMERS: list[ConsumerSpec] = build()
