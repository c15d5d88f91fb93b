"""Registry throughput on real PostgreSQL, each figure beside a baseline measured in the same run.

    .venv/bin/python bench/registry_throughput.py [--import-rows 5000] [--passes 20000] [--travel 1000000]
                                       [--database-url postgresql://...] [--json out.json]

  import   POST /registry/import of an XLSX of N returnees (parse, check, person + travel
           record + person.returned in the outbox) — baseline: asyncpg COPY of the same
           person rows into a scratch table.
  passes   POST /registry/checkpoints/{id}/passes in batches of 1,000 (half known people,
           half unknown ones registered on the spot, 2% fevers) — baseline: COPY of the rows.
  risk     POST /registry/risk-areas over --travel generated travel records (seeded with
           COPY, not timed): every person whose stay touches the area flagged and a
           person.risk_flagged event written — goal under 5 s for 1M records; baseline:
           the bare SELECT count of the matching people with the same predicate.

The app runs in-process (ASGI, no network) on the in-process bus: what is measured is
the registry's own path through HTTP handling, validation, SQL and the outbox.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import random
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import asyncpg  # noqa: E402
from openpyxl import Workbook  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

import _components  # noqa: E402
from fangkong_common.auth import Role, region_code_range  # noqa: E402
from fangkong_common.testing import running  # noqa: E402
from registry.config import Settings  # noqa: E402
from registry.domain.idcard import make_resident_id  # noqa: E402
from registry.domain.rules import enclosing_codes  # noqa: E402
from registry.imports import COLUMNS  # noqa: E402
from registry.main import create_app  # noqa: E402

HOME = "440305"
COUNTIES = [f"{p}{c:02d}{d:02d}" for p in (32, 33, 35, 36, 41, 42, 43, 51, 61, 64) for c in (1, 2) for d in
            (2, 3, 4, 5, 6)]  # 100 county codes the generated stays spread over


def xlsx(rows: int, seed: int) -> bytes:
    rng = random.Random(seed)
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    sheet.append([header for _, header, _ in COLUMNS])
    for n in range(rows):
        origin = rng.choice(COUNTIES)
        values = {"id_type": "身份证", "id_number": make_resident_id(HOME, date(1960, 1, 1) + timedelta(days=n // 1000),
                                                                      n % 1000),
                  "name": f"返乡{n}", "phone": f"139{n:08d}", "region_code": HOME, "grid": f"g{n % 20}",
                  "address": "南山区", "origin_kind": "国内", "origin_country": None, "origin_region_code": origin,
                  "arrival_date": "2022-03-20", "port_of_entry": None, "transport_kind": "高铁",
                  "transport_number": f"G{n % 500}", "served_quarantine_days": 0, "served_quarantine_place": None}
        sheet.append([values[field] for field, _, _ in COLUMNS])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


async def baseline_copy(dsn: str, table: str, columns: str, records: list[tuple]) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE TEMP TABLE {table} ({columns})")
        names = [c.split()[0] for c in columns.split(",")]
        started = time.perf_counter()
        await conn.copy_records_to_table(table, records=records, columns=names)
        return time.perf_counter() - started
    finally:
        await conn.close()


async def seed_travel(dsn: str, count: int, seed: int) -> None:
    """``count`` people with one travel record and one stay each, via COPY (set-up, not timed)."""
    rng = random.Random(seed)
    conn = await asyncpg.connect(dsn)
    try:
        chunk = 100_000
        for start in range(0, count, chunk):
            persons, records, stays = [], [], []
            for n in range(start, min(count, start + chunk)):
                key = hashlib.sha256(f"seed-{n}".encode()).hexdigest()
                record = str(uuid.UUID(int=n + 1))
                day = date(2022, 2, 1) + timedelta(days=rng.randrange(45))
                county = rng.choice(COUNTIES)
                persons.append((key, "resident_id", f"S{n:017d}", f"人{n}", HOME, f"g{n % 50}", "domestic_other",
                                "import", datetime.now(UTC), datetime.now(UTC)))
                records.append((record, key, "domestic", county, day + timedelta(days=3), 0, "domestic_other",
                                f"seed:{n}", datetime.now(UTC)))
                stays.append((record, key, county, day, day + timedelta(days=rng.randrange(1, 6))))
            await conn.copy_records_to_table("persons", records=persons, columns=[
                "person_key", "id_type", "id_number", "name", "region_code", "grid", "category", "registered_via",
                "created_at", "updated_at"])
            await conn.copy_records_to_table("travel_records", records=records, columns=[
                "id", "person_key", "origin_kind", "origin_region_code", "arrival_date", "served_quarantine_days",
                "category", "natural_key", "created_at"])
            await conn.copy_records_to_table("travel_stays", records=stays, columns=[
                "travel_record_id", "person_key", "region_code", "date_from", "date_to"])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def run(args: argparse.Namespace, server_dsn: str) -> dict:
    name = f"bench_registry_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    dsn = server_dsn.rsplit("/", 1)[0] + f"/{name}"
    results: dict = {"database": "postgresql", "date": datetime.now(UTC).isoformat(timespec="seconds")}
    console = Console()
    settings = Settings(database_url=dsn.replace("postgresql://", "postgresql+asyncpg://", 1),
                        bus_url=f"memory://bench-{name}", outbox_poll_seconds=5)
    try:
        async with running(create_app(settings)) as h:
            headers = h.headers(Role.commander, regions=["440300"])
            # import
            content = xlsx(args.import_rows, args.seed)
            started = time.perf_counter()
            response = await h.client.post("/registry/import", headers=headers,
                                           files={"file": ("list.xlsx", content, "application/octet-stream")})
            elapsed = time.perf_counter() - started
            report = response.json()
            assert report["stored"] == args.import_rows, report
            copy_rows = [(str(n), f"返乡{n}", HOME) for n in range(args.import_rows)]
            base = await baseline_copy(dsn, "scratch_people", "k text, name text, region text", copy_rows)
            results["import"] = {"rows": args.import_rows, "seconds": elapsed, "rows_per_s": args.import_rows / elapsed,
                                 "baseline_copy_rows_per_s": args.import_rows / base}
            console.print(f"import: {args.import_rows} rows in {elapsed:.2f} s")
            # passes
            checkpoint = (await h.client.post("/registry/checkpoints", headers=headers, json={
                "name": "卡口", "region_code": HOME, "kind": "road"})).json()
            rng = random.Random(args.seed)
            now = datetime(2022, 3, 21, 8, tzinfo=UTC)
            passes = []
            for n in range(args.passes):
                temperature = 37.6 if rng.random() < 0.02 else 36.5
                who = ({"id_number": make_resident_id(HOME, date(1970, 1, 1) + timedelta(days=n // 1000), n % 1000)}
                       if n % 2 else {"id_number": make_resident_id(HOME, date(1960, 1, 1) + timedelta(
                           days=(n % args.import_rows) // 1000), (n % args.import_rows) % 1000)})
                passes.append({**who, "temperature_c": temperature,
                               "passed_at": (now + timedelta(seconds=n)).isoformat(), "pass_id": f"p{n}"})
            started = time.perf_counter()
            for start in range(0, len(passes), 1000):
                answer = await h.client.post(f"/registry/checkpoints/{checkpoint['id']}/passes", headers=headers,
                                             json={"passes": passes[start:start + 1000]})
                assert answer.status_code == 200, answer.text
            elapsed = time.perf_counter() - started
            base = await baseline_copy(dsn, "scratch_passes", "cp text, k text, t float8, at timestamptz",
                                       [(checkpoint["id"], p["id_number"], p["temperature_c"], now) for p in passes])
            results["passes"] = {"passes": args.passes, "seconds": elapsed, "passes_per_s": args.passes / elapsed,
                                 "baseline_copy_rows_per_s": args.passes / base}
            console.print(f"passes: {args.passes} in {elapsed:.2f} s")
            # risk area over N travel records
            seed_started = time.perf_counter()
            await seed_travel(dsn, args.travel, args.seed)
            console.print(f"seeded {args.travel} travel records in {time.perf_counter() - seed_started:.1f} s")
            area_code = args.area
            low, high = region_code_range(area_code)
            conn = await asyncpg.connect(dsn)
            started = time.perf_counter()
            expected = await conn.fetchval(
                "SELECT count(DISTINCT person_key) FROM travel_stays WHERE (region_code BETWEEN $1 AND $2 OR "
                "region_code = ANY($3::text[])) AND date_to >= $4", low, high,
                enclosing_codes(area_code), date(2022, 3, 10) - timedelta(days=14))
            base = time.perf_counter() - started
            await conn.close()
            started = time.perf_counter()
            declared = await h.client.post("/registry/risk-areas", headers=headers, json={
                "region_code": area_code, "level": "high", "effective_from": "2022-03-10", "lookback_days": 14})
            elapsed = time.perf_counter() - started
            flagged = declared.json()["flagged_count"]
            assert flagged == expected, (flagged, expected)
            results["risk_area"] = {"travel_records": args.travel, "flagged": flagged, "seconds": elapsed,
                                    "goal_seconds": 5.0, "baseline_select_seconds": base}
            console.print(f"risk area: {flagged} of {args.travel} flagged in {elapsed:.2f} s")
    finally:
        admin = await asyncpg.connect(server_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    table = Table(title="registry on PostgreSQL")
    for column in ("figure", "measured", "baseline (same run)", "ratio"):
        table.add_column(column)
    i, p, r = results["import"], results["passes"], results["risk_area"]
    table.add_row("bulk import rows/s", f"{i['rows_per_s']:.0f}", f"COPY {i['baseline_copy_rows_per_s']:.0f}",
                  f"{i['rows_per_s'] / i['baseline_copy_rows_per_s']:.3f}")
    table.add_row("checkpoint passes/s", f"{p['passes_per_s']:.0f}", f"COPY {p['baseline_copy_rows_per_s']:.0f}",
                  f"{p['passes_per_s'] / p['baseline_copy_rows_per_s']:.3f}")
    table.add_row(f"risk area over {r['travel_records']:,} records (goal ≤ 5 s)", f"{r['seconds']:.2f} s "
                  f"({r['flagged']:,} flagged)", f"SELECT {r['baseline_select_seconds']:.2f} s",
                  f"{r['seconds'] / max(r['baseline_select_seconds'], 1e-9):.1f}×")
    console.print(table)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--import-rows", type=int, default=5000)
    parser.add_argument("--passes", type=int, default=20000)
    parser.add_argument("--travel", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--area", default=COUNTIES[7],
                        help="region code of the declared area (a province code flags ~10%% of the records)")
    parser.add_argument("--database-url", help="a PostgreSQL server (postgresql://user@host:port/db); default: start one")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with _components.postgres(args.database_url) as url:
        results = asyncio.run(run(args, url.replace("postgresql+asyncpg://", "postgresql://", 1)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
