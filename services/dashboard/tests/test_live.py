"""Webhooks (signature, retry with backoff, delivery log, scope) and the live feed (SSE over a real socket)."""

from __future__ import annotations

import asyncio
import json
import socket
from datetime import UTC, datetime

import httpx
import uvicorn

from fangkong_common.auth import Role
from fangkong_common.events import schemas as ev
from fangkong_common.testing import eventually, running

from dashboard.config import Settings
from dashboard.domain.rules import SIGNATURE_HEADER, backoff_seconds, sign, verify
from dashboard.main import create_app

from outbreak_events import DAY, outbreak, pk

SECRET = "s3cret-for-the-command-center"


def test_signature_and_backoff_rules() -> None:
    body = b'{"a":1}'
    header = sign(SECRET, 1700000000, body)
    assert header.startswith("t=1700000000,v1=") and verify(SECRET, header, body)
    assert not verify(SECRET, header, b'{"a":2}') and not verify("other-secret-value!", header, body)
    assert not verify(SECRET, "garbage", body)
    assert [backoff_seconds(n, 2.0) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_seconds(40, 2.0) == 3600.0


async def test_webhooks_are_signed_retried_logged_and_scoped(database_url: str) -> None:
    received: list[httpx.Request] = []
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "down.example":
            return httpx.Response(503, text="maintenance")
        calls["n"] += 1
        received.append(request)
        # The receiver fails the first try: the job must come back.
        return httpx.Response(500 if calls["n"] == 1 else 204)

    settings = Settings(database_url=database_url, bus_url="memory://hooks", webhook_poll_seconds=0.05,
                        webhook_backoff_seconds=0.05, webhook_max_attempts=3)
    async with running(create_app(settings, webhook_transport=httpx.MockTransport(handler))) as h:
        sz = h.headers(Role.integration, regions=["440300"])
        hook = await h.client.post("/dashboard/webhooks", json={
            "url": "https://cc.example/hooks", "event_types": ["test.positive", "case.classified"],
            "secret": SECRET}, headers=sz)
        assert hook.status_code == 201, hook.text
        hook_id = hook.json()["id"]
        beijing = await h.client.post("/dashboard/webhooks", json={
            "url": "https://down.example/hooks", "event_types": ["test.positive"], "secret": SECRET},
            headers=h.headers(Role.commander, regions=["110000"], sub="bj-commander"))
        bad = await h.client.post("/dashboard/webhooks", json={"url": "not a url", "event_types": ["person.name"],
                                                               "secret": "short"}, headers=sz)
        assert bad.status_code == 422
        assert {e["loc"][-1] for e in bad.json()["detail"]} == {"url", "event_types", "secret"}
        assert (await h.client.post("/dashboard/webhooks", json={"url": "https://x.example", "event_types":
                                                                 ["test.positive"], "secret": SECRET},
                                    headers=h.headers(Role.viewer, regions=["440300"]))).status_code == 403

        events = outbreak()
        await h.bus.publish(events)

        async def delivered():
            log = (await h.client.get(f"/dashboard/webhooks/{hook_id}/deliveries", headers=sz)).json()["deliveries"]
            # Shenzhen's positive (10) and its classification; 20's belong to Beijing.
            assert len(log) == 2 and all(d["status"] == "delivered" for d in log), log
            return log

        log = await eventually(delivered, timeout=60)
        assert sorted(d["event_type"] for d in log) == ["case.classified", "test.positive"]
        assert sorted(d["attempts"] for d in log) == [1, 2]  # the first try got a 500
        retried = next(d for d in log if d["attempts"] == 2)
        assert retried["last_status_code"] == 204 and retried["last_error"] is None
        for request in received:
            assert verify(SECRET, request.headers[SIGNATURE_HEADER], request.content)
            assert request.headers["X-Fangkong-Event"] in ("test.positive", "case.classified")
            body = json.loads(request.content)
            assert body["event_type"] == request.headers["X-Fangkong-Event"], body
            assert pk(10) not in request.content.decode()  # counts only, no person key
        positive = next(json.loads(r.content) for r in received if r.headers["X-Fangkong-Event"] == "test.positive")
        assert positive["region_code"] == "440304"
        # Whichever of the two arrived first made the person a positive of Futian.
        changes = [c for r in received for c in json.loads(r.content)["changes"]]
        assert {"metric": "positives", "region_code": "440304", "day": DAY.isoformat(), "dimension": "",
                "delta": 1} in changes

        # Beijing's hook sees only the Beijing-origin positive; its receiver is down: 3 tries, then failed.
        bj = h.headers(Role.commander, regions=["110000"], sub="bj-commander")
        bj_id = beijing.json()["id"]

        async def failed():
            log = (await h.client.get(f"/dashboard/webhooks/{bj_id}/deliveries", headers=bj)).json()["deliveries"]
            assert len(log) == 1 and log[0]["status"] == "failed", log
            return log

        bj_log = await eventually(failed, timeout=60)
        assert bj_log[0]["attempts"] == 3 and bj_log[0]["last_status_code"] == 503
        assert bj_log[0]["body"]["region_code"] == "110105"
        # Someone else's hook is invisible.
        assert (await h.client.get(f"/dashboard/webhooks/{bj_id}/deliveries", headers=sz)).status_code == 404

        # A replay of the same events queues nothing new.
        await h.bus.publish(events)
        marker = ev.CheckpointFever(checkpoint_id="marker", region_code="440305", temperature_c=37.5,
                                    observed_at=datetime.now(UTC))
        await h.publish(marker)

        async def marker_seen():
            kpis = (await h.client.get("/dashboard/reports/daily", headers=sz)).json()
            return any(r["metric"] == "fever_alerts" and r["today"] >= 1 for s in kpis["sections"] for r in s["rows"])

        await eventually(marker_seen, timeout=60)
        log = (await h.client.get(f"/dashboard/webhooks/{hook_id}/deliveries", headers=sz)).json()["deliveries"]
        assert len(log) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_live_feed_streams_changes_in_scope_over_a_real_socket(database_url: str) -> None:
    settings = Settings(database_url=database_url, bus_url="memory://sse", stream_poll_seconds=0.2)
    async with running(create_app(settings)) as h:
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(h.app, host="127.0.0.1", port=port, lifespan="off",
                                               log_level="warning"))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.02)
            base = f"http://127.0.0.1:{port}"
            token = h.token(Role.commander, regions=["440300"])
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                assert (await client.get("/dashboard/stream", params={"token": "nope"})).status_code == 401
                assert (await client.get("/dashboard/stream", params={"token": token, "region_code": "110000"})
                        ).status_code == 403
                async with client.stream("GET", "/dashboard/stream", params={"token": token}) as response:
                    assert response.status_code == 200
                    assert response.headers["content-type"].startswith("text/event-stream")
                    lines = response.aiter_lines()
                    assert (await anext(lines)).startswith("retry:")
                    # A Beijing event first (not ours: must not appear), then a Shenzhen one.
                    await h.publish(ev.CheckpointFever(checkpoint_id="bj", region_code="110105",
                                                       temperature_c=38.0, observed_at=datetime.now(UTC)))
                    await h.publish(ev.CheckpointFever(checkpoint_id="sz", region_code="440305",
                                                       temperature_c=38.5, observed_at=datetime.now(UTC)))
                    change = None
                    async with asyncio.timeout(30):
                        async for line in lines:
                            if line.startswith("data:") and '"metric"' in line:
                                change = json.loads(line[5:])
                                break
                    assert change["metric"] == "fever_alerts" and change["region_code"] == "440305"
                    assert change["delta"] == 1
                # Resuming after that change id gives nothing older (Last-Event-ID semantics).
                resumed = await client.get("/dashboard/stream", params={"token": h.token(Role.admin),
                                                                        "since": 0, "max_events": 2})
                metrics = [json.loads(l[5:])["region_code"] for l in resumed.text.splitlines()
                           if l.startswith("data:") and '"metric"' in l]
                assert sorted(metrics) == ["110105", "440305"]  # the admin sees both
        finally:
            server.should_exit = True
            await serving
