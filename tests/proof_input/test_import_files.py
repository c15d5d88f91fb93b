"""The registry's bulk import (POST /registry/import) against what district offices really upload:
every encoding Excel in China saves, rows broken in every column, and files that are malformed,
truncated, oversized or hostile. Valid rows are stored with a report naming each bad row and
column; a file refused as a whole stores nothing (persons and travel records counted before and
after); memory stays bounded (the process's peak RSS during the request)."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fangkong_common.testing import ServiceHarness, running
from importfiles import HEADER, csv_bytes, resident_id, row, xlsx_bytes, zip_bomb_xlsx
from sqlalchemy import func, select

from conftest import bearer, build_app

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@asynccontextmanager
async def registry_with(tmp_path, **settings) -> AsyncIterator[ServiceHarness]:
    async with running(build_app("registry", tmp_path, **settings)) as harness:
        yield harness


async def counts(h: ServiceHarness) -> tuple[int, int]:
    """(persons, travel records) in the registry's database."""
    from registry.models import Person, TravelRecord

    async with h.session() as session:
        return (await session.scalar(select(func.count()).select_from(Person)),
                await session.scalar(select(func.count()).select_from(TravelRecord)))


async def upload(h: ServiceHarness, name: str, content: bytes, media_type: str = "application/octet-stream"):
    return await h.client.post("/registry/import", files={"file": (name, content, media_type)},
                               headers=bearer(h.app, "commander", ["440300"]))


def bad_rows(base: int) -> list[tuple[list, int, str]]:
    """(row, spreadsheet row number once after 4 good rows, the column the report must name)."""
    good_id = resident_id(base)
    wrong_check = good_id[:-1] + ("0" if good_id[-1] != "0" else "1")
    feb29 = "440305" + "20230229" + "123"  # 2023 is not a leap year
    return [
        (row(base, 证件号码=wrong_check), 6, "证件号码"),
        (row(base + 1, 证件号码=feb29 + "0"), 7, "证件号码"),
        (row(base + 2, 姓名=None), 8, "姓名"),
        (row(base + 3, 抵达日期="2026-02-29"), 9, "抵达日期"),
        (row(base + 4, 现住地行政区划代码="310101"), 10, "现住地行政区划代码"),  # outside the commander's city
        (row(base + 5, 来源类型="外星"), 11, "来源类型"),
    ]


@pytest.mark.proof("bad input")
async def test_import_reports_each_bad_row_in_every_encoding(tmp_path, proof) -> None:
    proof.injected("the same list of 4 good + 6 bad rows (check character, 20230229 birth, no name, "
                   "2026-02-29 arrival, other city, unknown origin) as CSV in UTF-8, UTF-8 with BOM, GBK, "
                   "GB18030 and as XLSX")
    formats = [("utf-8", "list.csv"), ("utf-8-sig", "list.csv"), ("gbk", "list.csv"), ("gb18030", "list.csv"),
               ("xlsx", "返乡人员.xlsx")]
    reports = []
    async with registry_with(tmp_path) as h:
        for index, (encoding, filename) in enumerate(formats):
            base = 1000 * (index + 1)
            bad = bad_rows(base + 100)
            rows = [row(base + i) for i in range(4)] + [r for r, _, _ in bad]
            content = xlsx_bytes(rows) if encoding == "xlsx" else csv_bytes(rows, encoding)
            before = await counts(h)
            response = await upload(h, filename, content)
            assert response.status_code == 200, (encoding, response.text)
            report = response.json()
            after = await counts(h)
            assert (report["rows"], report["stored"], report["rejected"]) == (10, 4, 6), (encoding, report)
            assert after == (before[0] + 4, before[1] + 4), encoding
            named = {(e["row"], e["column"]) for e in report["errors"]}
            assert named == {(number, column) for _, number, column in bad}, (encoding, report["errors"])
            assert all(e["reason"] for e in report["errors"])
            reports.append(f"{encoding}: 10 rows, 4 stored, 6 refused each naming row+column")
        # The Chinese names arrived intact from each encoding (a GBK file read as UTF-8 would garble them).
        from registry.models import Person

        async with h.session() as session:
            names = set((await session.scalars(select(Person.name))).all())
        for index in range(len(formats)):
            assert f"返乡人员{1000 * (index + 1)}" in names
    proof.measured("; ".join(reports) + "; persons/travel counted before and after each file: +4/+4")


@pytest.mark.proof("bad input")
async def test_import_refuses_broken_files_whole_and_stores_nothing(tmp_path, proof) -> None:
    proof.injected("truncated XLSX, random bytes as .xlsx and as .csv, UTF-16, a zip without a workbook, empty CSV, a row of NUL bytes, "
                   ".txt, header-only CSV, 1.2 MB of good UTF-8 rows then GBK bytes, a formula cell in XLSX")
    good = xlsx_bytes([row(i) for i in range(30)])
    import io
    import zipfile

    no_workbook = io.BytesIO()
    with zipfile.ZipFile(no_workbook, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    # Over 1 MB of UTF-8 first (the part the encoding is sniffed from), then a GBK-encoded row.
    mixed = csv_bytes([row(5000 + i) for i in range(9000)]) + ",".join(v or "" for v in row(14999)).encode("gbk") + b"\r\n"
    assert len(mixed) > 1 << 20
    cases = {
        "truncated.xlsx": good[: len(good) // 2],
        "random.xlsx": bytes(range(256)) * 40,
        "no-workbook.xlsx": no_workbook.getvalue(),
        "empty.csv": b"",
        "list.txt": csv_bytes([row(2)]),
        "mixed-encodings.csv": mixed,
        "garbage.csv": bytes(range(256)) * 40,
        "utf16.csv": csv_bytes([row(3)]).decode("utf-8").encode("utf-16"),  # Excel's "Unicode text"
    }
    refused = []
    async with registry_with(tmp_path) as h:
        for name, content in cases.items():
            before = await counts(h)
            response = await upload(h, name, content)
            after = await counts(h)
            assert response.status_code == 422, (name, response.status_code, response.text[:300])
            detail = response.json()["detail"][0]
            assert detail["loc"] == ["body", "file"] and detail["msg"], (name, detail)
            assert after == before, (name, before, after)  # nothing half-imported
            refused.append(name)
        # NUL bytes and garbage in one row: that row is refused with its reasons, the good one stored.
        nul = (await upload(h, "nul.csv", csv_bytes([row(1)]) + b"\x00\x00\x00,\x00\r\n")).json()
        assert (nul["rows"], nul["stored"], nul["rejected"]) == (2, 1, 1) and nul["errors"][0]["row"] == 3, nul
        header_only = await upload(h, "header.csv", csv_bytes([]))
        assert header_only.status_code == 200 and header_only.json()["rows"] == 0
        # A formula in a name cell is never evaluated: the cell has no value to import, the row is refused.
        formula = xlsx_bytes([row(20000), row(20001)], formulas={(3, HEADER.index("姓名") + 1): "=1+1"})
        report = (await upload(h, "formula.xlsx", formula)).json()
        assert (report["stored"], report["rejected"]) == (1, 1), report
        assert report["errors"][0]["row"] == 3 and report["errors"][0]["column"] == "姓名"
    proof.measured(f"{len(refused)} broken files refused with 422 naming body.file, persons/travel before == "
                   f"after for each (incl. 9,000 good rows before the bad bytes); NUL row: refused alone; formula cell: row refused, "
                   f"not evaluated")


@pytest.mark.proof("bad input")
async def test_import_limits_refuse_over_limit_files_with_nothing_stored(tmp_path, proof) -> None:
    proof.injected("a file over import_max_bytes (set to 100 kB), a list one row over import_max_rows "
                   "(set to 600; rows are stored in batches of 500), an XLSX unpacking past import_max_unpacked_bytes (20 kB)")
    async with registry_with(tmp_path, import_max_bytes=100_000, import_max_rows=600) as h:
        big = csv_bytes([row(i) for i in range(1200)])
        assert len(big) > 100_000
        before = await counts(h)
        response = await upload(h, "big.csv", big)
        assert response.status_code == 422 and "上限" in response.text
        assert await counts(h) == before
    async with registry_with(tmp_path / "rows", import_max_rows=600) as h:
        response = await upload(h, "rows.csv", csv_bytes([row(i) for i in range(601)]))
        assert response.status_code == 422 and "600" in response.text
        assert await counts(h) == (0, 0)  # the first batch of 500 was written, then rolled back
        ok = await upload(h, "rows.csv", csv_bytes([row(i) for i in range(600)]))
        assert ok.status_code == 200 and ok.json()["stored"] == 600
        assert await counts(h) == (600, 600)
    async with registry_with(tmp_path / "unpacked", import_max_unpacked_bytes=20_000) as h:
        workbook = xlsx_bytes([row(i) for i in range(100)])
        response = await upload(h, "list.xlsx", workbook)
        assert response.status_code == 422 and "上限" in response.json()["detail"][0]["msg"]
        assert await counts(h) == (0, 0)
    proof.measured(f"{len(big):,}-byte file over a 100,000-byte limit: 422, 0 rows stored; 601 rows over a "
                   "600-row limit: 422, 0 of 601 stored (batch of 500 rolled back); 600 rows: 600 stored; "
                   "XLSX over the unpacked limit: 422, 0 stored")


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return int(next(line for line in status if line.startswith(field)).split()[1])


async def _measured_import(h: ServiceHarness, name: str, content: bytes):
    """The answer, the process's peak resident memory above where it stood before the request (Linux:
    VmHWM reset through clear_refs, so C allocations such as the XML parser's count too; elsewhere
    Python's own allocations by tracemalloc), seconds."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:  # noqa: ASYNC230 - a kernel file, no I/O wait
            refs.write("5")
    except OSError:
        tracemalloc.start()
        started = time.perf_counter()
        try:
            response = await upload(h, name, content)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return response, peak, time.perf_counter() - started
    baseline = _rss_kib("VmRSS:")
    started = time.perf_counter()
    response = await upload(h, name, content)
    seconds = time.perf_counter() - started
    return response, max(_rss_kib("VmHWM:") - baseline, 0) * 1024, seconds


@pytest.mark.proof("bad input")
async def test_import_zip_bomb_is_refused_before_it_is_unpacked(tmp_path, proof) -> None:
    unpacked = 128 << 20
    content = zip_bomb_xlsx(unpacked)
    proof.injected(f"an XLSX of {len(content):,} bytes whose one name cell unpacks to {unpacked >> 20} MiB "
                   "(a 256 MiB one, read before the fix: 513 MiB traced, 15 s)")
    async with registry_with(tmp_path) as h:
        response, peak, seconds = await _measured_import(h, "bomb.xlsx", content)
        assert response.status_code == 422, response.text[:300]
        assert "压缩炸弹" in response.json()["detail"][0]["msg"]
        assert await counts(h) == (0, 0)
    assert peak < 32 << 20, f"peak {peak / 2**20:.1f} MiB"
    proof.measured(f"422 in {seconds:.2f} s, nothing stored; peak RSS growth {peak / 2**20:.1f} MiB "
                   f"for a {unpacked >> 20} MiB bomb")


async def _large_import(tmp_path, rows: int) -> tuple[str, int]:
    content = csv_bytes([row(i) for i in range(rows)])
    async with registry_with(tmp_path) as h:
        response, peak, seconds = await _measured_import(h, "large.csv", content)
        assert response.status_code == 200, response.text[:300]
        assert response.json()["stored"] == rows
        assert await counts(h) == (rows, rows)
    return (f"{rows:,} rows ({len(content) / 2**20:.1f} MiB CSV) stored in {seconds:.1f} s, peak RSS growth "
            f"{peak / 2**20:.1f} MiB"), peak


@pytest.mark.proof("bad input")
async def test_import_large_file_memory_bounded(tmp_path, proof) -> None:
    proof.injected("a CSV of 5,000 valid rows")
    text, peak = await _large_import(tmp_path, 5_000)
    proof.measured(text)
    assert peak < 64 << 20


@pytest.mark.proof("bad input")
@pytest.mark.long_fault
async def test_import_huge_file_memory_bounded(tmp_path, proof) -> None:
    proof.injected("a CSV of 100,000 valid rows (before the outbox fix: peak RSS +288 MiB)")
    text, peak = await _large_import(tmp_path, 100_000)
    proof.measured(text)
    # Streamed in batches of 500: the peak does not grow with the file (5,000 rows stay under 64 MiB too).
    assert peak < 64 << 20
