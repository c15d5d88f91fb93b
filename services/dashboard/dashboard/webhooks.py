"""Webhook deliveries: the consumer writes them (readmodel.webhook_deliveries) in the
transaction of the events that cause them; this background job sends them, signed,
and retries failures with exponential backoff until they succeed or run out of tries."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from dashboard.domain.rules import SIGNATURE_HEADER, backoff_seconds, sign
from dashboard.models import Delivery, Webhook

log = logging.getLogger("fangkong.dashboard.webhooks")
BATCH = 20


async def send_due(app: FastAPI, client: httpx.AsyncClient, now: datetime | None = None) -> int:
    """Send the deliveries that are due; the number attempted."""
    settings = app.state.settings
    database = app.state.database
    now = now or datetime.now(UTC)
    async with database.sessionmaker() as session, session.begin():
        query = (select(Delivery, Webhook).join(Webhook, Webhook.id == Delivery.webhook_id)
                 .where(Delivery.status == "pending", Delivery.next_attempt_at <= now)
                 .order_by(Delivery.next_attempt_at).limit(BATCH))
        if session.get_bind().dialect.name == "postgresql":
            # Several replicas share the table: each takes rows nobody else holds.
            query = query.with_for_update(of=Delivery, skip_locked=True)
        pairs = (await session.execute(query)).all()
        results = await asyncio.gather(*(_post(client, delivery, hook) for delivery, hook in pairs))
        for (delivery, hook), (status_code, error) in zip(pairs, results):
            delivery.attempts += 1
            delivery.last_status_code = status_code
            delivery.last_error = error
            if not hook.active:
                delivery.status = "failed"
                delivery.last_error = "webhook deactivated"
            elif error is None:
                delivery.status = "delivered"
                delivery.delivered_at = datetime.now(UTC)
            elif delivery.attempts >= settings.webhook_max_attempts:
                delivery.status = "failed"
            else:
                delivery.next_attempt_at = now + timedelta(
                    seconds=backoff_seconds(delivery.attempts, settings.webhook_backoff_seconds))
        return len(pairs)


async def _post(client: httpx.AsyncClient, delivery: Delivery, hook: Webhook) -> tuple[int | None, str | None]:
    if not hook.active:
        return None, "webhook deactivated"
    body = delivery.body.encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(hook.secret, int(time.time()), body),
               "X-Fangkong-Event": delivery.event_type, "X-Fangkong-Delivery": delivery.id}
    try:
        response = await client.post(hook.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"[:500]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


async def delivery_job(app: FastAPI) -> None:
    """Background job: send what is due, forever."""
    settings = app.state.settings
    transport = getattr(app.state, "webhook_transport", None)
    async with httpx.AsyncClient(transport=transport, timeout=settings.webhook_timeout_seconds,
                                 follow_redirects=False) as client:
        while True:
            try:
                sent = await send_due(app, client)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a database hiccup must not end the job
                log.exception("webhook delivery round failed")
                sent = 0
            if not sent:
                await asyncio.sleep(settings.webhook_poll_seconds)
