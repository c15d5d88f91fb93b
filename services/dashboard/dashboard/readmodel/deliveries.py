"""Webhook deliveries queued in the transaction of the events that cause them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.models import Delivery, Webhook
from dashboard.readmodel.events import event_region
from dashboard.readmodel.store import Outcome
from fangkong_common.db import dialect_insert
from fangkong_common.events.envelope import Envelope


async def webhook_deliveries(session: AsyncSession, items: Sequence[tuple[Envelope, Any]], out: Outcome) -> int:
    """Deliveries for the subscribed webhooks, in the transaction of the events that cause them."""
    hooks = (await session.execute(select(Webhook).where(Webhook.active.is_(True)))).scalars().all()
    if not hooks:
        return 0
    now = datetime.now(UTC)
    rows = []
    for envelope, p in items:
        region = event_region(p)
        for hook in hooks:
            if envelope.type not in json.loads(hook.event_types):
                continue
            scope = json.loads(hook.regions)
            if scope and not (region and any(region.startswith(prefix) for prefix in scope)):
                continue
            body = {
                "event_id": str(envelope.id), "event_type": envelope.type,
                "occurred_at": envelope.model_dump(mode="json")["occurred_at"], "region_code": region,
                # Counts only: no person key, no name leaves the dashboard.
                "changes": [{"metric": m, "region_code": r, "day": d.isoformat(), "dimension": dim, "delta": n}
                            for m, r, d, dim, n in out.by_event.get(str(envelope.id), [])],
            }
            rows.append({"id": str(uuid.uuid4()), "webhook_id": hook.id, "event_id": str(envelope.id),
                         "event_type": envelope.type, "body": json.dumps(body, ensure_ascii=False),
                         "status": "pending", "attempts": 0, "next_attempt_at": now, "last_status_code": None,
                         "last_error": None, "created_at": now, "delivered_at": None})
    if rows:
        await session.execute(dialect_insert(session, Delivery).on_conflict_do_nothing(), rows)
    return len(rows)
