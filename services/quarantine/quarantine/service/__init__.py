"""Use cases of the quarantine service: the only package that writes the outbox.

Every function runs inside the caller's transaction (a request session, or a
consumer's session with its inbox rows) and takes ``now`` from the caller, so
a replayed event plans the same dates. One module per part; this one names
what the API, the consumers and the benchmark use.
"""

from __future__ import annotations

from quarantine.service.cases import admit_positive, classify_case, discharge_case, record_negatives
from quarantine.service.checkins import record_checkin
from quarantine.service.common import PACKAGED, Unprocessable, stage_from_json, stage_json
from quarantine.service.daily import DailyReport, run_daily
from quarantine.service.orders import OrderRequest, get_order, open_orders
from quarantine.service.policies import apply_policy, policy_book, publish_policy
from quarantine.service.sites import create_site
from quarantine.service.transfers import advance_transfer, create_transfer

__all__ = [
    "PACKAGED", "DailyReport", "OrderRequest", "Unprocessable", "admit_positive", "advance_transfer", "apply_policy",
    "classify_case", "create_site", "create_transfer", "discharge_case", "get_order", "open_orders", "policy_book",
    "publish_policy", "record_checkin", "record_negatives", "run_daily", "stage_from_json", "stage_json",
]
