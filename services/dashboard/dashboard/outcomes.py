"""Reads of the outcome intervals (issue 10, 四早): count, median, p90, max per interval, over a
range of days and per day, with what is still waiting.

Definitions (services/dashboard/README.md, "Outcome intervals"):

- an interval counts on the Beijing day its end happened (a bed taken on the 3rd counts on the 3rd,
  however long the wait);
- median and p90 are nearest-rank percentiles: sort the n durations, the p-th percentile is the
  one at rank ceil(p·n/100) (1-based) — always a duration that occurred, for an even n the median
  is the lower of the two middle ones; max is the longest; all in seconds; null when n = 0;
- "within 24 h" means at most 86,400 s;
- what is waiting (no bed yet, unclassified, tube without result ...) is counted as of ``as_of``:
  the end of the range's last day, or now if that is earlier; a day's figures are as of that
  day's end.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.domain.rules import CHINA_TZ
from dashboard.models import Interval
from dashboard.readmodel.outcomes import (
    CASE_TO_CONTACTS,
    COLLECTION_TO_RESULT,
    KINDS,
    POSITIVE_TO_CLASSIFIED,
    REGISTERED_TO_FIRST_TEST,
    RESULT_TO_BED,
)
from fangkong_common import clock
from fangkong_common.auth import within_region

HOUR = 3600.0
# The screen shows the oldest unclassified positive and the longest wait for a bed in red above this.
ALERT_SECONDS = 24 * HOUR


def percentile(ordered: list[float], p: int) -> float | None:
    """Nearest rank: the value at rank ceil(p·n/100) of the sorted values (integer arithmetic, so
    90 % of 10 is rank 9, not 10 by a float rounding)."""
    n = len(ordered)
    if n == 0:
        return None
    rank = max(1, (p * n + 99) // 100)
    return ordered[rank - 1]


def summary(durations: list[float]) -> dict:
    ordered = sorted(durations)
    return {"count": len(ordered), "median_seconds": percentile(ordered, 50), "p90_seconds": percentile(ordered, 90),
            "max_seconds": ordered[-1] if ordered else None}


def share(durations: list[float], limit: float) -> float | None:
    return sum(1 for d in durations if d <= limit) / len(durations) if durations else None


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def day_end(day: date) -> datetime:
    """Midnight (Beijing) after ``day``."""
    return datetime.combine(day + timedelta(days=1), time(0), CHINA_TZ).astimezone(UTC)


def figures(rows: list[tuple], day_from: date, day_to: date, as_of: datetime) -> dict:
    """The intervals block for rows (kind, category, start, end, end_day) ended in [day_from, day_to]."""
    done: dict[str, list[float]] = defaultdict(list)
    by_category: dict[str, list[float]] = defaultdict(list)
    open_: dict[str, list[datetime]] = defaultdict(list)
    open_by_category: dict[str, int] = defaultdict(int)
    categories: set[str] = set()
    for kind, category, start, end, end_day in rows:
        if kind == REGISTERED_TO_FIRST_TEST and start <= as_of:
            categories.add(category)
        if end is not None and end_day is not None and day_from <= end_day <= day_to:
            seconds = (end - start).total_seconds()
            done[kind].append(seconds)
            if kind == REGISTERED_TO_FIRST_TEST:
                by_category[category].append(seconds)
        if start <= as_of and (end is None or end > as_of):
            open_[kind].append(start)
            if kind == REGISTERED_TO_FIRST_TEST:
                open_by_category[category] += 1

    def oldest(kind: str) -> float | None:
        return (as_of - min(open_[kind])).total_seconds() if open_[kind] else None

    bed = summary(done[RESULT_TO_BED]) | {"waiting": len(open_[RESULT_TO_BED]),
                                          "longest_wait_seconds": oldest(RESULT_TO_BED)}
    contacts = summary(done[CASE_TO_CONTACTS]) | {
        "share_within_24h": share(done[CASE_TO_CONTACTS], 24 * HOUR), "waiting": len(open_[CASE_TO_CONTACTS])}
    tubes = summary(done[COLLECTION_TO_RESULT]) | {
        "share_within_12h": share(done[COLLECTION_TO_RESULT], 12 * HOUR),
        "share_within_24h": share(done[COLLECTION_TO_RESULT], 24 * HOUR),
        "waiting": len(open_[COLLECTION_TO_RESULT])}
    classified = summary(done[POSITIVE_TO_CLASSIFIED]) | {
        "unclassified": len(open_[POSITIVE_TO_CLASSIFIED]),
        "oldest_unclassified_seconds": oldest(POSITIVE_TO_CLASSIFIED)}
    returnees = {c: summary(by_category[c]) | {"waiting": open_by_category[c]}
                 for c in sorted(categories | set(by_category))}
    return {RESULT_TO_BED: bed, CASE_TO_CONTACTS: contacts, COLLECTION_TO_RESULT: tubes,
            POSITIVE_TO_CLASSIFIED: classified, REGISTERED_TO_FIRST_TEST: {"by_category": returnees}}


async def outcomes(session: AsyncSession, region_code: str | None, day_from: date, day_to: date,
                   now: datetime | None = None) -> dict:
    now = (now or clock.now()).astimezone(UTC)
    as_of = min(now, day_end(day_to))
    range_start = day_end(day_from) - timedelta(days=1)
    region = true() if region_code is None else within_region(Interval.region_code, region_code)
    # Everything that ended in the range or was open at some point of it.
    query = (select(Interval.kind, Interval.category, Interval.start_at, Interval.end_at, Interval.end_day)
             .where(Interval.kind.in_(KINDS), region, Interval.start_at <= as_of,
                    or_(Interval.end_at.is_(None), Interval.end_at >= range_start)))
    rows = [(k, c, _aware(s), _aware(e), d) for k, c, s, e, d in (await session.execute(query)).all()]
    days = []
    day = day_from
    while day <= day_to:
        day_as_of = min(as_of, day_end(day))
        days.append({"date": day.isoformat(), "as_of": day_as_of.isoformat().replace("+00:00", "Z"),
                     "intervals": figures(rows, day, day, day_as_of)})
        day += timedelta(days=1)
    return {"region_code": region_code, "from": day_from.isoformat(), "to": day_to.isoformat(),
            "as_of": as_of.isoformat().replace("+00:00", "Z"), "alert_seconds": ALERT_SECONDS,
            "intervals": figures(rows, day_from, day_to, as_of), "days": days}
