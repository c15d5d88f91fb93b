"""Consumer groups of the dashboard service (what it learns from other services' events).

One group reads every topic: the read models are one projection, applied a batch
at a time with set-based writes (ConsumerSpec.apply_batch).
"""

from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.app import ConsumerSpec
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope

from dashboard import readmodel

GROUP = "dashboard.read-models"


async def apply_batch(session: AsyncSession, envelopes: list[Envelope]) -> None:
    await readmodel.apply_batch(session, envelopes)


CONSUMERS: list[ConsumerSpec] = [
    ConsumerSpec(group=GROUP, topics=topics.ALL_TOPICS, apply_batch=apply_batch, max_batch=1000),
]
