"""Formula injection in every export: what a user typed (a unit's name, a report's note and figure
names, a rectification's finding, owner and note) comes back in the dashboard's CSV and XLSX exports
and the daily report, and a spreadsheet must never run it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from dashboard.domain.rules import today_local
from openpyxl import load_workbook

from conftest import bearer

PREFIXES = ("=", "+", "-", "@", "\t", "\r")
PAYLOADS = [f'{p}HYPERLINK("http://evil.example","点我")' for p in PREFIXES] + [
    "=cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "+1 卡点未测温"]


def export_tables(app) -> list[str]:
    """Every table GET /dashboard/exports/{table} offers, read from the service's own schema (a new
    export is covered without touching this test)."""
    [parameter] = [p for p in app.openapi()["paths"]["/dashboard/exports/{table}"]["get"]["parameters"]
                   if p["name"] == "table"]
    return parameter["schema"]["enum"]


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _dangerous(text: str) -> bool:
    """A cell a spreadsheet would evaluate: starts with a formula character and is not a plain number."""
    return text.startswith(PREFIXES) and not _is_number(text)


@pytest.mark.proof("bad input")
async def test_every_export_neutralises_formulas(dashboard, proof) -> None:
    h = dashboard
    proof.injected(f"{len(PAYLOADS)} formula payloads (cells starting =, +, -, @, tab, CR; HYPERLINK, DDE cmd) as "
                   "unit names, report notes and figure names, rectification findings, owners, notes")
    sz = bearer(h.app, "commander", ["440300"])
    day = today_local()
    for i, payload in enumerate(PAYLOADS):
        unit = f"u{i}"
        assert (await h.client.post("/dashboard/units", json={"unit_id": unit, "name": payload,
                                                              "region_code": "440305"}, headers=sz)).status_code == 201
        if i % 2:  # half of them report (their note and figures are exported), half are missing
            filed = await h.client.post("/dashboard/unit-reports", headers=sz, json={
                "unit_id": unit, "date": day.isoformat(), "zero": False, "figures": {payload[:60]: 1},
                "note": payload})
            assert filed.status_code == 201, filed.text
        created = await h.client.post("/dashboard/rectifications", headers=sz, json={
            "region_code": "440305", "unit_name": payload, "finding": payload, "owner": payload,
            "deadline": (day + timedelta(days=3)).isoformat(), "note": payload})
        assert created.status_code == 201, created.text

    cells = dangerous = found = 0
    seen: set[str] = set()
    tables = export_tables(h.app)
    assert {"rectifications", "unit_reports", "missing_units"} <= set(tables)
    for table in tables:
        for fmt in ("csv", "xlsx"):
            response = await h.client.get(f"/dashboard/exports/{table}", params={"format": fmt}, headers=sz)
            assert response.status_code == 200, (table, fmt, response.text[:200])
            if fmt == "csv":
                values = [v for r in csv.reader(io.StringIO(response.content.decode("utf-8-sig"))) for v in r]
            else:
                sheet = load_workbook(io.BytesIO(response.content)).active
                xcells = [c for r in sheet.iter_rows() for c in r if c.value is not None]
                assert not [c.coordinate for c in xcells if c.data_type == "f"], (table, "formula cells")
                values = [str(c.value) for c in xcells if isinstance(c.value, str)]
            for value in values:
                cells += 1
                if _dangerous(value):
                    dangerous += 1
                for payload in PAYLOADS:
                    if payload in value and value.startswith("'"):
                        seen.add(payload)
                        found += 1
    report = await h.client.get("/dashboard/reports/daily", params={"format": "xlsx"}, headers=sz)
    sheet = load_workbook(io.BytesIO(report.content)).active
    assert not [c.coordinate for r in sheet.iter_rows() for c in r if c.data_type == "f"]
    assert dangerous == 0
    assert seen == set(PAYLOADS), set(PAYLOADS) - seen  # every payload did reach an export, quoted
    proof.measured(f"{len(tables)} tables × CSV+XLSX + daily report: {cells:,} cells read, {found} hostile "
                   f"cells each exported with a leading quote, {dangerous} evaluable, 0 formula cells in XLSX")
