"""What an event is about: the fact it counts once, its region, an admission's dimension."""

from __future__ import annotations

from typing import Any

from dashboard.domain.rules import TREATMENT_SITES
from fangkong_common.events import schemas as ev
from fangkong_common.events.envelope import Envelope


def admission_dim(first_kind: str | None, site_kind: str) -> str:
    """'<stage kind>/<place>' of a person admitted to a site."""
    if first_kind in ("centralized", "hospital"):
        kind = first_kind
    else:
        kind = "hospital" if site_kind in TREATMENT_SITES else "centralized"
    return f"{kind}/{site_kind}"


def once_key(envelope: Envelope, p: Any) -> str | None:
    """The identity of a fact counted once, whatever event id carries it."""
    if isinstance(p, ev.PersonRiskFlagged):
        return f"risk:{p.person_key}:{p.risk_area_id}"
    if isinstance(p, ev.ContactIdentified):
        return f"contact:{p.person_key}:{p.case_person_key or p.source_person_key}"
    if isinstance(p, ev.CheckpointFever):
        return f"fever:{p.checkpoint_id}:{p.observed_at.isoformat()}:{p.person_key or ''}"
    if isinstance(p, ev.VaccinationRecorded):
        return f"vacc:{p.person_key}:{p.dose_number}"
    if isinstance(p, ev.GatheringFiled):
        return f"gathering:{p.gathering_id}"
    if isinstance(p, ev.QuarantineAdmitted):
        return f"adm:{p.person_key}:{p.site_id}:{p.admitted_at.isoformat()}"
    if isinstance(p, ev.TestPoolPositive):
        return f"pool:{p.barcode}"
    if isinstance(p, ev.TestingCapacityAlert):
        # An alert has no id of its own: the same alert re-sent keeps its time.
        return f"alert:{p.region_code}:{p.lab_id or ''}:{p.kind}:{envelope.occurred_at.isoformat()}"
    return None


def event_region(p: Any) -> str | None:
    return getattr(p, "origin_region_code", None) or getattr(p, "region_code", None)
