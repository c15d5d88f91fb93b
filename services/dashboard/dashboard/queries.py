"""Reads of the read models: KPIs, time series, drill-down, sites, the daily summary.

Counters are stored per county or city code; a query for a region sums every
code under its prefix (an index range), so rolling up county → city → province
happens here, at query time.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta

from sqlalchemy import func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.domain.rules import KPIS, METRICS, SECTIONS, Kind, child_region, dimension_label, label, ratio
from dashboard.models import Counter, Site, Total
from fangkong_common.auth import within_region


def _region_filter(region_code: str | None, model=Counter):
    return true() if region_code is None else within_region(model.region_code, region_code)


async def _grouped(session: AsyncSession, model, columns: list, conditions: list) -> dict[tuple, int]:
    result = await session.execute(select(*columns, func.sum(model.value)).where(*conditions).group_by(*columns))
    return {tuple(row[:-1]): int(row[-1] or 0) for row in result}


async def sums(session: AsyncSession, region_code: str | None, metrics: list[str], day_from: date | None,
               day_to: date, by_dimension: bool = True) -> dict[tuple[str, str], int]:
    """{(metric, dimension): sum} over the region's codes and [day_from, day_to].

    With no start (a level, or a total to date) it is the running total minus the days
    after ``day_to``: a few rows per county instead of every day of the outbreak."""
    if day_from is None:
        out = await _to_date(session, region_code, metrics, day_to, [Total.metric, Total.dimension],
                             [Counter.metric, Counter.dimension])
    else:
        out = await _grouped(session, Counter, [Counter.metric, Counter.dimension],
                             [Counter.metric.in_(metrics), _region_filter(region_code),
                              Counter.day >= day_from, Counter.day <= day_to])
    if by_dimension:
        return out
    merged: dict[tuple[str, str], int] = defaultdict(int)
    for (metric, _dim), value in out.items():
        merged[(metric, "")] += value
    return dict(merged)


async def _to_date(session: AsyncSession, region_code: str | None, metrics: list[str], day_to: date,
                   total_columns: list, later_columns: list) -> dict[tuple, int]:
    totals = await _grouped(session, Total, total_columns,
                            [Total.metric.in_(metrics), _region_filter(region_code, Total)])
    later = await _grouped(session, Counter, later_columns,
                           [Counter.metric.in_(metrics), _region_filter(region_code), Counter.day > day_to])
    out = dict(totals)
    for key, value in later.items():
        out[key] = out.get(key, 0) - value
    return out


def _total(values: dict[tuple[str, str], int], metric: str, exclude: tuple[str, ...] = ()) -> int:
    return sum(v for (m, d), v in values.items() if m == metric and d not in exclude)


async def kpis(session: AsyncSession, region_code: str | None, day: date, lang: str = "zh") -> list[dict]:
    per_day_metrics = [m for k in KPIS if k.per_day for m in (k.numerator, k.denominator)]
    level_metrics = [m for k in KPIS if not k.per_day for m in (k.numerator, k.denominator)]
    daily = await sums(session, region_code, per_day_metrics, day, day)
    levels = await sums(session, region_code, level_metrics, None, day)
    out = []
    for k in KPIS:
        values = daily if k.per_day else levels
        numerator = _total(values, k.numerator, k.exclude_dimensions)
        denominator = _total(values, k.denominator, k.exclude_dimensions)
        out.append({"name": k.name, "label": k.en if lang == "en" else k.zh,
                    "numerator": numerator, "denominator": denominator, "ratio": ratio(numerator, denominator),
                    "numerator_label": label(k.numerator, lang), "denominator_label": label(k.denominator, lang),
                    "scope": "day" if k.per_day else "to_date"})
    return out


async def headline(session: AsyncSession, region_code: str | None, day: date) -> dict[str, int]:
    """The figures the screen shows beside the KPIs (levels on ``day``)."""
    names = ["unclassified", "tube_backlog", "in_quarantine", "positives", "returnees", "contacts"]
    levels = await sums(session, region_code, names, None, day, by_dimension=False)
    return {name: levels.get((name, ""), 0) for name in names}


async def series(session: AsyncSession, region_code: str | None, day_from: date, day_to: date,
                 names: list[str], lang: str = "zh") -> list[dict]:
    """Per day: a flow's value that day; a stock's level at the end of that day."""
    days = [day_from + timedelta(days=i) for i in range((day_to - day_from).days + 1)]
    per_day: dict[str, dict[date, int]] = defaultdict(dict)
    for (metric, day), value in (await _grouped(session, Counter, [Counter.metric, Counter.day], [
            Counter.metric.in_(names), _region_filter(region_code), Counter.day >= day_from])).items():
        per_day[metric][day] = value
    stocks = [n for n in names if METRICS[n].kind is Kind.stock]
    totals = await _grouped(session, Total, [Total.metric], [Total.metric.in_(stocks),
                                                             _region_filter(region_code, Total)]) if stocks else {}
    flows = [n for n in names if METRICS[n].kind is Kind.flow]
    # Breakdowns by dimension: flows over the window, stocks at its end (two queries for all metrics).
    flow_dims = await sums(session, region_code, flows, day_from, day_to) if flows else {}
    stock_dims = await sums(session, region_code, stocks, None, day_to) if stocks else {}
    out = []
    for name in names:
        metric = METRICS[name]
        values = per_day.get(name, {})
        points = []
        if metric.kind is Kind.stock:
            # The level before the window: the total minus every change from its first day on.
            level = totals.get((name,), 0) - sum(values.values())
            for d in days:
                level += values.get(d, 0)
                points.append({"date": d.isoformat(), "value": level})
        else:
            points = [{"date": d.isoformat(), "value": values.get(d, 0)} for d in days]
        breakdown = stock_dims if metric.kind is Kind.stock else flow_dims
        out.append({"name": name, "kind": metric.kind.value, "label": label(name, lang), "points": points,
                    "by_dimension": [{"dimension": dim, "label": dimension_label(dim, lang), "value": v}
                                     for (m, dim), v in sorted(breakdown.items()) if m == name and dim]})
    return out


async def summary(session: AsyncSession, region_code: str | None, day: date, lang: str = "zh") -> list[dict]:
    """Every metric for the daily report: today's value, and the total (flows) or level (stocks) to date."""
    names = list(METRICS)
    today = await sums(session, region_code, names, day, day)
    to_date = await sums(session, region_code, names, None, day)
    sections: dict[str, list[dict]] = defaultdict(list)
    for name, metric in METRICS.items():
        dims = sorted({d for (m, d) in to_date if m == name and d})
        row = {"metric": name, "label": label(name, lang), "kind": metric.kind.value,
               "today": _total(today, name), "to_date": _total(to_date, name),
               "by_dimension": [{"dimension": d, "label": dimension_label(d, lang),
                                 "today": today.get((name, d), 0), "to_date": to_date.get((name, d), 0)}
                                for d in dims]}
        sections[metric.section].append(row)
    return [{"section": s, "title": label(s, lang), "rows": rows} for s, rows in sections.items()]


async def drilldown(session: AsyncSession, region_code: str | None, day: date, lang: str = "zh") -> list[dict]:
    """The next level down (country → provinces → cities → counties) with key figures."""
    names = ["positives", "unclassified", "in_quarantine", "tube_backlog", "returnees", "cases"]
    values = await _to_date(session, region_code, names, day, [Total.region_code, Total.metric],
                            [Counter.region_code, Counter.metric])
    children: dict[str, dict[str, int]] = defaultdict(lambda: {n: 0 for n in names})
    for (code, metric), value in values.items():
        child = child_region(code, region_code)
        if child is not None:
            children[child][metric] += value
    return [{"region_code": code, **values} for code, values in sorted(children.items())]


async def sites(session: AsyncSession, region_code: str | None) -> list[dict]:
    query = select(Site).order_by(Site.region_code, Site.site_id)
    if region_code:
        query = query.where(within_region(Site.region_code, region_code))
    rows = (await session.execute(query)).scalars().all()
    return [{"site_id": s.site_id, "region_code": s.region_code, "site_kind": s.site_kind,
             "beds_total": s.beds_total, "beds_free": s.beds_free, "occupied": s.beds_total - s.beds_free,
             "occupancy": ratio(s.beds_total - s.beds_free, s.beds_total),
             "as_of": s.as_of.isoformat()} for s in rows]


def section_title(name: str, lang: str) -> str:
    zh, en = SECTIONS.get(name, (name, name))
    return en if lang == "en" else zh
