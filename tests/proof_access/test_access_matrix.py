"""Role × endpoint × region: every route of the four services, called by every role from two
sibling districts and their city, is either refused (401/403/404) or answers with records of
the caller's own region only. Records are recognised by markers (ids, person keys, ID numbers,
names, phones, region codes) the seeding made in each place."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from fangkong_common import clock
from fangkong_common.audit import PII_ROLES
from fangkong_common.auth import Role
from fangkong_common.identity import make_resident_id
from tests.proof_access.platform import A, B, C, P, Seeded, seeded_platform
from tests.test_tokens_everywhere import OPEN, routes

REFUSED = {401, 403, 404}
ROWS_REFUSED = "every row refused"  # an import answers 200 with its per-row report
# Not regional by design, so not a scope question: risk areas are national notices every command
# center records and sees; policies are the one rulebook.
PUBLIC_READS = {"/registry/risk-areas", "/quarantine/policies", "/registry/import-template.xlsx"}
# Who may see what: a district's callers only that district, the city's callers the city.
OUTSIDE = {A: (B, P, C), B: (A, P, C), P: (C,)}
ROLES = list(Role)


@dataclass
class Cell:
    role: str
    region: str
    method: str
    path: str
    variant: str
    status: int
    own: int = 0
    leaked: list[str] = field(default_factory=list)
    pii: list[str] = field(default_factory=list)  # raw ID numbers, phones, addresses in the answer


def principals(s: Seeded) -> list[tuple[str, Role, dict]]:
    out = []
    for region in (A, B, P):
        place = s.places[region]
        for role in ROLES:
            scope: dict = {"regions": [region], "sub": f"matrix-{role.value}-{region}"}
            if role is Role.grid_worker and region != P:
                scope["grids"] = [place.grid]
            if role is Role.site_staff:
                scope["sites"] = [place.ids.get("testing_site") or s.places[P].ids["site_id"]]
            if role is Role.lab:
                scope["sites"] = [place.ids.get("lab_id", "none")]
            out.append((region, role, scope))
    return out


def query_params(app, method: str, path: str) -> set[str]:
    # The routers included in the app show as wrappers (original_router), as routes() walks them.
    flat = [r for route in app.routes
            for r in [route, *(getattr(getattr(route, "original_router", None), "routes", None) or [])]]
    for route in flat:
        if isinstance(route, APIRoute) and route.path == path and method in route.methods:
            return {p.alias or p.name for p in route.dependant.query_params}
    return set()


def targets(s: Seeded, region: str, param: str) -> list[tuple[str, str]]:
    """Values for a path parameter: the caller's own record (when its place has one) and each
    record of the places outside its scope."""
    key = {"person_id": "person_id", "order_id": "order_id", "checkpoint_id": "checkpoint_id",
           "gathering_id": "gathering_id", "area_id": "area_id", "site_id": "site_id", "transfer_id": "transfer_id",
           "lab_id": "lab_id", "rectification_id": "rectification_id", "webhook_id": "webhook_id"}.get(param)
    if key is None:
        return [("unknown", "1")]
    out = []
    for place in (region, *OUTSIDE[region]):
        value = s.places[place].ids.get(key)
        if value:
            out.append((("own" if place == region else "other") + f":{place}", value))
    return out


def read_variants(s: Seeded, app, region: str, path: str) -> list[tuple[str, str, dict]]:
    """(label, url, query) for a GET: every path target, and the region/person filters pointed at
    the caller's own place and at each place outside its scope."""
    names = re.findall(r"\{([^}]+)\}", path)
    urls = [("", path)]
    for name in names:
        if name == "table":
            tables = ["kpis", "metrics", "series", "regions", "sites", "vaccination", "missing_units",
                      "rectifications", "unit_reports"]
            urls = [(f"{lbl} table={t}", url.replace("{table}", t)) for lbl, url in urls for t in tables]
        else:
            urls = [(f"{lbl} {name}={tl}", url.replace("{" + name + "}", value))
                    for lbl, url in urls for tl, value in targets(s, region, name)]
    params = query_params(app, "GET", path)
    queries: list[tuple[str, dict]] = []
    if "region_code" in params:
        queries += [(f"region_code={code}", {"region_code": code}) for code in (region, *OUTSIDE[region])]
        if path != "/registry/vaccination-progress":  # required there
            queries.append(("", {}))
    for name in ("person_id", "subject"):
        if name in params:
            queries += [(f"{name}=own", {name: s.places[region].ids.get("person_id", "0" * 64)})]
            queries += [(f"{name}={code}", {name: s.places[code].ids["person_id"]})
                        for code in OUTSIDE[region] if "person_id" in s.places[code].ids]
    if not queries:
        queries = [("", {})]
    if "format" in params:  # the spreadsheet too (exports, the daily report), for the caller's own region
        queries.append(("format=xlsx", {"format": "xlsx", **({"region_code": region} if "region_code" in params
                                                             else {})}))
    if path == "/dashboard/stream":  # a live feed: take what is there and close
        queries = [(lbl, {**q, "since": 0, "max_events": 1}) for lbl, q in queries]
    return [(f"{ul} {ql}".strip(), url, q) for ul, url in urls for ql, q in queries]


def markers_in(text: str, markers: set[str]) -> list[str]:
    return sorted(m for m in markers if m in text)


async def test_role_endpoint_region_matrix(tmp_path: Path, matrix_per_service: dict, proof) -> None:
    per_service = matrix_per_service
    proof.injected("every GET of 4 services × 8 roles × tokens of districts 440305/440306 and city 440300 "
                   "(filters and path ids pointed at the other district and another city); writes aimed at "
                   f"the other district's records ({'PostgreSQL' if per_service else 'SQLite'})")
    started = time.monotonic()
    async with seeded_platform(tmp_path, per_service=per_service) as s:
        seeded = time.monotonic()
        pii = set(s.pii)
        cells: list[Cell] = []
        odd: list[Cell] = []
        jobs = []
        for app in s.platform.apps.values():
            for method, path in routes(app):
                if method != "GET" or path in OPEN or path.endswith(("/healthz", "/readyz", "/clock")):
                    continue
                for region, role, scope in principals(s):
                    headers = s.headers(role, **scope)
                    jobs += [(region, role, path, label, url, query, headers)
                             for label, url, query in read_variants(s, app, region, path)]
        # A few at a time: the same cells, in a third of the time.
        gate = asyncio.Semaphore(8)

        async def call(url: str, query: dict, headers: dict) -> httpx.Response:
            async with gate:
                return await s.client.get(url, params=query, headers=headers)

        responses = await asyncio.gather(*(call(url, query, headers) for *_, url, query, headers in jobs))
        for (region, role, path, label, url, _query, _headers), response in zip(jobs, responses, strict=True):
            forbidden = set().union(*(s.places[p].markers for p in OUTSIDE[region]))
            own = s.places[region].markers
            cell = Cell(role.value, region, "GET", path, label, response.status_code)
            cells.append(cell)
            if response.status_code in REFUSED:
                continue
            if response.status_code != 200:
                odd.append(cell)
                continue
            text = response.text if response.headers.get("content-type", "").startswith(
                ("application/json", "text/")) else response.content.decode("latin-1")
            if "xlsx" in url or "spreadsheet" in response.headers.get("content-type", ""):
                text = _xlsx_text(response.content)
            cell.own = len(markers_in(text, own))
            cell.pii = markers_in(text, pii)
            if path not in PUBLIC_READS:
                cell.leaked = markers_in(text, forbidden)
        # Every unmasked answer to a role with the right is in the registry's audit: (actor, subject).
        unmasked = {(f"matrix-{c.role}-{c.region}", s.pii[value]) for c in cells for value in c.pii}
        audit = s.headers(Role.admin)
        audited = set()
        for actor in {a for a, _ in unmasked}:
            rows = (await s.client.get("/registry/audit", params={"actor": actor, "limit": 1000},
                                       headers=audit)).json()
            audited |= {(row["actor"], row["subject"]) for row in rows}
        sibling_grid = await _sibling_grid_reads(s)
        read = time.monotonic()
        writes = await _cross_region_writes(s)
        wrote = time.monotonic()
        # The records were there to leak: the city's commander sees both districts' people.
        city = await s.client.get("/registry/persons", headers=s.headers(Role.commander, regions=[P]))
        assert {s.places[A].persons[0], s.places[B].persons[0]} <= {p["id"] for p in city.json()["items"]}

    allowed = [c for c in cells if c.status == 200]
    masked_roles = {r.value for r in Role} - {r.value for r in PII_ROLES}
    shown_to_masked = [c for c in cells if c.pii and c.role in masked_roles]
    outside_registry = [c for c in cells if c.pii and not c.path.startswith("/registry/")]
    unaudited = unmasked - audited
    refused = [c for c in cells if c.status in REFUSED]
    leaks = [c for c in cells if c.leaked]
    grid_reads = [c for c in cells if c.role == "grid_worker" and c.region in (A, B)]
    grid_leaked = sum(len(c.leaked) for c in grid_reads)
    grid_own = sum(c.own for c in grid_reads)
    by_status = Counter(c.status for c in cells)
    write_refused = sum(1 for w in writes if w[-1] in REFUSED or w[-1] == ROWS_REFUSED)
    write_bad = [w for w in writes if not (w[-1] in REFUSED or w[-1] == ROWS_REFUSED)]
    proof.measured(f"{len(cells)} read cells: {len(allowed)} allowed and scoped, {len(refused)} refused "
                   f"({dict(sorted(by_status.items()))}), leaked records {sum(len(c.leaked) for c in cells)}; "
                   f"own-region records seen in allowed cells {sum(c.own for c in allowed)}")
    proof.measured(f"grid workers of 440305/440306: {len(grid_reads)} cells, {grid_own} own records, "
                   f"{grid_leaked} of the other region")
    proof.measured(f"raw ID numbers/phones/addresses: {sum(len(c.pii) for c in shown_to_masked)} shown to "
                   f"roles without the right ({len([c for c in allowed if c.role in masked_roles])} allowed cells); "
                   f"{len(unmasked)} (reader, person) unmasked reads by admin/commander/medical, {len(unaudited)} "
                   f"missing from the audit; {len(outside_registry)} answers outside the registry carry PII")
    proof.measured(f"{len(writes)} cross-region write cells, {write_refused} refused, "
                   f"{len(write_bad)} accepted")
    proof.measured(f"seeding {seeded - started:.1f} s, reads {read - seeded:.1f} s, writes {wrote - read:.1f} s")
    print(f"\nmatrix: cells={len(cells)} allowed={len(allowed)} refused={len(refused)} "
          f"leaked={sum(len(c.leaked) for c in cells)} grid_worker_other_region_records={grid_leaked} "
          f"writes={len(writes)} writes_refused={write_refused}")
    assert not odd, [(c.role, c.region, c.path, c.variant, c.status) for c in odd][:20]
    assert not leaks, [(c.role, c.region, c.path, c.variant, c.leaked[:3]) for c in leaks][:20]
    assert grid_leaked == 0
    assert not shown_to_masked, [(c.role, c.region, c.path, c.variant, c.pii[:2]) for c in shown_to_masked][:20]
    assert not unaudited and len(unmasked) >= 20, (len(unmasked), sorted(unaudited)[:10])
    assert not outside_registry, [(c.role, c.path, c.variant) for c in outside_registry][:10]
    assert not write_bad, write_bad[:20]
    # Not a vacuous matrix: many cells answered, and they carried the caller's own records.
    assert len(cells) > 1500 and len(allowed) > 400 and sum(c.own for c in allowed) > 500
    assert grid_own > 0
    grid_cells, grid_seen = sibling_grid
    proof.measured(f"a grid worker of another grid of 440305: {grid_cells} read cells, records of grid "
                   f"{s.places[A].grid}'s people seen: " + ", ".join(f"{k} {v}" for k, v in sorted(grid_seen.items()))
                   )
    assert not any(grid_seen.values()), grid_seen


async def _sibling_grid_reads(s: Seeded) -> tuple[int, dict[str, int]]:
    """Two grids of one district: a grid worker of the other grid reads every GET of 440305 and must
    not find the people of the seeded grid (their keys, ID numbers, names, phones, orders, transfers)."""
    place = s.places[A]
    people = set(place.persons) | set(place.pii) | {place.ids["order_id"], place.ids["transfer_id"]}
    people |= {m for m in place.markers if m.startswith(("南山returnee", "南山contact"))}
    headers = s.headers(Role.grid_worker, regions=[A], grids=[f"{place.grid}-b"], sub="matrix-grid-b")
    seen: Counter = Counter()
    cells = 0
    for name, app in s.platform.apps.items():
        seen[name] += 0
        for method, path in routes(app):
            if method != "GET" or path in OPEN or path.endswith(("/healthz", "/readyz", "/clock")):
                continue
            for _label, url, query in read_variants(s, app, A, path):
                response = await s.client.get(url, params=query, headers=headers)
                cells += 1
                assert response.status_code in REFUSED | {200}, (path, response.status_code, response.text[:200])
                if response.status_code == 200:
                    seen[name] += len(markers_in(response.text, people))
    return cells, dict(seen)


def _xlsx_text(content: bytes) -> str:
    import io

    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(content), read_only=True)
    return json.dumps([[str(v) for row in sheet.iter_rows(values_only=True) for v in row if v is not None]
                       for sheet in book.worksheets], ensure_ascii=False)


async def _cross_region_writes(s: Seeded) -> list[tuple]:
    """Every write that names a region or a record, by every role of district A, B and the city, aimed
    at a place outside the caller's scope: each must be refused."""
    now = datetime.now(UTC).isoformat()
    today = clock.today().isoformat()
    out = []
    for region, role, scope in principals(s):
        headers = s.headers(role, **scope)
        for other in OUTSIDE[region]:
            o = s.places[other]
            if "person_id" not in o.ids:  # the city's place has sites only
                continue
            code = other
            attempts = [
                ("POST", "/registry/persons", {"id_number": "110105199001010011", "name": "越权", "region_code": code,
                                               "grid": o.grid}),
                ("PATCH", f"/registry/persons/{o.ids['person_id']}", {"phone": "13700000000", "reason": "越权"}),
                ("POST", f"/registry/persons/{o.ids['person_id']}/travel",
                 {"origin_kind": "domestic", "origin_region_code": "310101", "arrival_date": today}),
                ("POST", "/registry/checkpoints", {"name": "越权卡口", "region_code": code}),
                ("POST", f"/registry/checkpoints/{o.ids['checkpoint_id']}/passes",
                 {"passes": [{"person_id": o.ids["person_id"], "temperature_c": 36.5, "passed_at": now}]}),
                ("POST", "/registry/contacts", {"person_id": o.persons[1], "source_person_id": o.ids["person_id"],
                                                "exposure_at": now, "setting": "household", "reported_by": "越权"}),
                ("POST", "/registry/contacts/batch", {"contacts": [{
                    "person_id": o.persons[1], "source_person_id": o.ids["person_id"], "exposure_at": now,
                    "setting": "school", "reported_by": "越权"}]}),
                ("POST", "/registry/vaccinations", {"person_id": o.ids["person_id"], "vaccine": "x", "dose_number": 2,
                                                    "vaccinated_on": today}),
                ("PUT", "/registry/vaccination-targets", {"region_code": code, "age_group": "18+",
                                                          "target_people": 1, "deadline": "2027-12-31"}),
                ("POST", "/registry/gatherings", {"kind": "wedding", "organiser": "越权", "place": "x",
                                                  "region_code": code, "held_on": today, "expected_attendees": 10}),
                ("POST", f"/registry/gatherings/{o.ids['gathering_id']}/decision", {"approve": True}),
                ("POST", f"/registry/risk-areas/{o.ids['area_id']}/lift", None),
                ("POST", f"/quarantine/orders/{o.ids['order_id']}/checkins", {"temperature_c": 36.6}),
                ("POST", "/quarantine/sites", {"name": "越权", "kind": "hotel", "region_code": code, "capacity": 5}),
                ("POST", "/quarantine/transfers", {"person_key": o.persons[1], "order_id": o.ids["order_id"],
                                                   "from_place": "x", "to_place": "y", "vehicle": "v", "escort": "e"}),
                ("POST", "/quarantine/transfers", {"person_key": o.persons[1], "region_code": code,
                                                   "from_place": "x", "to_place": "y", "vehicle": "v", "escort": "e"}),
                ("PATCH", f"/quarantine/transfers/{o.ids['transfer_id']}", {"status": "cancelled"}),
                ("POST", f"/quarantine/cases/{o.ids['person_id']}/classification", {"classification": "confirmed"}),
                ("POST", f"/quarantine/cases/{o.ids['person_id']}/discharge", None),
                ("POST", "/testing/sites", {"name": "越权", "region_code": code, "latitude": 1, "longitude": 1,
                                            "swabs_per_hour": 1}),
                ("POST", "/testing/labs", {"name": "越权", "region_code": code, "latitude": 1, "longitude": 1,
                                           "tubes_per_day": 1, "reagent_stock": 1}),
                ("PATCH", f"/testing/labs/{o.ids['lab_id']}", {"reagent_stock": 1}),
                ("POST", "/testing/tubes", {"tubes": [{"barcode": f"X-{region}-{role.value}-{code}", "ratio": 1,
                                                       "members": [o.persons[1]], "site_id": o.ids["testing_site"],
                                                       "collected_at": now}]}),
                ("POST", "/testing/results", {"results": [{"barcode": f"ACC-{code}-0", "result": "negative",
                                                           "lab_id": o.ids["lab_id"], "tested_at": now}]}),
                ("PUT", "/dashboard/vaccination-targets", {"region_code": code, "age_group": "18+", "target": 1,
                                                           "deadline": "2027-12-31"}),
                ("POST", "/dashboard/units", {"unit_id": f"x-{region}-{role.value}", "name": "越权",
                                              "region_code": code}),
                ("POST", "/dashboard/unit-reports", {"unit_id": o.ids["unit_id"], "date": today, "zero": True}),
                ("POST", f"/dashboard/unit-reports/missing/rectifications?region_code={code}", None),
                ("POST", "/dashboard/rectifications", {"region_code": code, "finding": "越权", "owner": "x",
                                                       "deadline": today}),
                ("PATCH", f"/dashboard/rectifications/{o.ids['rectification_id']}", {"status": "done"}),
                ("DELETE", f"/dashboard/webhooks/{o.ids['webhook_id']}", None),
            ]
            for method, url, body in attempts:
                response = await s.client.request(method, url, json=body, headers=headers)
                out.append((role.value, region, method, url.split("?")[0], other, response.status_code)
                           if response.status_code in REFUSED else
                           (role.value, region, method, url, other, response.text[:160], response.status_code))
            # A bulk import naming the other place: refused outright, or every row refused (nothing stored).
            csv = ("证件号码,姓名,现住地行政区划代码,网格,来源类型,来源国家或地区代码,抵达日期\n"
                   f"{make_resident_id(code, date(1999, 9, 9), 900)},越权导入,{code},{o.grid},境外,GB,{today}\n"
                   f"{o.pii_of('id_number')},越权导入,{code},{o.grid},境外,GB,{today}\n")
            response = await s.client.post("/registry/import", headers=headers,
                                           files={"file": ("import.csv", csv.encode(), "text/csv")})
            report = response.json() if response.status_code == 200 else {}
            if response.status_code in REFUSED:
                outcome = response.status_code
            elif report.get("stored") == 0 and report.get("rejected") == 2:
                outcome = ROWS_REFUSED
            else:
                outcome = f"{response.status_code} {response.text[:160]}"
            out.append((role.value, region, "POST", "/registry/import", other, outcome))
    return out


pytestmark = pytest.mark.proof("access")
