"""Consumer groups of the registry service (what it learns from other services' events)."""

from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.app import ConsumerSpec
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import CaseClassified, TestPositive

from registry.service import case_classified, case_positive


async def apply_case_event(session: AsyncSession, envelope: Envelope) -> None:
    """A positive becomes a case: the contacts to trace next are theirs (degree 1)."""
    payload = envelope.parsed()
    if isinstance(payload, TestPositive):
        await case_positive(session, payload.person_key, payload.resulted_at, payload.barcode)
    elif isinstance(payload, CaseClassified):
        await case_classified(session, payload.person_key, payload.classification.value,
                                       payload.classified_at)


CONSUMERS: list[ConsumerSpec] = [
    ConsumerSpec(group="registry.cases", topics=[topics.TEST_POSITIVE, topics.CASE_CLASSIFIED],
                 apply=apply_case_event),
]
