"""Use cases of the testing service: the only place that writes the outbox.

One module per seam: ``sites`` (collection sites and labs), ``tubes`` (swabbed tubes),
``results`` (lab results), ``orders`` (test orders) and ``capacity`` (plan, forecast,
alerts), with the helpers they share in ``common``. Everything is re-exported here, so
``from testing import service`` and ``service.<name>`` work as before.
"""

from __future__ import annotations

from testing.service.capacity import build_plan, forecast, observed_positivity, plan_response
from testing.service.common import (
    CHUNK,
    SOURCE,
    BatchRejected,
    aware,
    chunk_size,
    chunks,
    err,
    insert_ignore,
    lock_for_writes,
    utc_now,
)
from testing.service.orders import apply_test_due, list_orders
from testing.service.results import ingest_results, order_row
from testing.service.sites import create_lab, create_site, list_labs, list_sites, require_scope, update_lab
from testing.service.tubes import _KeyMaker, ingest_tubes, resolve_member

__all__ = [
    "CHUNK", "SOURCE", "BatchRejected", "_KeyMaker", "apply_test_due", "aware", "build_plan", "chunk_size",
    "chunks", "create_lab", "create_site", "err", "forecast", "ingest_results", "ingest_tubes", "insert_ignore",
    "list_labs", "list_orders", "list_sites", "lock_for_writes", "observed_positivity", "order_row", "plan_response",
    "require_scope", "resolve_member", "update_lab", "utc_now",
]
