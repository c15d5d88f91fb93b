"""The state stores of the projection: rows loaded for a batch, what it changed, and how they
are written back."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.db import one_of

IN_CHUNK = 2000
WRITE_CHUNK = 500

CounterKey = tuple[str, str, date, str]  # metric, region_code, day, dimension


async def load(session: AsyncSession, model, column: str, values: Iterable[Any], lock: bool = False) -> list[dict]:
    """Rows whose ``column`` is in ``values``. With ``lock`` (state rows this batch may change) they are
    locked FOR UPDATE on PostgreSQL, in primary-key order: two replicas holding events of the same
    person then take turns instead of losing each other's update (SQLite has one writer anyway)."""
    values = sorted(set(values))
    rows: list[dict] = []
    table = model.__table__
    col = table.c[column]
    for start in range(0, len(values), IN_CHUNK):
        chunk = values[start:start + IN_CHUNK]
        query = select(table).where(one_of(session, col, chunk))
        if lock and session.get_bind().dialect.name == "postgresql":
            query = query.order_by(*table.primary_key.columns).with_for_update()
        result = await session.execute(query)
        rows.extend(dict(row) for row in result.mappings())
    return rows


@dataclass
class Table:
    """Rows of one state table loaded for a batch, and what the batch did to them."""
    model: Any
    rows: dict[Any, dict] = field(default_factory=dict)
    new: set = field(default_factory=set)
    dirty: set = field(default_factory=set)

    def get(self, key):
        return self.rows.get(key)

    def create(self, key, row: dict) -> dict:
        self.rows[key] = row
        self.new.add(key)
        return row

    def set(self, key, **values) -> None:
        self.rows[key].update(values)
        if key not in self.new:
            self.dirty.add(key)

    async def write(self, session: AsyncSession) -> None:
        new_rows = [self.rows[k] for k in sorted(self.new, key=str)]
        for start in range(0, len(new_rows), WRITE_CHUNK):
            await session.execute(self.model.__table__.insert(), new_rows[start:start + WRITE_CHUNK])
        changed = [self.rows[k] for k in sorted(self.dirty, key=str)]
        if changed:
            # One Core executemany UPDATE … WHERE <primary key> (bind names apart from column names).
            table = self.model.__table__
            keys = [c.name for c in table.primary_key.columns]
            others = [c.name for c in table.columns if c.name not in keys]
            stmt = (update(table).where(*(table.c[k] == bindparam(f"k_{k}") for k in keys))
                    .values({o: bindparam(f"v_{o}") for o in others}))
            await session.execute(stmt, [{**{f"k_{k}": row[k] for k in keys}, **{f"v_{o}": row[o] for o in others}}
                                         for row in changed])


@dataclass
class Outcome:
    """What a batch changed: summed counter deltas, and the deltas each event caused."""
    deltas: dict[CounterKey, int] = field(default_factory=lambda: defaultdict(int))
    by_event: dict[str, list[CounterKey]] = field(default_factory=lambda: defaultdict(list))
    sites: list[dict] = field(default_factory=list)

    def nonzero(self) -> dict[CounterKey, int]:
        return {k: v for k, v in self.deltas.items() if v}
