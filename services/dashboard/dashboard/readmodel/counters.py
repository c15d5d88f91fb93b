"""Counters: summed changes added to the per-day counters and the running totals."""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.models import Counter, Total
from dashboard.readmodel.store import CounterKey
from fangkong_common.db import dialect_insert


async def upsert_counters(session: AsyncSession, changes: dict[CounterKey, int]) -> None:
    """Add the changes to their counters (per day) and to the running totals (all days):
    INSERT … ON CONFLICT DO UPDATE value = value + excluded, as one executemany each, in
    primary-key order so concurrent consumers lock rows in the same order (no deadlock)."""
    rows = [{"metric": m, "region_code": r, "day": d, "dimension": dim, "value": n}
            for (m, r, d, dim), n in sorted(changes.items())]
    if not rows:
        return
    stmt = dialect_insert(session, Counter)
    stmt = stmt.on_conflict_do_update(index_elements=["metric", "region_code", "day", "dimension"],
                                      set_={"value": Counter.__table__.c.value + stmt.excluded.value})
    await session.execute(stmt, rows)
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for (m, r, _d, dim), n in changes.items():
        totals[(m, r, dim)] += n
    stmt = dialect_insert(session, Total)
    stmt = stmt.on_conflict_do_update(index_elements=["metric", "region_code", "dimension"],
                                      set_={"value": Total.__table__.c.value + stmt.excluded.value})
    await session.execute(stmt, [{"metric": m, "region_code": r, "dimension": dim, "value": n}
                                 for (m, r, dim), n in sorted(totals.items())])
