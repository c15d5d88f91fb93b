"""Consumer groups of the quarantine service (what it learns from other services' events).

Orders are opened in batches (set-based writes: a wave of contacts arrives as
tens of thousands of events); positives one by one, the negatives between them in batches.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.app import ConsumerSpec
from fangkong_common.events import topics
from fangkong_common.events.envelope import Envelope
from fangkong_common.logs import correlation_id
from fangkong_common.events.schemas import (
    ContactIdentified,
    PersonReturned,
    PersonRiskFlagged,
    ReturneeCategory,
    TestNegative,
    TestPositive,
)
from quarantine import service
from quarantine.domain.planning import Facts, local_date


def order_request(envelope: Envelope) -> service.OrderRequest | None:
    """The order an event asks for (None: nothing to plan, e.g. travel within the province)."""
    payload = envelope.parsed()
    opened = local_date(envelope.occurred_at)
    if isinstance(payload, PersonReturned):
        if payload.category is ReturneeCategory.local:
            return None
        facts = Facts(category=payload.category.value, order_date=opened, arrival_date=payload.arrival_date,
                      served_days=payload.served_quarantine_days)
        cause = f"returned:{payload.category.value}"
    elif isinstance(payload, PersonRiskFlagged):
        # An area still in force has an open window (the registry sends a far-future end): nobody
        # was exposed after the flag was raised, and a date near date.max would overflow the plan.
        facts = Facts(category=f"risk_flagged_{payload.level.value}", order_date=opened,
                      exposure_date=local_date(min(payload.window_end, envelope.occurred_at)))
        cause = "risk_flagged"
    elif isinstance(payload, ContactIdentified):
        facts = Facts(category=f"contact_degree_{payload.degree}", order_date=opened,
                      exposure_date=local_date(payload.last_exposure_at))
        cause = f"contact_degree_{payload.degree}"
    else:  # pragma: no cover - the group subscribes to the three topics above only
        return None
    return service.OrderRequest(person_key=payload.person_key, region_code=payload.region_code, cause=cause,
                                facts=facts, grid=payload.grid, source_event_id=str(envelope.id))


async def open_orders(session: AsyncSession, envelopes: list[Envelope]) -> None:
    requests = [r for r in (order_request(e) for e in envelopes) if r is not None]
    if requests:
        # "now" is the latest event's time: a replay plans the same dates
        await service.open_orders(session, requests, max(e.occurred_at for e in envelopes))


async def apply_test_results(session: AsyncSession, envelopes: list[Envelope]) -> None:
    """Positives one by one (each may take a bed); the negatives between them as one batch. The
    batch keeps the order of the events: a positive sees every negative that came before it."""
    negatives: list[tuple[list[str], str, datetime]] = []
    for envelope in envelopes:
        payload = envelope.parsed()
        if isinstance(payload, TestNegative):
            negatives.append((payload.member_keys, payload.barcode, payload.resulted_at))
        elif isinstance(payload, TestPositive):
            if negatives:
                await service.record_negatives(session, negatives)
                negatives = []
            token = correlation_id.set(str(envelope.correlation_id))  # its logs name the lab's request
            try:
                await service.admit_positive(session, person_key=payload.person_key, barcode=payload.barcode,
                                             origin_hint=payload.origin_region_code or payload.region_code,
                                             resulted_at=payload.resulted_at, now=envelope.occurred_at)
            finally:
                correlation_id.reset(token)
    if negatives:
        await service.record_negatives(session, negatives)


CONSUMERS: list[ConsumerSpec] = [
    ConsumerSpec(group="quarantine.orders",
                 topics=[topics.PERSON_RETURNED, topics.PERSON_RISK_FLAGGED, topics.CONTACT_IDENTIFIED],
                 apply_batch=open_orders),
    ConsumerSpec(group="quarantine.results", topics=[topics.TEST_POSITIVE, topics.TEST_NEGATIVE],
                 apply_batch=apply_test_results),
]
