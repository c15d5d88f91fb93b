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

from bisect import bisect_left
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


class Tally:
    """What ended in a period, and what was still open at its ``as_of``."""

    def __init__(self, as_of: datetime) -> None:
        self.as_of = as_of
        self.done: dict[str, list[float]] = defaultdict(list)
        self.by_category: dict[str, list[float]] = defaultdict(list)
        self.open_n: dict[str, int] = defaultdict(int)
        self.open_since: dict[str, datetime] = {}
        self.open_by_category: dict[str, int] = defaultdict(int)

    def ended(self, kind: str, category: str, seconds: float) -> None:
        self.done[kind].append(seconds)
        if kind == REGISTERED_TO_FIRST_TEST:
            self.by_category[category].append(seconds)

    def waiting(self, kind: str, category: str, start: datetime) -> None:
        self.open_n[kind] += 1
        if kind not in self.open_since or start < self.open_since[kind]:
            self.open_since[kind] = start
        if kind == REGISTERED_TO_FIRST_TEST:
            self.open_by_category[category] += 1

    def oldest(self, kind: str) -> float | None:
        return (self.as_of - self.open_since[kind]).total_seconds() if kind in self.open_since else None

    def figures(self, categories: set[str]) -> dict:
        done, n = self.done, self.open_n
        bed = summary(done[RESULT_TO_BED]) | {"waiting": n[RESULT_TO_BED],
                                              "longest_wait_seconds": self.oldest(RESULT_TO_BED)}
        contacts = summary(done[CASE_TO_CONTACTS]) | {
            "share_within_24h": share(done[CASE_TO_CONTACTS], 24 * HOUR), "waiting": n[CASE_TO_CONTACTS]}
        tubes = summary(done[COLLECTION_TO_RESULT]) | {
            "share_within_12h": share(done[COLLECTION_TO_RESULT], 12 * HOUR),
            "share_within_24h": share(done[COLLECTION_TO_RESULT], 24 * HOUR),
            "waiting": n[COLLECTION_TO_RESULT]}
        classified = summary(done[POSITIVE_TO_CLASSIFIED]) | {
            "unclassified": n[POSITIVE_TO_CLASSIFIED],
            "oldest_unclassified_seconds": self.oldest(POSITIVE_TO_CLASSIFIED)}
        returnees = {c: summary(self.by_category[c]) | {"waiting": self.open_by_category[c]}
                     for c in sorted(categories | set(self.by_category))}
        return {RESULT_TO_BED: bed, CASE_TO_CONTACTS: contacts, COLLECTION_TO_RESULT: tubes,
                POSITIVE_TO_CLASSIFIED: classified, REGISTERED_TO_FIRST_TEST: {"by_category": returnees}}


def tally(rows: list[tuple], day_from: date, day_to: date, as_of: datetime) -> tuple[dict, list[dict]]:
    """The range's figures and each day's, in one pass over the rows (kind, category, start, end, end_day):
    an interval counts where it ended, and is waiting on each day whose end it spans."""
    days = [day_from + timedelta(days=i) for i in range((day_to - day_from).days + 1)]
    cutoffs = [min(as_of, day_end(d)) for d in days]
    whole, daily = Tally(as_of), [Tally(c) for c in cutoffs]
    first_registered: dict[str, datetime] = {}
    for kind, category, start, end, end_day in rows:
        if kind == REGISTERED_TO_FIRST_TEST and (category not in first_registered
                                                 or start < first_registered[category]):
            first_registered[category] = start
        if end is not None and end_day is not None and day_from <= end_day <= day_to:
            seconds = (end - start).total_seconds()
            whole.ended(kind, category, seconds)
            daily[(end_day - day_from).days].ended(kind, category, seconds)
        if start <= as_of and (end is None or end > as_of):
            whole.waiting(kind, category, start)
        # The days whose cut-off lies in [start, end): open at their end.
        lo = bisect_left(cutoffs, start)
        hi = len(cutoffs) if end is None else bisect_left(cutoffs, end)
        for i in range(lo, hi):
            daily[i].waiting(kind, category, start)

    def seen_by(moment: datetime) -> set[str]:
        return {c for c, first in first_registered.items() if first <= moment}

    return (whole.figures(seen_by(as_of)),
            [{"date": d.isoformat(), "as_of": _iso(c), "intervals": t.figures(seen_by(c))}
             for d, c, t in zip(days, cutoffs, daily, strict=True)])


def figures(rows: list[tuple], day_from: date, day_to: date, as_of: datetime) -> dict:
    """The intervals block for rows ended in [day_from, day_to], waiting as of ``as_of``."""
    return tally(rows, day_from, day_to, as_of)[0]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


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
    intervals, days = tally(rows, day_from, day_to, as_of)
    return {"region_code": region_code, "from": day_from.isoformat(), "to": day_to.isoformat(),
            "as_of": _iso(as_of), "alert_seconds": ALERT_SECONDS, "intervals": intervals, "days": days}
