"""The capacity plan and forecast endpoints, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from fangkong_common.auth import Role

NOW = datetime.now(UTC).replace(microsecond=0)


async def _tubes(svc, kit, site, n, ratio=10, people=10, hours_ago=2, tag=None):
    tag = tag or uuid.uuid4().hex[:6]
    tubes = [{"barcode": f"{tag}-{i}", "ratio": ratio,
              "members": [f"{tag}{i:05d}{j:02d}X" for j in range(people)],
              "site_id": site, "collected_at": (NOW - timedelta(hours=hours_ago)).isoformat()} for i in range(n)]
    r = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json={"tubes": tubes})
    assert r.status_code == 201, r.text
    return [t["barcode"] for t in tubes]


async def test_plan_routes_every_tube_or_reports_backlog_and_respects_capacity(svc, kit):
    near = await kit.make_site(svc, swabs_per_hour=1000)
    far = await kit.make_site(svc, name="远郊采样点", latitude=22.70, longitude=114.25, swabs_per_hour=500)
    small = await kit.make_lab(svc, name="小实验室", tubes_per_day=480, reagent_stock=100_000)
    big = await kit.make_lab(svc, name="大实验室", latitude=22.60, longitude=114.05, tubes_per_day=2400,
                             reagent_stock=1_000, travel_minutes={far: 40})
    await _tubes(svc, kit, near, 300)
    r = await svc.client.get("/testing/capacity/plan", headers=kit.commander(svc), params={"horizon_hours": 48})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["pending_tubes"] == 300 and plan["planned_tubes"] > 0
    routed = sum(x["tubes"] for x in plan["routes"])
    site_backlog = sum(x["backlog_tubes"] for x in plan["sites"])
    assert routed + site_backlog == plan["total_tubes"] == plan["pending_tubes"] + plan["planned_tubes"]
    assert plan["resulted_tubes"] + plan["backlog_tubes"] == plan["total_tubes"]
    labs = {x["lab_id"]: x for x in plan["labs"]}
    assert labs[big]["processed_tubes"] <= 1_000  # its reagent
    assert labs[small]["processed_tubes"] <= labs[small]["capacity_tubes"] == 960
    assert len(labs[small]["backlog_by_hour"]) == 48
    # collection (1,500 swabs/h → 150 tubes/h for 12 h a day) outruns 2,880 tubes/day: backlog and a low 24-h share
    assert plan["backlog_tubes"] > 0
    assert 0 <= plan["share_resulted_within_24h"] < 1
    assert plan["share_resulted_within_12h"] <= plan["share_resulted_within_24h"]
    assert all(b["expected_result_at"] is None or b["expected_result_at"] >= b["arrives_at"] for b in plan["batches"])
    assert labs[big]["reagent_days_at_planned_rate"] is not None and labs[big]["reagent_days_at_planned_rate"] < 3
    # a viewer elsewhere sees an empty plan; a lab may not ask
    other = (await svc.client.get("/testing/capacity/plan", headers=kit.commander(svc, "440100"))).json()
    assert other["total_tubes"] == 0 and other["labs"] == []
    assert (await svc.client.get("/testing/capacity/plan", headers=kit.lab_staff(svc, small))).status_code == 403


async def test_forecast_advises_and_alerts_once_per_condition(svc, kit, events):
    site = await kit.make_site(svc, swabs_per_hour=5000, opens_at="08:00", closes_at="12:00")
    lab = await kit.make_lab(svc, tubes_per_day=1000, reagent_stock=2000)
    lab_id = lab
    # observed positivity: 2 positive pools of 20 tubes of 5 (p ≈ 2.2%)
    barcodes = await _tubes(svc, kit, site, 20, ratio=5, people=5, hours_ago=30)
    results = [{"barcode": b, "result": "positive" if i < 2 else "negative", "lab_id": lab,
                "tested_at": (NOW - timedelta(hours=20)).isoformat()} for i, b in enumerate(barcodes)]
    r = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab), json={"results": results})
    assert r.status_code == 200, r.text

    r = await svc.client.get("/testing/capacity/forecast", headers=kit.commander(svc), params={"days": 3})
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["observed"]["prevalence"] is not None and 0.01 < f["observed"]["prevalence"] < 0.04
    kinds = {a["kind"] for a in f["advice"]}
    # 20,000 swabs a day in 10-in-1 tubes against 1,000 tubes a day: ask another region for help
    assert "cross_region_support" in kinds
    support = next(a for a in f["advice"] if a["kind"] == "cross_region_support")
    assert support["tubes_per_day"] > 500
    assert "跨区域支援" in support["message"]
    assert len(f["daily"]) == 3 and f["daily"][-1]["backlog_end_of_day"] > 0
    # ~4,000 tubes left after 3 days: under the 10,000-tube backlog threshold, but the 24-h share and the
    # reagent (2,000 tests at 1,000 a day) cross theirs
    assert sorted(f["alerts_emitted"]) == sorted([f"turnaround:{kit.REGION}", f"reagent_low:{lab_id}"])

    await kit.eventually(lambda: _nonempty(events.of("testing.capacity_alert")))
    await svc.flush_outbox()
    first = len(events.of("testing.capacity_alert"))
    assert first == len(f["alerts_emitted"])
    reagent = [e for e in events.of("testing.capacity_alert") if e.payload["kind"] == "reagent_low"]
    assert reagent[0].payload["lab_id"] == lab_id

    # the same conditions again: no new alert
    again = (await svc.client.get("/testing/capacity/forecast", headers=kit.commander(svc))).json()
    assert again["alerts_emitted"] == []
    await svc.flush_outbox()
    import asyncio
    await asyncio.sleep(0.2)
    assert len(events.of("testing.capacity_alert")) == first


async def _nonempty(value):
    return bool(value)


async def test_forecast_suggests_a_higher_pool_ratio_from_observed_positivity(svc, kit):
    site = await kit.make_site(svc, swabs_per_hour=100, default_ratio=5)
    lab = await kit.make_lab(svc, tubes_per_day=50_000, reagent_stock=1_000_000)
    # 1 positive in 400 tubes of 5: p ≈ 0.05% → 20-in-1 is best
    barcodes = await _tubes(svc, kit, site, 400, ratio=5, people=5, hours_ago=30)
    results = [{"barcode": b, "result": "positive" if i == 0 else "negative", "lab_id": lab,
                "tested_at": (NOW - timedelta(hours=20)).isoformat()} for i, b in enumerate(barcodes)]
    assert (await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab),
                                  json={"results": results})).status_code == 200
    f = (await svc.client.get("/testing/capacity/forecast", headers=kit.commander(svc))).json()
    raise_ratio = next(a for a in f["advice"] if a["kind"] == "raise_pool_ratio")
    assert raise_ratio["from_ratio"] == 5 and raise_ratio["to_ratio"] == 20
    assert raise_ratio["tubes_per_day_after"] < raise_ratio["tubes_per_day_now"]
    assert set(raise_ratio["tests_per_person"]) == {"1", "5", "10", "20"}
    assert f["alerts_emitted"] == []  # plenty of capacity and reagent
    assert (await svc.client.get("/testing/capacity/forecast",
                                 headers=svc.headers(Role.site_staff, regions=[kit.DISTRICT]))).status_code == 403


async def test_a_cleared_reagent_alert_fires_again_when_stock_runs_low_again(svc, kit, events):
    await kit.make_site(svc, swabs_per_hour=1000)
    lab = await kit.make_lab(svc, tubes_per_day=2000, reagent_stock=1000)
    get = lambda: svc.client.get("/testing/capacity/forecast", headers=kit.commander(svc))  # noqa: E731
    assert f"reagent_low:{lab}" in (await get()).json()["alerts_emitted"]
    assert (await get()).json()["alerts_emitted"] == []
    # the lab receives reagent (it reports for itself; another lab may not)
    assert (await svc.client.patch(f"/testing/labs/{lab}", headers=kit.lab_staff(svc, "other"),
                                   json={"reagent_stock": 1})).status_code in (403, 404)
    r = await svc.client.patch(f"/testing/labs/{lab}", headers=kit.lab_staff(svc, lab),
                               json={"reagent_stock": 100_000})
    assert r.status_code == 200 and r.json()["reagent_stock"] == 100_000
    assert f"reagent_low:{lab}" not in (await get()).json()["alerts_emitted"]
    assert (await svc.client.patch(f"/testing/labs/{lab}", headers=kit.commander(svc),
                                   json={"reagent_stock": 500})).status_code == 200
    assert f"reagent_low:{lab}" in (await get()).json()["alerts_emitted"]
    await svc.flush_outbox()

    async def two_alerts():
        mine = [e for e in events.of("testing.capacity_alert") if e.payload.get("lab_id") == lab]
        assert len(mine) == 2, [e.payload for e in events.envelopes]
        return True

    await kit.eventually(two_alerts, timeout=5)


async def test_the_scheduled_forecast_raises_alerts_without_anyone_asking(database_url, kit):
    from fangkong_common.testing import eventually, running
    from testing.config import Settings
    from testing.main import create_app

    settings = Settings(database_url=database_url, bus_url=f"memory://j-{uuid.uuid4().hex}",
                        outbox_poll_seconds=0.05, forecast_interval_seconds=0.3)
    async with running(create_app(settings)) as h:
        got = []

        async def handle(envelopes):
            got.extend(envelopes)

        sub = await h.bus.subscribe(["testing.capacity_alert"], "job-observer", handle)
        await kit.make_site(h, swabs_per_hour=1000)
        lab = await kit.make_lab(h, tubes_per_day=2000, reagent_stock=100)
        await eventually(lambda: _nonempty([e for e in got if e.payload.get("lab_id") == lab]))
        await asyncio.sleep(1.0)  # more rounds: the same condition does not alert again
        assert len({e.id for e in got if e.payload.get("lab_id") == lab}) == 1
        assert {e.payload["region_code"] for e in got} <= {kit.DISTRICT, kit.REGION}
        await sub.stop()
