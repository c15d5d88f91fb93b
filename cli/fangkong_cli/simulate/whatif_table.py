"""The what-if comparison as a table: one row per figure, one column per run, each variant with
its difference from the baseline. One layout for the terminal (rich), the brief (XLSX, PDF)
and the command screen (JSON cells). zh-CN first, English with lang="en"."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

HOUR = 3600.0

# (section, getter path, zh, en, kind, better): kind = duration (seconds) | share | count;
# better = "lower" | "higher" (which way the difference is good).
INTERVAL_LABELS = {
    "result_to_bed": ("阳性结果→入院", "result → hospital bed"),
    "case_to_contacts_ordered": ("阳性→密接被隔离", "case → contacts under order"),
    "collection_to_result": ("采样→出结果", "collection → result"),
    "positive_to_classified": ("阳性→分类", "positive → classified"),
}
STATS = (("median_seconds", "中位数", "median"), ("p90_seconds", "P90", "p90"), ("max_seconds", "最长", "max"))
EXTRAS = {
    "result_to_bed": [("waiting", "仍在等床位（人）", "still waiting for a bed", "count", "lower"),
                      ("longest_wait_seconds", "等床最久", "longest wait for a bed", "duration", "lower")],
    "case_to_contacts_ordered": [("share_within_24h", "24小时内隔离比例", "share ordered within 24 h", "share",
                                  "higher")],
    "collection_to_result": [("share_within_12h", "12小时内出结果比例", "share resulted within 12 h", "share", "higher"),
                             ("share_within_24h", "24小时内出结果比例", "share resulted within 24 h", "share",
                              "higher")],
    "positive_to_classified": [("unclassified", "未分类阳性（人）", "positives not classified", "count", "lower"),
                               ("oldest_unclassified_seconds", "最久未分类", "oldest unclassified", "duration",
                                "lower")],
}
KPI_LABELS = {"tested": ("应检尽检", "tested (应检尽检)"), "isolated": ("应隔尽隔", "isolated (应隔尽隔)"),
              "treated": ("应救尽救", "treated (应救尽救)"), "managed": ("应管尽管", "managed (应管尽管)")}
SECTIONS = {"intervals": ("四早时效（来自平台 /dashboard/outcomes）", "The four intervals (platform's /dashboard/outcomes)"),
            "kpis": ("四应四尽", "The four KPIs"),
            "peaks": ("推演期间峰值", "Peaks during the run")}
PEAKS = [("backlog_tubes", "待检样本管积压峰值", "peak testing backlog (tubes)", "count", "lower"),
         ("beds_short", "阳性待床位峰值（人）", "peak positives waiting for a bed", "count", "lower")]
TEXT = {
    "title": ("推演对比：如果……会怎样", "What-if comparison"),
    "figure": ("指标", "figure"), "section": ("类别", "section"),
    "scenario": ("场景", "scenario"), "seed": ("随机种子", "seed"), "scale": ("规模", "scale"),
    "start": ("首日（北京时间）", "first day (Beijing)"),
    "note": ("每个杠杆单独一次推演（同一随机种子、同一疫情），差值相对基线；绿色=更好，红色=更差。",
             ("Each lever is its own run (same seed, same outbreak); differences are against the baseline; "
              "green = better, red = worse.")),
    "no_intervals": ("平台未提供时效数据", "the platform gave no intervals"),
    "wall": ("耗时（秒）", "wall time (s)"),
    "hours": ("小时", "h"), "pp": ("个百分点", "pp"),
}


def _t(key: str, lang: str) -> str:
    zh, en = TEXT[key]
    return en if lang == "en" else zh


@dataclass
class Cell:
    value: float | None
    text: str
    delta: str | None = None        # against the baseline (variants only)
    better: bool | None = None      # None: no difference, or no direction


@dataclass
class Row:
    section: str
    label: str
    cells: list[Cell]


def _fmt(value: float | None, kind: str, lang: str) -> str:
    if value is None:
        return "—"
    if kind == "duration":
        return f"{value / HOUR:,.1f} {_t('hours', lang)}" if lang == "en" else f"{value / HOUR:,.1f}{_t('hours', lang)}"
    if kind == "share":
        return f"{value:.1%}"
    return f"{value:,.0f}"


def _delta(value: float | None, base: float | None, kind: str, lang: str) -> str | None:
    if value is None or base is None:
        return None
    diff = value - base
    sign = "+" if diff > 0 else ("−" if diff < 0 else "±")
    if kind == "duration":
        return f"{sign}{abs(diff) / HOUR:,.1f}" + (f" {_t('hours', lang)}" if lang == "en" else _t("hours", lang))
    if kind == "share":
        return f"{sign}{abs(diff) * 100:.1f}" + (f" {_t('pp', lang)}" if lang == "en" else _t("pp", lang))
    return f"{sign}{abs(diff):,.0f}"


def _row(section: str, label: str, values: list[float | None], kind: str, better: str | None, lang: str) -> Row:
    base = values[0]
    cells = [Cell(values[0], _fmt(values[0], kind, lang))]
    for value in values[1:]:
        good = None
        if better and value is not None and base is not None and value != base:
            good = (value < base) if better == "lower" else (value > base)
        cells.append(Cell(value, _fmt(value, kind, lang), _delta(value, base, kind, lang), good))
    return Row(section, label, cells)


def _get(block: Any, *path: str) -> float | None:
    for key in path:
        if not isinstance(block, dict):
            return None
        block = block.get(key)
    return block if isinstance(block, int | float) else None


def rows(comparison: dict, lang: str = "zh") -> list[Row]:
    en = lang == "en"
    runs = comparison["runs"]
    out: list[Row] = []
    section = SECTIONS["intervals"][1 if en else 0]
    for name, (zh, eng) in INTERVAL_LABELS.items():
        what = eng if en else zh
        for stat, szh, sen in STATS:
            out.append(_row(section, f"{what} {sen if en else szh}", [_get(r["intervals"], name, stat) for r in runs],
                            "duration", "lower", lang))
        for key, xzh, xen, kind, better in EXTRAS[name]:
            out.append(_row(section, f"{what}: {xen if en else xzh}", [_get(r["intervals"], name, key) for r in runs],
                            kind, better, lang))
    section = SECTIONS["kpis"][1 if en else 0]
    names_ = [k["name"] for k in runs[0]["kpis"]] if runs else []
    for name in names_:
        label = KPI_LABELS.get(name, (name, name))[1 if en else 0]
        values = [next((k.get("ratio") for k in r["kpis"] if k["name"] == name), None) for r in runs]
        out.append(_row(section, label, values, "share", "higher", lang))
    section = SECTIONS["peaks"][1 if en else 0]
    for key, zh, eng, kind, better in PEAKS:
        out.append(_row(section, eng if en else zh, [_get(r["peaks"], key) for r in runs], kind, better, lang))
    return out


def columns(comparison: dict, lang: str = "zh") -> list[str]:
    return [r["label"]["en" if lang == "en" else "zh"] for r in comparison["runs"]]


def title_lines(comparison: dict, lang: str = "zh") -> list[str]:
    line = (f"{_t('scenario', lang)}: {comparison['scenario']}　{_t('seed', lang)}: {comparison['seed']}　"
            f"{_t('scale', lang)}: {comparison['scale']:g}　{_t('start', lang)}: {comparison['start']}")
    if comparison.get("people"):
        line += f"　people: {comparison['people']:,}"
    lines = [line, _t("note", lang)]
    missing = [r for r in comparison["runs"] if r.get("intervals") is None]
    if missing:
        lines.append(f"{_t('no_intervals', lang)}: {missing[0].get('intervals_note') or ''}")
    return lines


def as_json(comparison: dict, lang: str = "zh") -> dict:
    """The table for the command screen: columns, then rows of cells (text, delta, better)."""
    return {"title": _t("title", lang), "subtitle": title_lines(comparison, lang), "columns": columns(comparison, lang),
            "figure": _t("figure", lang),
            "rows": [{"section": r.section, "label": r.label,
                      "cells": [{"text": c.text, "delta": c.delta, "better": c.better} for c in r.cells]}
                     for r in rows(comparison, lang)]}


# --- terminal -------------------------------------------------------------------------------


def render(comparison: dict, lang: str = "zh"):
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=_t("title", lang), title_justify="left", caption="\n".join(title_lines(comparison, lang)),
                  caption_justify="left")
    table.add_column(_t("figure", lang))
    for name in columns(comparison, lang):
        table.add_column(name, justify="right")
    current = None
    for row in rows(comparison, lang):
        if row.section != current:
            current = row.section
            table.add_row(Text(current, style="bold cyan"), *([""] * len(row.cells)))
        cells = []
        for cell in row.cells:
            text = Text(cell.text)
            if cell.delta is not None:
                style = "green" if cell.better else ("red" if cell.better is False else "dim")
                text.append(f" ({cell.delta})", style=style)
            cells.append(text)
        table.add_row(row.label, *cells)
    walls = [f"{r['label']['en' if lang == 'en' else 'zh']} {r['wall_seconds']:.0f}" for r in comparison["runs"]]
    return Group(table, Text(f"{_t('wall', lang)}: " + ", ".join(walls), style="dim"))


def plain_text(comparison: dict, lang: str = "zh", width: int = 200) -> str:
    """The rich table as plain text (docs, the closing note)."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(render(comparison, lang))
    return console.export_text()


# --- the brief: XLSX and PDF ---------------------------------------------------------------------


def _cell_text(cell: Cell) -> str:
    return cell.text if cell.delta is None else f"{cell.text} ({cell.delta})"


def to_xlsx(comparison: dict, lang: str = "zh") -> bytes:
    from dashboard.domain.rules import neutralise
    from openpyxl import Workbook
    from openpyxl.styles import Font, PatternFill

    wb = Workbook()
    ws = wb.active
    ws.title = "推演对比" if lang != "en" else "What-if"
    ws.append([_t("title", lang)])
    ws["A1"].font = Font(bold=True, size=14)
    for line in title_lines(comparison, lang):
        ws.append([neutralise(line)])
    ws.append([])
    ws.append([_t("section", lang), _t("figure", lang), *[neutralise(c) for c in columns(comparison, lang)]])
    for cell in ws[ws.max_row]:
        cell.font = Font(bold=True)
    green, red = PatternFill("solid", fgColor="DDF4E4"), PatternFill("solid", fgColor="FBE0E0")
    for row in rows(comparison, lang):
        ws.append([row.section, row.label, *[_cell_text(c) for c in row.cells]])
        for k, cell in enumerate(row.cells):
            if cell.better is not None:
                ws.cell(row=ws.max_row, column=3 + k).fill = green if cell.better else red
    ws.column_dimensions["A"].width = 28
    ws.column_dimensions["B"].width = 34
    for k in range(len(comparison["runs"])):
        ws.column_dimensions[chr(ord("C") + k)].width = 24
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def to_pdf(comparison: dict, lang: str = "zh") -> bytes:
    """The dashboard's PDF stack (reportlab, its CJK font lookup and registration), this table's layout."""
    from dashboard.config import Settings as DashboardSettings
    from dashboard.reports import cjk_font
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    font = cjk_font(list(DashboardSettings.model_fields["cjk_font_paths"].default))
    title_style = ParagraphStyle("title", fontName=font, fontSize=16, leading=22, spaceAfter=4)
    body = ParagraphStyle("body", fontName=font, fontSize=8, leading=10)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=landscape(A4), leftMargin=12 * mm, rightMargin=12 * mm,
                            topMargin=12 * mm, bottomMargin=12 * mm, title=_t("title", lang), author="Fangkong")
    story = [Paragraph(_t("title", lang), title_style)]
    story += [Paragraph(_escape(line), body) for line in title_lines(comparison, lang)]
    story.append(Spacer(1, 3 * mm))
    header = [_t("figure", lang), *columns(comparison, lang)]
    data = [[Paragraph(_escape(h), body) for h in header]]
    style = [("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
             ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef7")),
             ("VALIGN", (0, 0), (-1, -1), "MIDDLE")]
    current = None
    for row in rows(comparison, lang):
        if row.section != current:
            current = row.section
            data.append([Paragraph(f"<b>{_escape(current)}</b>", body)] + [""] * len(row.cells))
            style.append(("SPAN", (0, len(data) - 1), (-1, len(data) - 1)))
            style.append(("BACKGROUND", (0, len(data) - 1), (-1, len(data) - 1), colors.HexColor("#f4f6fa")))
        data.append([Paragraph(_escape(row.label), body), *[Paragraph(_escape(_cell_text(c)), body)
                                                           for c in row.cells]])
        for k, cell in enumerate(row.cells):
            if cell.better is not None:
                style.append(("BACKGROUND", (1 + k, len(data) - 1), (1 + k, len(data) - 1),
                              colors.HexColor("#ddf4e4" if cell.better else "#fbe0e0")))
    usable = landscape(A4)[0] - 24 * mm
    first = usable * 0.26
    rest = (usable - first) / max(1, len(header) - 1)
    table = Table(data, repeatRows=1, hAlign="LEFT", colWidths=[first] + [rest] * (len(header) - 1))
    table.setStyle(TableStyle(style))
    story.append(table)
    doc.build(story)
    return buffer.getvalue()


def _escape(value) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def save_brief(comparison: dict, path, lang: str = "zh") -> None:
    """``--brief out.xlsx|out.pdf``: by the file's suffix."""
    from pathlib import Path

    path = Path(path)
    suffix = path.suffix.lower()
    data = to_xlsx(comparison, lang) if suffix == ".xlsx" else to_pdf(comparison, lang)
    path.write_bytes(data)
