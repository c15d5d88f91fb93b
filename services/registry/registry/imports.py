"""Bulk returnee lists (XLSX or CSV): rows read as a stream, each checked on its own,
valid rows stored, a report of every rejected row (row, column, reason)."""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from typing import IO, Any

from fastapi import HTTPException
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font, PatternFill
from pydantic import ValidationError

from fangkong_common.errors import Invalid

from registry import schemas
from registry.service import require_person_scope

# (field, Chinese header, example) — the template's columns, in order.
COLUMNS: list[tuple[str, str, str]] = [
    ("id_type", "证件类型", "身份证"),
    ("id_number", "证件号码", "11010519491231002X"),
    ("name", "姓名", "张三"),
    ("phone", "手机号码", "13800138000"),
    ("region_code", "现住地行政区划代码", "440305"),
    ("grid", "网格", "南山-01"),
    ("address", "现住址", "南山区科技园一路1号"),
    ("origin_kind", "来源类型", "境外"),
    ("origin_country", "来源国家或地区代码", "SG"),
    ("origin_region_code", "来源地行政区划代码", ""),
    ("arrival_date", "抵达日期", "2022-03-20"),
    ("port_of_entry", "入境口岸行政区划代码", "440300"),
    ("transport_kind", "交通方式", "航班"),
    ("transport_number", "航班车次", "SQ850"),
    ("served_quarantine_days", "已完成隔离天数", "0"),
    ("served_quarantine_place", "已隔离地点", ""),
]
HEADER_TO_FIELD = {header: field for field, header, _ in COLUMNS} | {field: field for field, _, _ in COLUMNS}
FIELD_TO_HEADER = {field: header for field, header, _ in COLUMNS}
REQUIRED = ("id_number", "name", "region_code", "origin_kind", "arrival_date")

ID_TYPES = {"身份证": "resident_id", "居民身份证": "resident_id", "护照": "passport", "港澳通行证": "hk_macao_permit",
            "台胞证": "taiwan_permit", "外国人永久居留证": "foreign_permanent_resident", "其他": "other"}
ORIGIN_KINDS = {"境外": "international", "国外": "international", "国内": "domestic", "境内": "domestic"}
TRANSPORT_KINDS = {"航班": "flight", "飞机": "flight", "火车": "train", "高铁": "train", "轮船": "ship",
                   "客车": "coach", "自驾": "car", "其他": "other"}


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not a spreadsheet, no header, too big)."""


def template_xlsx() -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "返乡人员"
    sheet.append([header for _, header, _ in COLUMNS])
    sheet.append([example for _, _, example in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
        cell.fill = PatternFill("solid", fgColor="FFE699")
    for index, (field, header, _) in enumerate(COLUMNS, start=1):
        sheet.column_dimensions[sheet.cell(1, index).column_letter].width = max(12, len(header) * 2 + 2)
    notes = workbook.create_sheet("填表说明")
    notes.append(["列", "说明"])
    for line in [
        ("证件类型", "身份证、护照、港澳通行证、台胞证、外国人永久居留证、其他"),
        ("证件号码", "居民身份证须为18位且校验码正确"),
        ("来源类型", "境外 或 国内；境外须填来源国家或地区代码（ISO 3166，如 SG），国内须填来源地行政区划代码"),
        ("抵达日期", "YYYY-MM-DD"),
        ("已完成隔离天数", "在外省口岸已完成的集中隔离天数，没有填0"),
        ("必填", "证件号码、姓名、现住地行政区划代码、来源类型、抵达日期"),
    ]:
        notes.append(list(line))
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


# A part of a workbook unpacking to more than this many times its packed size is a zip bomb, not a
# list of people (real sheets pack 5-20:1); checked on the sizes the archive declares, which bound
# what zipfile will ever unpack, before any part is read.
MAX_UNPACK_RATIO = 100
UNPACK_RATIO_FROM = 1 << 20


def read_rows(stream: IO[bytes], filename: str, *, max_rows: int, max_unpacked_bytes: int = 1 << 30
              ) -> Iterator[tuple[int, dict[str, str | None]]]:
    """(spreadsheet row number, {field: text}) for every non-empty data row."""
    name = filename.lower()
    if name.endswith(".xlsx"):
        rows = _xlsx_rows(stream, max_unpacked_bytes)
    elif name.endswith(".csv"):
        rows = _csv_rows(stream)
    else:
        raise ImportFileError("只接受 .xlsx 或 .csv 文件 (only .xlsx and .csv files are accepted)")
    try:
        header = next(rows)
    except StopIteration:
        raise ImportFileError("文件为空 (the file is empty)") from None
    fields = [HEADER_TO_FIELD.get((_cell(h) or "").strip()) for h in header]
    missing = [FIELD_TO_HEADER[f] for f in REQUIRED if f not in fields]
    if missing:
        raise ImportFileError(f"缺少必填列: {', '.join(missing)} (missing required columns)")
    count = 0
    for number, values in enumerate(rows, start=2):
        record = {field: _cell(value) for field, value in zip(fields, values, strict=False) if field}
        if not any(record.values()):
            continue
        count += 1
        if count > max_rows:
            raise ImportFileError(f"超过{max_rows}行上限 (more than {max_rows} rows)")
        yield number, record


def _check_archive(stream: IO[bytes], max_unpacked_bytes: int) -> None:
    try:
        with zipfile.ZipFile(stream) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ImportFileError(f"无法读取Excel文件 (not a readable .xlsx file: {type(exc).__name__})") from None
    finally:
        stream.seek(0)
    unpacked = sum(part.file_size for part in parts)
    if unpacked > max_unpacked_bytes:
        raise ImportFileError(f"Excel文件解压后{unpacked}字节，超过{max_unpacked_bytes}字节上限，疑似压缩炸弹 "
                              f"(the workbook unpacks to {unpacked} bytes, over the limit)")
    for part in parts:
        if part.file_size > UNPACK_RATIO_FROM and part.file_size > MAX_UNPACK_RATIO * max(part.compress_size, 1):
            raise ImportFileError(f"Excel文件压缩比异常（{part.filename}: {part.file_size}/{part.compress_size}），"
                                  f"疑似压缩炸弹 (a zip bomb: {part.filename} unpacks over {MAX_UNPACK_RATIO}:1)")


def _xlsx_rows(stream: IO[bytes], max_unpacked_bytes: int) -> Iterator[tuple]:
    _check_archive(stream, max_unpacked_bytes)
    try:
        workbook = load_workbook(stream, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a broken zip or XML
        raise ImportFileError(f"无法读取Excel文件 (not a readable .xlsx file: {type(exc).__name__})") from None
    try:
        yield from workbook.worksheets[0].iter_rows(values_only=True)
    finally:
        workbook.close()


def _csv_rows(stream: IO[bytes]) -> Iterator[list[str]]:
    """UTF-8 (with or without BOM), else GB18030 (a superset of GBK, what Excel in China saves)."""
    head = stream.read(1 << 20)
    stream.seek(0)
    encoding = "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        encoding = "gb18030"
    text = io.TextIOWrapper(stream, encoding=encoding, errors="strict", newline="")
    try:
        yield from csv.reader(text)
    except UnicodeDecodeError:
        raise ImportFileError("文件编码无法识别 (the file is neither UTF-8 nor GBK)") from None
    except csv.Error as exc:
        raise ImportFileError(f"CSV格式错误 (malformed CSV: {exc})") from None
    finally:
        text.detach()


def to_models(record: dict[str, str | None]) -> tuple[schemas.PersonIn, schemas.TravelIn]:
    """The row as API models; raises ValidationError (locations are field names)."""
    id_type = record.get("id_type") or "resident_id"
    person = schemas.PersonIn.model_validate({
        "id_type": ID_TYPES.get(id_type, id_type), "id_number": record.get("id_number"),
        "name": record.get("name"), "phone": record.get("phone"), "region_code": record.get("region_code"),
        "grid": record.get("grid"), "address": record.get("address"),
    })
    origin = record.get("origin_kind") or ""
    transport = None
    if record.get("transport_kind"):
        kind = record["transport_kind"] or ""
        transport = {"kind": TRANSPORT_KINDS.get(kind, kind), "number": record.get("transport_number")}
    travel = schemas.TravelIn.model_validate({
        "origin_kind": ORIGIN_KINDS.get(origin, origin), "origin_country": record.get("origin_country"),
        "origin_region_code": record.get("origin_region_code"), "arrival_date": record.get("arrival_date"),
        "port_of_entry": record.get("port_of_entry"), "transport": transport,
        "served_quarantine_days": record.get("served_quarantine_days") or 0,
        "served_quarantine_place": record.get("served_quarantine_place"),
    })
    return person, travel


def row_errors(row: int, exc: ValidationError) -> list[schemas.ImportRowError]:
    errors = []
    for error in exc.errors():
        field = next((str(part) for part in error["loc"] if str(part) in FIELD_TO_HEADER), None)
        if field is None and error["loc"] and error["loc"][0] == "transport":
            field = "transport_kind"
        errors.append(schemas.ImportRowError(row=row, column=FIELD_TO_HEADER.get(field or "", None),
                                             reason=error["msg"]))
    return errors


def check_row(registry, principal, row: int, record: dict[str, str | None]
              ) -> tuple[schemas.PersonIn, schemas.TravelIn] | list[schemas.ImportRowError]:
    """The row's models when every check passes (fields, ID number, the caller's scope), else its errors."""
    try:
        person, travel = to_models(record)
        registry.check_identity(person)
        require_person_scope(principal, person.region_code, person.grid)
    except ValidationError as exc:
        return row_errors(row, exc)
    except Invalid as exc:
        first = exc.detail[0]
        return [schemas.ImportRowError(row=row, column=FIELD_TO_HEADER.get(str(first["loc"][-1])), reason=first["msg"])]
    except HTTPException as exc:  # outside the caller's region or grid
        column = FIELD_TO_HEADER["grid" if "grid" in str(exc.detail) else "region_code"]
        return [schemas.ImportRowError(row=row, column=column, reason=str(exc.detail))]
    return person, travel
