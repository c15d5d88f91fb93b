"""Returnee lists as a district office would upload them: rows, CSV in any encoding, XLSX, and the
hostile variants (zip bombs, truncated archives) built from the same rows."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterable
from datetime import date, timedelta

from fangkong_common.identity import make_resident_id
from openpyxl import Workbook

HEADER = ["证件类型", "证件号码", "姓名", "手机号码", "现住地行政区划代码", "网格", "现住址", "来源类型",
          "来源国家或地区代码", "来源地行政区划代码", "抵达日期", "入境口岸行政区划代码", "交通方式", "航班车次",
          "已完成隔离天数", "已隔离地点"]


def resident_id(n: int) -> str:
    """A distinct valid resident ID for every n (birth day from n // 1000, sequence n % 1000)."""
    return make_resident_id("440305", date(1950, 1, 1) + timedelta(days=n // 1000), n)


def row(n: int, **changes: str | None) -> list[str | None]:
    values = {"证件类型": "身份证", "证件号码": resident_id(n), "姓名": f"返乡人员{n}", "手机号码": "13800138000",
              "现住地行政区划代码": "440305", "网格": "南山-01", "现住址": "南山区科技园一路1号", "来源类型": "国内",
              "来源国家或地区代码": None, "来源地行政区划代码": "110101", "抵达日期": "2026-11-20",
              "入境口岸行政区划代码": None, "交通方式": "高铁", "航班车次": "G79", "已完成隔离天数": "0",
              "已隔离地点": None}
    values.update(changes)
    return [values[h] for h in HEADER]


def csv_bytes(rows: Iterable[list], encoding: str = "utf-8") -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(HEADER)
    writer.writerows(rows)
    return text.getvalue().encode(encoding)


def xlsx_bytes(rows: Iterable[list], formulas: dict[tuple[int, int], str] | None = None) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    for values in rows:
        sheet.append(values)
    for (r, c), formula in (formulas or {}).items():
        sheet.cell(r, c).value = formula  # a string starting "=": openpyxl writes a formula cell
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def zip_bomb_xlsx(unpacked_bytes: int) -> bytes:
    """A real workbook whose sheet unpacks to ``unpacked_bytes``, nearly all of it one name cell of a
    repeated letter (about 1,000:1): small to upload; read, that one cell is a string of that size."""
    source = zipfile.ZipFile(io.BytesIO(xlsx_bytes([])))
    sheet = "xl/worksheets/sheet1.xml"
    header = "".join(f'<c r="{chr(65 + i)}1" t="inlineStr"><is><t>{h}</t></is></c>' for i, h in enumerate(HEADER))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as bomb:
        for info in source.infolist():
            if info.filename != sheet:
                bomb.writestr(info.filename, source.read(info.filename))
        with bomb.open(sheet, "w", force_zip64=True) as part:
            part.write(('<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
                        f'<row r="1">{header}</row><row r="2"><c r="C2" t="inlineStr"><is><t>').encode())
            chunk = b"A" * (1 << 20)
            for _ in range(unpacked_bytes >> 20):
                part.write(chunk)
            part.write(b"</t></is></c></row></sheetData></worksheet>")
    return out.getvalue()
