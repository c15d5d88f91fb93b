"""Shared by the quarantine use cases: stage and facts (de)serialising, events, chunks."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.db import dialect_insert
from fangkong_common.errors import ServiceError
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import (
    PlannedStage,
    QuarantineOrdered,
)
from quarantine.domain.placement import KINDS_FOR_PLACE
from quarantine.domain.planning import Facts, Stage
from quarantine.domain.policy import Policy, load_packaged
from quarantine.models import (
    Order,
)

SOURCE = "quarantine"
PACKAGED: list[Policy] = load_packaged()
CHUNK = 500


class Unprocessable(ServiceError):
    status_code = 422


# --- (de)serialising stages ------------------------------------------------


def stage_json(stage: Stage) -> dict[str, Any]:
    return {"kind": stage.kind, "place": stage.place, "start_date": stage.start_date.isoformat(),
            "end_date": stage.end_date.isoformat(), "test_days": [d.isoformat() for d in stage.test_days],
            "first_day": stage.first_day, "days": stage.days}


def stage_from_json(raw: dict[str, Any]) -> Stage:
    return Stage(raw["kind"], raw["place"], date.fromisoformat(raw["start_date"]),
                 date.fromisoformat(raw["end_date"]), tuple(date.fromisoformat(d) for d in raw["test_days"]),
                 raw.get("first_day", 1), raw.get("days", 0))


def facts_json(facts: Facts) -> dict[str, Any]:
    return {"category": facts.category, "order_date": facts.order_date.isoformat(),
            "arrival_date": facts.arrival_date.isoformat() if facts.arrival_date else None,
            "exposure_date": facts.exposure_date.isoformat() if facts.exposure_date else None,
            "served_days": facts.served_days}


def facts_from_json(raw: dict[str, Any]) -> Facts:
    def d(key: str) -> date | None:
        return date.fromisoformat(raw[key]) if raw.get(key) else None

    return Facts(raw["category"], date.fromisoformat(raw["order_date"]), d("arrival_date"), d("exposure_date"),
                 raw.get("served_days", 0))


def stages_of(order: Order | dict) -> list[Stage]:
    raw = order["stages"] if isinstance(order, dict) else order.stages
    return [stage_from_json(s) for s in raw]


def event_envelope(payload, key: str) -> Envelope:
    return Envelope.wrap(payload, source=SOURCE, key=key)


def site_kinds_for(stage: Stage) -> tuple[str, ...]:
    return KINDS_FOR_PLACE.get(stage.place, ())


def test_rows_for(order_id: str, person_key: str, region: str, stages: Sequence[Stage], since: date) -> list[dict]:
    return [{"order_id": order_id, "person_key": person_key, "region_code": region, "due_date": day,
             "stage_index": i, "reason": "plan", "emitted_at": None}
            for i, stage in enumerate(stages) for day in stage.test_days if day >= since]


def ordered_event(order_id: str, person_key: str, region: str, cause: str, policy_id: str, version: int,
                   stages: Sequence[Stage]) -> Envelope:
    return event_envelope(QuarantineOrdered(
        order_id=uuid.UUID(order_id), person_key=person_key, region_code=region, reason=cause,
        policy_id=policy_id, policy_version=version,
        stages=[PlannedStage(kind=s.kind, place=s.place, start_date=s.start_date, end_date=s.end_date,
                             test_days=list(s.test_days)) for s in stages]), person_key)


def chunked(items: Sequence, size: int = CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def insert_ignoring(session: AsyncSession, table, columns: list[str], where: str):
    """INSERT … ON CONFLICT (columns) WHERE … DO NOTHING, on PostgreSQL or SQLite."""
    return dialect_insert(session, table).on_conflict_do_nothing(index_elements=columns, index_where=text(where))
