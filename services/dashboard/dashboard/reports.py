"""The daily report (日报) as JSON, XLSX and PDF, and CSV/XLSX exports of the screen's tables.

Counts only: nothing here can carry a person. Text cells a spreadsheet would
evaluate (= + - @) are neutralised.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard import outcomes, queries, service
from dashboard.domain.rules import CHINA_TZ, METRICS, neutralise
from fangkong_common import clock

TEXT = {
    "title": ("疫情防控日报", "Epidemic prevention daily report"),
    "region": ("地区", "Region"),
    "all": ("全国", "Whole country"),
    "date": ("日期", "Date"),
    "generated": ("生成时间", "Generated"),
    "kpis": ("四应四尽", "The four coverages"),
    "kpi": ("指标", "KPI"),
    "numerator": ("分子", "Numerator"),
    "denominator": ("分母", "Denominator"),
    "ratio": ("比率", "Ratio"),
    "metric": ("项目", "Item"),
    "today": ("当日", "Today"),
    "to_date": ("累计/现有", "Total / current"),
    "sites": ("隔离点/医院床位", "Sites and beds"),
    "site": ("场所", "Site"),
    "kind": ("类型", "Kind"),
    "beds_total": ("床位", "Beds"),
    "occupied": ("占用", "Occupied"),
    "beds_free": ("空余", "Free"),
    "units": ("日报/零报告报送", "Daily and zero reports"),
    "registered": ("应报单位", "Units"),
    "reported_on_time": ("按时报送", "On time"),
    "zero_reports": ("零报告", "Zero reports"),
    "missing": ("未报送", "Missing"),
    "late": ("迟报", "Late"),
    "rectifications": ("整改台账", "Rectifications"),
    "open": ("未完成", "Open"),
    "overdue": ("已逾期", "Overdue"),
    "outcomes": ("四早时效（当日完成的环节；等待数截至当日末）", "Four earlies: intervals finished this day (waiting as of its end)"),
    "interval": ("环节", "Interval"),
    "count": ("完成数", "Done"),
    "median_h": ("中位数（小时）", "Median (h)"),
    "p90_h": ("P90（小时）", "P90 (h)"),
    "max_h": ("最长（小时）", "Max (h)"),
    "notes": ("其他", "Other"),
    "result_to_bed": ("阳性结果 → 入院床位", "Positive result → hospital bed"),
    "case_to_contacts_ordered": ("阳性 → 密接落实隔离", "Positive → contacts under order"),
    "collection_to_result": ("采样 → 出结果", "Swab → result"),
    "positive_to_classified": ("阳性 → 分类", "Positive → classified"),
    "registered_to_first_test": ("返回登记 → 首次核酸", "Returnee registered → first test"),
    "waiting": ("等待", "waiting"),
    "longest_wait": ("最久待床", "longest wait"),
    "unclassified": ("未分类", "unclassified"),
    "oldest_unclassified": ("最久未分类", "oldest unclassified"),
    "within": ("小时内", "h or less"),
}


def t(key: str, lang: str) -> str:
    zh, en = TEXT[key]
    return en if lang == "en" else zh


def pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


async def daily(session: AsyncSession, region_code: str | None, day: date, lang: str, cutoff_hour: int) -> dict:
    rect = await service.list_rectifications(session, region_code, None, None)
    units = await service.missing_reports(session, region_code, day, cutoff_hour)
    return {
        "title": t("title", lang), "region_code": region_code, "date": day.isoformat(), "lang": lang,
        "generated_at": clock.now().astimezone(CHINA_TZ).isoformat(timespec="seconds"),
        "kpis": await queries.kpis(session, region_code, day, lang),
        "sections": await queries.summary(session, region_code, day, lang),
        "sites": await queries.sites(session, region_code),
        "unit_reports": {k: units[k] if isinstance(units[k], int) else len(units[k])
                         for k in ("registered", "reported_on_time", "zero_reports", "missing", "late")},
        "missing_units": units["missing"],
        "rectifications": {"open": sum(1 for r in rect if r["status"] != "done"),
                           "overdue": sum(1 for r in rect if r["overdue"])},
        "outcomes": {k: v for k, v in (await outcomes.outcomes(session, region_code, day, day)).items()
                     if k in ("as_of", "intervals")},
    }


def _region_label(report: dict, lang: str) -> str:
    return report["region_code"] or t("all", lang)


def report_tables(report: dict) -> list[tuple[str, list[str], list[list]]]:
    """The report as titled tables (header, rows): the one layout XLSX and PDF share."""
    lang = report["lang"]
    tables = [(t("kpis", lang), [t("kpi", lang), t("numerator", lang), t("denominator", lang), t("ratio", lang)],
               [[k["label"], k["numerator"], k["denominator"], pct(k["ratio"])] for k in report["kpis"]])]
    for section in report["sections"]:
        rows = []
        for row in section["rows"]:
            rows.append([row["label"], row["today"], row["to_date"]])
            for dim in row["by_dimension"]:
                rows.append([f"  · {dim['label']}", dim["today"], dim["to_date"]])
        tables.append((section["title"], [t("metric", lang), t("today", lang), t("to_date", lang)], rows))
    tables.append((t("sites", lang), [t("site", lang), t("region", lang), t("kind", lang), t("beds_total", lang),
                                      t("occupied", lang), t("beds_free", lang)],
                   [[s["site_id"], s["region_code"], s["site_kind"], s["beds_total"], s["occupied"], s["beds_free"]]
                    for s in report["sites"]]))
    u = report["unit_reports"]
    tables.append((t("units", lang), [t("registered", lang), t("reported_on_time", lang), t("zero_reports", lang),
                                      t("missing", lang), t("late", lang)],
                   [[u["registered"], u["reported_on_time"], u["zero_reports"], u["missing"], u["late"]]]))
    r = report["rectifications"]
    tables.append((t("rectifications", lang), [t("open", lang), t("overdue", lang)], [[r["open"], r["overdue"]]]))
    if "outcomes" in report:
        tables.append((t("outcomes", lang), [t(k, lang) for k in ("interval", "count", "median_h", "p90_h", "max_h",
                                                                   "notes")],
                       outcome_rows(report["outcomes"]["intervals"], lang)))
    return tables


def hours(seconds: float | None) -> float | str:
    return "—" if seconds is None else round(seconds / 3600, 2)


def outcome_rows(intervals: dict, lang: str) -> list[list]:
    """The 四早 intervals as report rows: one per interval, one per returnee category."""
    def within(x: dict, h: int) -> str:
        return f"≤{h}{t('within', lang)} {pct(x[f'share_within_{h}h'])}"

    notes = {
        "result_to_bed": lambda x: f"{t('waiting', lang)} {x['waiting']}, {t('longest_wait', lang)} "
                                   f"{hours(x['longest_wait_seconds'])}",
        "case_to_contacts_ordered": lambda x: f"{within(x, 24)}, {t('waiting', lang)} {x['waiting']}",
        "collection_to_result": lambda x: f"{within(x, 12)}, {within(x, 24)}, {t('waiting', lang)} {x['waiting']}",
        "positive_to_classified": lambda x: f"{t('unclassified', lang)} {x['unclassified']}, "
                                            f"{t('oldest_unclassified', lang)} {hours(x['oldest_unclassified_seconds'])}",
    }
    rows = [[t(k, lang), intervals[k]["count"], hours(intervals[k]["median_seconds"]), hours(intervals[k]["p90_seconds"]),
             hours(intervals[k]["max_seconds"]), note(intervals[k])] for k, note in notes.items()]
    for category, x in intervals["registered_to_first_test"]["by_category"].items():
        rows.append([f"{t('registered_to_first_test', lang)} · {category}", x["count"], hours(x["median_seconds"]),
                     hours(x["p90_seconds"]), hours(x["max_seconds"]), f"{t('waiting', lang)} {x['waiting']}"])
    return rows


def to_xlsx(report: dict) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    lang = report["lang"]
    wb = Workbook()
    ws = wb.active
    ws.title = "日报" if lang != "en" else "Daily report"
    ws.append([report["title"]])
    ws["A1"].font = Font(bold=True, size=14)
    ws.append([t("region", lang), neutralise(_region_label(report, lang)), t("date", lang), report["date"]])
    ws.append([t("generated", lang), report["generated_at"]])
    for title, header, rows in report_tables(report):
        ws.append([])
        ws.append([neutralise(title)])
        ws.cell(row=ws.max_row, column=1).font = Font(bold=True)
        ws.append([neutralise(h) for h in header])
        for row in rows:
            ws.append([neutralise(v) for v in row])
    ws.column_dimensions["A"].width = 32
    return _save(wb)


def _save(wb) -> bytes:
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


class FontMissing(RuntimeError):
    pass


_registered: dict[str, str] = {}


def cjk_font(paths: list[Path]) -> str:
    """Register the first TrueType CJK font found with reportlab; its name."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    for path in paths:
        if path.exists():
            key = str(path)
            if key not in _registered:
                name = "CJK-" + path.stem
                pdfmetrics.registerFont(TTFont(name, key, subfontIndex=0))
                _registered[key] = name
            return _registered[key]
    raise FontMissing("no TrueType CJK font found (looked at " + ", ".join(map(str, paths))
                      + "); install Debian's fonts-wqy-microhei")


def to_pdf(report: dict, font_paths: list[Path]) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    font = cjk_font(font_paths)
    lang = report["lang"]
    title_style = ParagraphStyle("title", fontName=font, fontSize=16, leading=22, spaceAfter=4)
    heading = ParagraphStyle("heading", fontName=font, fontSize=11, leading=15, spaceBefore=6, spaceAfter=3)
    body = ParagraphStyle("body", fontName=font, fontSize=9, leading=12)
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=15 * mm, title=report["title"], author="Fangkong")
    story = [Paragraph(report["title"], title_style),
             Paragraph(f"{t('region', lang)}: {_region_label(report, lang)}　{t('date', lang)}: {report['date']}　"
                       f"{t('generated', lang)}: {report['generated_at']}", body),
             Spacer(1, 4 * mm)]
    for title, header, rows in report_tables(report):
        story.append(Paragraph(title, heading))
        data = [[Paragraph(str(h), body) for h in header]] + [[Paragraph(_escape(v), body) for v in row]
                                                              for row in rows]
        table = Table(data, repeatRows=1, hAlign="LEFT")
        table.setStyle(TableStyle([
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef7")),
            ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ]))
        story.append(table)
    doc.build(story)
    return buffer.getvalue()


def _escape(value) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --- exports of the screen's tables ------------------------------------------------------


def to_csv(header: list[str], rows: list[list]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow([neutralise(v) for v in row])
    # A BOM so that Excel opens UTF-8 Chinese text correctly.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def table_to_xlsx(title: str, header: list[str], rows: list[list]) -> bytes:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = title[:31]
    ws.append([neutralise(h) for h in header])
    for row in rows:
        ws.append([neutralise(v) for v in row])
    return _save(wb)


EXPORT_TABLES = ("kpis", "metrics", "series", "regions", "sites", "vaccination", "missing_units", "rectifications",
                 "unit_reports", "outcomes")


async def export_table(session: AsyncSession, name: str, region_code: str | None, day: date, lang: str,
                       cutoff_hour: int) -> tuple[list[str], list[list]]:
    if name == "kpis":
        rows = await queries.kpis(session, region_code, day, lang)
        return (["name", "label", "numerator", "denominator", "ratio"],
                [[k["name"], k["label"], k["numerator"], k["denominator"], k["ratio"]] for k in rows])
    if name == "metrics":
        rows = []
        for section in await queries.summary(session, region_code, day, lang):
            for row in section["rows"]:
                rows.append([section["title"], row["metric"], row["label"], "", row["today"], row["to_date"]])
                for dim in row["by_dimension"]:
                    rows.append([section["title"], row["metric"], row["label"], dim["label"], dim["today"],
                                 dim["to_date"]])
        return ["section", "metric", "label", "dimension", "today", "to_date"], rows
    if name == "series":  # the screen's trend charts: 14 days up to the date, every metric
        series = await queries.series(session, region_code, day - timedelta(days=13), day, list(METRICS), lang)
        days = [p["date"] for p in series[0]["points"]]
        return (["metric", "label", "kind", *days],
                [[s["name"], s["label"], s["kind"], *[p["value"] for p in s["points"]]] for s in series])
    if name == "vaccination":
        rows = await service.vaccination_progress(session, region_code, day, lang)
        header = ["age_group", "label", "people", "doses", "target", "ratio", "deadline", "overdue"]
        return header, [[r[h] if r[h] is not None else "" for h in header] for r in rows]
    if name == "regions":
        rows = await queries.drilldown(session, region_code, day, lang)
        header = list(rows[0]) if rows else ["region_code"]
        return header, [[r[h] for h in header] for r in rows]
    if name == "sites":
        rows = await queries.sites(session, region_code)
        header = ["site_id", "region_code", "site_kind", "beds_total", "occupied", "beds_free", "occupancy", "as_of"]
        return header, [[r[h] for h in header] for r in rows]
    if name == "missing_units":
        result = await service.missing_reports(session, region_code, day, cutoff_hour)
        return (["unit_id", "name", "region_code", "kind", "state"],
                [[u["unit_id"], u["name"], u["region_code"], u["kind"], "missing"] for u in result["missing"]]
                + [[u["unit_id"], u["name"], u["region_code"], u["kind"], "late"] for u in result["late"]])
    if name == "unit_reports":
        rows = await service.reports_of_day(session, region_code, day)
        return (["unit_id", "date", "region_code", "zero", "late", "figures", "note", "submitted_at"],
                [[r["unit_id"], r["date"], r["region_code"], r["zero"], r["late"],
                  ";".join(f"{k}={v}" for k, v in r["figures"].items()), r["note"] or "", r["submitted_at"]]
                 for r in rows])
    if name == "outcomes":  # the screen's 四早 panel: 14 days up to the date, seconds
        out = await outcomes.outcomes(session, region_code, day - timedelta(days=13), day)
        header = ["interval", "category", "count", "median_seconds", "p90_seconds", "max_seconds", "waiting",
                  "longest_wait_seconds", "share_within_12h", "share_within_24h", "as_of"]
        rows = []
        for kind, x in out["intervals"].items():
            for category, y in (x["by_category"].items() if "by_category" in x else [("", x)]):
                waiting = y.get("waiting", y.get("unclassified"))
                longest = y.get("longest_wait_seconds", y.get("oldest_unclassified_seconds"))
                rows.append([kind, category, *[_blank(y.get(h)) for h in ("count", "median_seconds", "p90_seconds",
                                                                          "max_seconds")],
                             _blank(waiting), _blank(longest), _blank(y.get("share_within_12h")),
                             _blank(y.get("share_within_24h")), out["as_of"]])
        return header, rows
    if name == "rectifications":
        rows = await service.list_rectifications(session, region_code, None, None)
        header = ["id", "region_code", "unit_name", "finding", "owner", "deadline", "status", "overdue", "note"]
        return header, [[r[h] if r[h] is not None else "" for h in header] for r in rows]
    raise KeyError(name)


def _blank(value):
    return "" if value is None else value
