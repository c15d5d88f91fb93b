"""Events through the real bus: the in-process one and real Kafka (``bus_url``)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fangkong_common.events.schemas import QuarantineTestDue
from fangkong_common.testing import running
from testing.config import Settings
from testing.main import create_app


async def test_tube_and_result_events_reach_the_bus_once_and_test_due_is_consumed(bus_url, tmp_path: Path, kit):
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'testing.db'}", bus_url=bus_url,
                        outbox_poll_seconds=0.05)
    tag = uuid.uuid4().hex[:8].upper()
    got = []
    ids = set()

    async def handle(envelopes):
        # at-least-once delivery: count each event id once; a retried POST must add no new id
        for e in envelopes:
            if tag in e.payload.get("barcode", "") and e.id not in ids:
                ids.add(e.id)
                got.append(e)

    async with running(create_app(settings)) as h:
        sub = await h.bus.subscribe(["test.collected", "test.pool_positive", "test.negative", "test.positive"],
                                    f"observer-{tag}", handle)
        try:
            site, lab = await kit.make_site(h), await kit.make_lab(h)
            now = datetime.now(UTC)
            pool, neg = f"{tag}-P", f"{tag}-N"
            pool_members = [f"{tag}P{j:02d}" for j in range(10)]
            r = await h.client.post("/testing/tubes", headers=kit.staff(h, site), json={"tubes": [
                {"barcode": pool, "ratio": 10, "members": pool_members, "site_id": site,
                 "collected_at": (now - timedelta(hours=3)).isoformat()},
                {"barcode": neg, "ratio": 20, "members": [f"{tag}N{j:02d}" for j in range(20)], "site_id": site,
                 "collected_at": (now - timedelta(hours=3)).isoformat()}]})
            assert r.status_code == 201, r.text
            results = {"results": [{"barcode": pool, "result": "positive", "lab_id": lab, "tested_at": now.isoformat()},
                                   {"barcode": neg, "result": "negative", "lab_id": lab, "tested_at": now.isoformat()}]}
            for _ in range(2):  # the second post is a retry: nothing new on the bus
                r = await h.client.post("/testing/results", headers=kit.lab_staff(h, lab), json=results)
                assert r.status_code == 200, r.text

            def types():
                return sorted(e.type for e in got)

            await kit.eventually(lambda: _value(types() == ["test.collected", "test.collected", "test.negative",
                                                            "test.pool_positive"]), timeout=60)
            await asyncio.sleep(1.0)
            assert types() == ["test.collected", "test.collected", "test.negative", "test.pool_positive"]
            positive = next(e for e in got if e.type == "test.pool_positive")
            assert sorted(positive.payload["member_keys"]) == sorted(h.person_key(m) for m in pool_members)
            assert positive.source == "testing" and positive.key == pool
            retests = (await h.client.get("/testing/orders", headers=kit.commander(h),
                                          params={"source_barcode": pool})).json()
            assert len(retests) == 10 and {o["reason"] for o in retests} == {"retest"}

            # quarantine.test_due from the bus becomes a pending order, once
            key = h.person_key(f"{tag}Q")
            due = QuarantineTestDue(order_id=uuid.uuid4(), person_key=key, region_code=kit.DISTRICT,
                                    due_date=date.today(), stage_index=0)
            envelopes = await h.publish(due)
            await h.bus.publish(envelopes)

            async def orders():
                return (await h.client.get("/testing/orders", headers=kit.commander(h),
                                           params={"person_id": key})).json()

            await kit.eventually(orders, timeout=60)
            await asyncio.sleep(1.0)
            assert [o["reason"] for o in await orders()] == ["quarantine"]
        finally:
            await sub.stop()


async def _value(v):
    return v
