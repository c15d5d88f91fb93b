"""The public contract on both databases: KPIs, metrics, drill-down, scoping, reports, exports,
unit reports, rectifications, login."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook

from fangkong_common.auth import Role
from fangkong_common.testing import eventually, running

from dashboard.config import Settings
from dashboard.domain.rules import today_local
from dashboard.main import create_app

from outbreak_events import DAY, outbreak, pk

SZ = "440300"


async def loaded(h) -> None:
    await h.bus.publish(outbreak())
    headers = h.headers(Role.commander, regions=[SZ])

    async def done():
        body = (await h.client.get("/dashboard/kpis", params={"date": DAY.isoformat()}, headers=headers)).json()
        got = {k["name"]: (k["numerator"], k["denominator"]) for k in body["kpis"]}
        assert got == {"tested": (4, 4), "isolated": (1, 2), "treated": (1, 1), "managed": (2, 5)}, got
        assert body["headline"]["tube_backlog"] == 1
        return True

    await eventually(done, timeout=60)


@pytest.fixture
async def h(database_url: str):
    async with running(create_app(Settings(database_url=database_url, bus_url=f"memory://api-{id(database_url)}"))) \
            as harness:
        yield harness


async def test_kpis_metrics_and_drilldown_are_scoped_and_carry_no_person(h) -> None:
    await loaded(h)
    sz = h.headers(Role.commander, regions=[SZ])
    kpis = (await h.client.get("/dashboard/kpis", params={"date": DAY.isoformat()}, headers=sz)).json()
    assert kpis["region_code"] == SZ
    tested = kpis["kpis"][0]
    assert tested["label"] == "应检尽检" and tested["ratio"] == 1.0
    managed = kpis["kpis"][3]
    assert managed["ratio"] == 0.4 and managed["numerator_label"] == "返回人员纳入管理"
    en = (await h.client.get("/dashboard/kpis", params={"date": DAY.isoformat(), "lang": "en"}, headers=sz)).json()
    assert en["kpis"][0]["label"] == "tested"
    # A county under the city: allowed. Another city, the province above, Beijing: 403.
    futian = (await h.client.get("/dashboard/kpis", params={"region_code": "440304", "date": DAY.isoformat()},
                                 headers=sz)).json()
    assert {k["name"]: k["denominator"] for k in futian["kpis"]}["isolated"] == 1
    for outside in ("440100", "440000", "110105"):
        r = await h.client.get("/dashboard/kpis", params={"region_code": outside}, headers=sz)
        assert r.status_code == 403, outside
    assert (await h.client.get("/dashboard/kpis")).status_code == 401
    assert (await h.client.get("/dashboard/kpis", headers=h.headers(Role.lab, regions=[SZ]))).status_code == 403
    assert (await h.client.get("/dashboard/kpis", params={"region_code": "44030"}, headers=sz)).status_code == 422
    # The token may also come as ?token= (EventSource, download links).
    assert (await h.client.get("/dashboard/kpis", params={"token": h.token(Role.viewer, regions=[SZ])})
            ).status_code == 200

    series = (await h.client.get("/dashboard/metrics", params={
        "from": (DAY - timedelta(days=2)).isoformat(), "to": (DAY + timedelta(days=1)).isoformat(),
        "names": "positives,tube_backlog,contacts"}, headers=sz)).json()["series"]
    by_name = {s["name"]: s for s in series}
    assert [p["value"] for p in by_name["positives"]["points"]] == [0, 0, 1, 0]  # a flow: per day
    assert [p["value"] for p in by_name["tube_backlog"]["points"]] == [0, 0, 1, 1]  # a stock: its level
    assert {d["dimension"]: d["value"] for d in by_name["contacts"]["by_dimension"]} == {"1": 2, "2": 1}
    bad = await h.client.get("/dashboard/metrics", params={"names": "positives,names_of_people"}, headers=sz)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "names"]

    province = h.headers(Role.commander, regions=["440000"])
    children = (await h.client.get("/dashboard/regions", params={"date": DAY.isoformat()}, headers=province)).json()
    codes = {c["region_code"]: c for c in children["children"]}
    assert set(codes) == {"440100", "440300"}
    assert codes["440300"]["returnees"] == 6 and codes["440100"]["returnees"] == 1
    counties = (await h.client.get("/dashboard/regions", params={"region_code": SZ, "date": DAY.isoformat()},
                                   headers=province)).json()["children"]
    assert {c["region_code"] for c in counties} == {"440304", "440305"}
    admin = h.headers(Role.admin)
    country = (await h.client.get("/dashboard/regions", params={"date": DAY.isoformat()}, headers=admin)).json()
    assert {c["region_code"] for c in country["children"]} == {"110000", "440000"}

    sites = (await h.client.get("/dashboard/sites", headers=sz)).json()["sites"]
    assert sites == [{"site_id": "hotel-1", "region_code": "440304", "site_kind": "hotel", "beds_total": 100,
                      "beds_free": 8, "occupied": 92, "occupancy": 0.92, "as_of": sites[0]["as_of"]}]

    # No person anywhere on the dashboard: no person key in any answer.
    report = await h.client.get("/dashboard/reports/daily", params={"date": DAY.isoformat()}, headers=sz)
    for text in (kpis.__repr__(), str(series), str(children), report.text):
        assert pk(10) not in text and pk(0) not in text


async def test_vaccination_against_targets_by_age_group(h) -> None:
    await loaded(h)
    sz = h.headers(Role.commander, regions=[SZ])
    for region, target in (("440305", 4), ("440304", 6)):
        r = await h.client.put("/dashboard/vaccination-targets", json={
            "region_code": region, "age_group": "12-14", "target": target,
            "deadline": (DAY - timedelta(days=1)).isoformat()}, headers=sz)
        assert r.status_code == 200, r.text
    assert (await h.client.put("/dashboard/vaccination-targets", json={
        "region_code": "440106", "age_group": "12-14", "target": 1, "deadline": DAY.isoformat()},
        headers=sz)).status_code == 403
    assert (await h.client.put("/dashboard/vaccination-targets", json={
        "region_code": "440305", "age_group": "60+", "target": 1, "deadline": DAY.isoformat()},
        headers=sz)).status_code == 422
    body = (await h.client.get("/dashboard/vaccination", params={"date": DAY.isoformat()}, headers=sz)).json()
    groups = {g["age_group"]: g for g in body["age_groups"]}
    assert groups["12-14"]["people"] == 1 and groups["12-14"]["target"] == 10 and groups["12-14"]["ratio"] == 0.1
    assert groups["12-14"]["overdue"] is True and groups["12-14"]["label"] == "12-14岁"
    assert groups["18+"]["people"] == 0 and groups["18+"]["doses"] == 1 and groups["18+"]["ratio"] is None


async def test_daily_report_json_xlsx_pdf(h) -> None:
    await loaded(h)
    sz = h.headers(Role.commander, regions=[SZ])
    params = {"date": DAY.isoformat()}
    report = (await h.client.get("/dashboard/reports/daily", params=params, headers=sz)).json()
    assert report["title"] == "疫情防控日报" and report["region_code"] == SZ
    cases = next(s for s in report["sections"] if s["section"] == "cases")
    positives = next(r for r in cases["rows"] if r["metric"] == "positives")
    assert positives["label"] == "阳性人员" and positives["today"] == 1 and positives["to_date"] == 1

    xlsx = await h.client.get("/dashboard/reports/daily", params={**params, "format": "xlsx"}, headers=sz)
    assert xlsx.status_code == 200 and xlsx.headers["content-type"].startswith("application/vnd.openxml")
    ws = load_workbook(io.BytesIO(xlsx.content)).active
    rows = [[c.value for c in row] for row in ws.iter_rows()]
    assert rows[0][0] == "疫情防控日报"
    assert rows[1][:4] == ["地区", SZ, "日期", DAY.isoformat()]
    kpi_rows = {r[0]: r[1:4] for r in rows if r and r[0] in ("应检尽检", "应隔尽隔", "应救尽救", "应管尽管")}
    assert kpi_rows == {"应检尽检": [4, 4, "100.0%"], "应隔尽隔": [1, 2, "50.0%"], "应救尽救": [1, 1, "100.0%"],
                        "应管尽管": [2, 5, "40.0%"]}
    assert ["阳性人员", 1, 1] in [r[:3] for r in rows]

    en = await h.client.get("/dashboard/reports/daily", params={**params, "format": "xlsx", "lang": "en"},
                            headers=sz)
    en_rows = [[c.value for c in row] for row in load_workbook(io.BytesIO(en.content)).active.iter_rows()]
    assert en_rows[0][0] == "Epidemic prevention daily report"
    assert ["positive people", 1, 1] in [r[:3] for r in en_rows]

    pdf = await h.client.get("/dashboard/reports/daily", params={**params, "format": "pdf"}, headers=sz)
    assert pdf.status_code == 200, pdf.text
    assert pdf.content.startswith(b"%PDF")
    # The CJK font travels inside the file (a TrueType subset), so any reader shows the Chinese.
    assert b"/FontFile2" in pdf.content
    assert b"WenQuanYi" in pdf.content or b"wqy" in pdf.content.lower()


async def test_pdf_without_a_cjk_font_is_a_clear_503(database_url: str, tmp_path) -> None:
    settings = Settings(database_url=database_url, bus_url="memory://nofont", cjk_font_paths=[tmp_path / "none.ttc"])
    async with running(create_app(settings)) as h:
        r = await h.client.get("/dashboard/reports/daily", params={"format": "pdf"},
                               headers=h.headers(Role.commander, regions=[SZ]))
        assert r.status_code == 503 and "fonts-wqy-microhei" in r.json()["detail"]


async def test_unit_reports_zero_reports_and_missing_units(h) -> None:
    sz = h.headers(Role.commander, regions=[SZ])
    for unit_id, region in (("nanshan-st-1", "440305"), ("nanshan-st-2", "440305"), ("futian-v-1", "440304"),
                            ("tianhe-st-1", "440106")):
        r = await h.client.post("/dashboard/units", json={"unit_id": unit_id, "name": f"单位 {unit_id}",
                                                          "region_code": region},
                                headers=h.headers(Role.commander, regions=["440000"]))
        assert r.status_code == 201, r.text
    assert (await h.client.post("/dashboard/units", json={"unit_id": "x", "name": "x", "region_code": "440106"},
                                headers=sz)).status_code == 403
    yesterday = today_local() - timedelta(days=1)
    # The units existed well before yesterday's cut-off (registered "now" they would not owe it).
    from sqlalchemy import update
    from dashboard.models import Unit
    async with h.session() as session, session.begin():
        await session.execute(update(Unit).values(created_at=datetime.now(UTC) - timedelta(days=3)))
    assert (await h.client.post("/dashboard/units", json={"unit_id": "nanshan-new", "name": "新设单位",
                                                          "region_code": "440305"}, headers=sz)).status_code == 201
    grid = h.headers(Role.grid_worker, regions=["440305"])
    zero = await h.client.post("/dashboard/unit-reports", json={"unit_id": "nanshan-st-1",
                                                                "date": yesterday.isoformat(), "zero": True},
                               headers=grid)
    assert zero.status_code == 201, zero.text
    assert zero.json()["late"] is True  # filed after yesterday's cut-off
    bad = await h.client.post("/dashboard/unit-reports", json={"unit_id": "nanshan-st-2", "date": yesterday.isoformat(),
                                                               "zero": True, "figures": {"fever": 2}}, headers=grid)
    assert bad.status_code == 422
    outside = await h.client.post("/dashboard/unit-reports", json={"unit_id": "futian-v-1",
                                                                   "date": yesterday.isoformat(), "zero": True},
                                  headers=grid)
    assert outside.status_code == 403
    future = await h.client.post("/dashboard/unit-reports", json={
        "unit_id": "nanshan-st-2", "date": (today_local() + timedelta(days=1)).isoformat(), "zero": True},
        headers=grid)
    assert future.status_code == 422 and future.json()["detail"][0]["loc"] == ["body", "date"]
    filed = await h.client.post("/dashboard/unit-reports", json={"unit_id": "nanshan-st-2",
                                                                 "date": yesterday.isoformat(), "zero": False,
                                                                 "figures": {"fever": 2}}, headers=grid)
    assert filed.status_code == 201
    missing = (await h.client.get("/dashboard/unit-reports/missing", params={"date": yesterday.isoformat()},
                                  headers=sz)).json()
    # Guangzhou's unit is not Shenzhen's; the unit registered today did not owe yesterday's report.
    assert [u["unit_id"] for u in missing["missing"]] == ["futian-v-1"]
    assert {u["unit_id"] for u in missing["late"]} == {"nanshan-st-1", "nanshan-st-2"}
    assert missing["registered"] == 3 and missing["zero_reports"] == 1
    # The missed report becomes a finding in the ledger, once.
    for _ in range(2):
        r = await h.client.post("/dashboard/unit-reports/missing/rectifications",
                                params={"date": yesterday.isoformat()}, headers=sz)
        assert r.status_code == 201
    ledger = (await h.client.get("/dashboard/rectifications", headers=sz)).json()["rectifications"]
    assert [(r["unit_id"], r["status"]) for r in ledger] == [("futian-v-1", "open")]


async def test_rectification_ledger_and_exports_neutralise_formulas(h) -> None:
    sz = h.headers(Role.commander, regions=[SZ])
    past = today_local() - timedelta(days=3)
    created = await h.client.post("/dashboard/rectifications", json={
        "region_code": "440305", "unit_name": "=HYPERLINK(\"http://evil\",\"点我\")", "finding": "+1 卡点未测温",
        "owner": "@张三", "deadline": past.isoformat()}, headers=sz)
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["overdue"] is True and item["status"] == "open"
    later = await h.client.post("/dashboard/rectifications", json={
        "region_code": "440304", "unit_name": "福田某小区", "finding": "隔离点登记不全", "owner": "李四",
        "deadline": (today_local() + timedelta(days=5)).isoformat()}, headers=sz)
    assert later.json()["overdue"] is False
    assert (await h.client.post("/dashboard/rectifications", json={
        "region_code": "440106", "unit_name": "x", "finding": "x", "owner": "x", "deadline": past.isoformat()},
        headers=sz)).status_code == 403
    assert (await h.client.post("/dashboard/rectifications", json={
        "region_code": "440305", "finding": "x", "owner": "x", "deadline": past.isoformat()},
        headers=sz)).status_code == 422
    assert (await h.client.post("/dashboard/rectifications", json={
        "region_code": "440305", "unit_name": "x", "finding": "x", "owner": "x", "deadline": past.isoformat()},
        headers=h.headers(Role.viewer, regions=[SZ]))).status_code == 403
    overdue = (await h.client.get("/dashboard/rectifications", params={"overdue": "true"}, headers=sz)).json()
    assert [r["id"] for r in overdue["rectifications"]] == [item["id"]]
    done = await h.client.patch(f"/dashboard/rectifications/{item['id']}", json={"status": "done", "note": "已整改"},
                                headers=sz)
    assert done.status_code == 200 and done.json()["overdue"] is False and done.json()["closed_at"]
    assert (await h.client.patch(f"/dashboard/rectifications/{item['id']}", json={"status": "closed"},
                                 headers=sz)).status_code == 422
    other_city = h.headers(Role.commander, regions=["440100"])
    assert (await h.client.patch(f"/dashboard/rectifications/{item['id']}", json={"status": "open"},
                                 headers=other_city)).status_code == 404
    assert (await h.client.get("/dashboard/rectifications", headers=other_city)).json()["rectifications"] == []

    csv_body = await h.client.get("/dashboard/exports/rectifications", params={"format": "csv"}, headers=sz)
    assert csv_body.status_code == 200 and csv_body.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(csv_body.content.decode("utf-8-sig"))))
    first = rows[1]
    assert first[2].startswith("'=HYPERLINK") and first[3] == "'+1 卡点未测温" and first[4] == "'@张三"
    xlsx = await h.client.get("/dashboard/exports/rectifications", params={"format": "xlsx"}, headers=sz)
    ws = load_workbook(io.BytesIO(xlsx.content)).active
    assert ws["C2"].value.startswith("'=HYPERLINK") and ws["C2"].data_type == "s"
    for table in ("kpis", "metrics", "series", "regions", "sites", "vaccination", "missing_units", "unit_reports"):
        for fmt in ("csv", "xlsx"):
            r = await h.client.get(f"/dashboard/exports/{table}", params={"format": fmt}, headers=sz)
            assert r.status_code == 200, (table, fmt)
    series = await h.client.get("/dashboard/exports/series", params={"format": "csv"}, headers=sz)
    series_rows = list(csv.reader(io.StringIO(series.content.decode("utf-8-sig"))))
    assert series_rows[0][:3] == ["metric", "label", "kind"] and len(series_rows[0]) == 3 + 14
    assert (await h.client.get("/dashboard/exports/people", headers=sz)).status_code == 422


async def test_demo_login_only_outside_production(h, database_url: str) -> None:
    r = await h.client.post("/dashboard/login", json={"region_code": SZ})
    assert r.status_code == 200
    token = r.json()["token"]
    assert (await h.client.get("/dashboard/kpis", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert (await h.client.get("/dashboard/kpis", params={"region_code": "110000"},
                               headers={"Authorization": f"Bearer {token}"})).status_code == 403
    page = await h.client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/dashboard/static/echarts.min.js" in page.text and "cdn" not in page.text.lower()
    for asset in ("echarts.min.js", "app.js", "app.css"):
        assert (await h.client.get(f"/dashboard/static/{asset}")).status_code == 200, asset
    script = (await h.client.get("/dashboard/static/app.js")).text
    assert "/dashboard/stream?token=" in script and "http://" not in script and "https://" not in script
    assert (await h.client.get("/dashboard/")).status_code == 200
    prod = Settings(database_url=database_url, bus_url="memory://prod", env="production",
                    jwt_secret="a-real-production-secret-of-32-bytes+",
                    person_key_secret="another-real-secret-of-at-least-32-bytes")
    async with running(create_app(prod)) as p:
        assert (await p.client.post("/dashboard/login", json={"region_code": SZ})).status_code == 404
        hook = {"event_types": ["test.positive"], "secret": "a-long-enough-secret"}
        integration = p.headers(Role.integration, regions=[SZ])
        plain = await p.client.post("/dashboard/webhooks", json={**hook, "url": "http://cc.example/h"},
                                    headers=integration)
        assert plain.status_code == 422 and plain.json()["detail"][0]["loc"] == ["body", "url"]
        assert (await p.client.post("/dashboard/webhooks", json={**hook, "url": "https://cc.example/h"},
                                    headers=integration)).status_code == 201


def test_every_screen_label_exists_in_both_languages() -> None:
    """No browser on this machine (no Debian chromium): at least the page's labels and both
    dictionaries must agree, so the language toggle never shows a bare key."""
    import re

    from dashboard.api import STATIC

    html = (STATIC / "index.html").read_text()
    script = (STATIC / "app.js").read_text()
    zh = set(re.findall(r"(\w+): \"", script[script.index("zh: {"):script.index("en: {")]))
    en = set(re.findall(r"(\w+): \"", script[script.index("en: {"):script.index("const state")]))
    used = set(re.findall(r'data-i18n="(\w+)"', html)) | set(re.findall(r'\bt\("(\w+)"\)', script))
    assert used and used <= zh and used <= en, (used - zh, used - en)
    assert zh == en
