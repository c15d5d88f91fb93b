"""The projection: a batch of new events (already claimed in the inbox, in the
same transaction) becomes counter changes.

Per batch: load the state rows the events touch (a few SELECT … IN), apply the
events to them in Python, write new and changed rows back with executemany, then
upsert the summed counter changes in one statement per 500 rows. Derived states
(a returnee under management, a due test taken, a positive admitted) are
recomputed from the person's facts, so the numbers do not depend on the order
the topics arrive in, and a repeated fact changes nothing.

Split along its seams: ``store`` (state rows loaded for a batch, what it changed, writing them
back), ``events`` (once keys, regions, admission dimensions), ``projector`` (the projection per
event family, the derived states, ``apply_batch``), ``counters`` (counter and total upserts) and
``deliveries`` (webhook deliveries). Everything is re-exported here, so
``from dashboard.readmodel import …`` and ``readmodel.<name>`` work as before.
"""

from __future__ import annotations

from dashboard.readmodel.counters import upsert_counters
from dashboard.readmodel.deliveries import webhook_deliveries
from dashboard.readmodel.events import admission_dim, event_region, once_key
from dashboard.readmodel.projector import ADMISSION_BEFORE_RESULT, MANAGING_FACTS, Projector, apply_batch
from dashboard.readmodel.store import IN_CHUNK, WRITE_CHUNK, CounterKey, Outcome, Table, load

__all__ = [
    "ADMISSION_BEFORE_RESULT", "IN_CHUNK", "MANAGING_FACTS", "WRITE_CHUNK", "CounterKey", "Outcome", "Projector",
    "Table", "admission_dim", "apply_batch", "event_region", "load", "once_key", "upsert_counters",
    "webhook_deliveries",
]
