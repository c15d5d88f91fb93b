"""Use cases of what people file on the dashboard: reporting units and their daily
reports (日报/零报告), the rectification ledger (整改台账), webhooks. The read models
are written only by the consumer (the readmodel package). The dashboard emits no events."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dashboard.domain.rules import cutoff_moment, today_local
from dashboard.models import Delivery, Rectification, Unit, UnitReport, Webhook
from dashboard.schemas import RectificationIn, RectificationPatch, UnitIn, UnitReportIn, WebhookIn
from fangkong_common import clock
from fangkong_common.auth import Principal, require_region, within_region
from fangkong_common.db import dialect_insert
from fangkong_common.errors import Conflict, Invalid, NotFound

# Findings filed for a missed report get a stable id: filing twice changes nothing.
MISSED_REPORT_NAMESPACE = uuid.UUID("6f0c2c1e-3b1a-4c55-9d5e-2f7d1a9b0c11")


def in_region(column, region_code: str | None):
    if region_code is None:
        return column.is_not(None)
    return within_region(column, region_code)


def _now() -> datetime:
    return clock.now()


# --- units and daily reports ------------------------------------------------------


async def register_unit(session: AsyncSession, principal: Principal, body: UnitIn) -> dict:
    require_region(principal, body.region_code)
    if await session.get(Unit, body.unit_id) is not None:
        raise Conflict(f"unit {body.unit_id} is already registered")
    unit = Unit(unit_id=body.unit_id, name=body.name, region_code=body.region_code, kind=body.kind, created_at=_now())
    session.add(unit)
    await session.flush()
    return unit_dict(unit)


def unit_dict(unit: Unit) -> dict:
    return {"unit_id": unit.unit_id, "name": unit.name, "region_code": unit.region_code, "kind": unit.kind}


async def list_units(session: AsyncSession, region_code: str | None) -> list[dict]:
    rows = (await session.execute(select(Unit).where(in_region(Unit.region_code, region_code))
                                  .order_by(Unit.region_code, Unit.unit_id))).scalars().all()
    return [unit_dict(u) for u in rows]


async def file_report(session: AsyncSession, principal: Principal, body: UnitReportIn, cutoff_hour: int,
                      now: datetime | None = None) -> dict:
    now = now or _now()
    unit = await session.get(Unit, body.unit_id)
    if unit is None:
        raise NotFound(f"unit {body.unit_id} is not registered")
    require_region(principal, unit.region_code)
    if body.date > today_local(now):
        raise Invalid(["body", "date"], "a daily report cannot cover a future day")
    late = now > cutoff_moment(body.date, cutoff_hour)
    values = {"unit_id": unit.unit_id, "day": body.date, "region_code": unit.region_code, "zero": body.zero,
              "figures": json.dumps(body.figures, ensure_ascii=False, sort_keys=True), "note": body.note,
              "submitted_at": now, "submitted_by": principal.sub, "late": late}
    # A unit may correct its report of the day: the last one filed counts.
    stmt = dialect_insert(session, UnitReport).values(values)
    stmt = stmt.on_conflict_do_update(index_elements=["unit_id", "day"],
                                      set_={k: stmt.excluded[k] for k in values if k not in ("unit_id", "day")})
    await session.execute(stmt)
    return {"unit_id": unit.unit_id, "date": body.date.isoformat(), "zero": body.zero, "figures": body.figures,
            "note": body.note, "late": late, "submitted_at": now.isoformat()}


async def reports_of_day(session: AsyncSession, region_code: str | None, day: date) -> list[dict]:
    rows = (await session.execute(
        select(UnitReport).where(UnitReport.day == day, in_region(UnitReport.region_code, region_code))
        .order_by(UnitReport.unit_id))).scalars().all()
    return [{"unit_id": r.unit_id, "date": r.day.isoformat(), "region_code": r.region_code, "zero": r.zero,
             "figures": json.loads(r.figures), "note": r.note, "late": r.late,
             "submitted_at": _aware(r.submitted_at).isoformat()} for r in rows]


async def missing_reports(session: AsyncSession, region_code: str | None, day: date, cutoff_hour: int) -> dict:
    """Units of the region with no report for ``day`` filed by the cut-off (late ones are listed apart)."""
    cutoff = cutoff_moment(day, cutoff_hour)
    # A unit registered after the day's cut-off did not owe that day's report.
    units = (await session.execute(select(Unit).where(in_region(Unit.region_code, region_code),
                                                      Unit.created_at <= cutoff)
                                   .order_by(Unit.region_code, Unit.unit_id))).scalars().all()
    reports = {r.unit_id: r for r in (await session.execute(
        select(UnitReport).where(UnitReport.day == day, in_region(UnitReport.region_code, region_code))
    )).scalars()}
    missing, late = [], []
    for unit in units:
        report = reports.get(unit.unit_id)
        if report is None:
            missing.append(unit_dict(unit))
        elif _aware(report.submitted_at) > cutoff:
            late.append({**unit_dict(unit), "submitted_at": _aware(report.submitted_at).isoformat()})
    return {"date": day.isoformat(), "region_code": region_code, "cutoff": cutoff.isoformat(),
            "registered": len(units), "reported_on_time": len(units) - len(missing) - len(late),
            "zero_reports": sum(1 for r in reports.values() if r.zero),
            "missing": missing, "late": late}


async def file_missed_report_findings(session: AsyncSession, principal: Principal, region_code: str | None,
                                      day: date, cutoff_hour: int, deadline: date) -> list[dict]:
    """A unit that misses its report is itself a finding (零报告制度): one rectification per unit and day."""
    missing = (await missing_reports(session, region_code, day, cutoff_hour))["missing"]
    created = []
    for unit in missing:
        rid = str(uuid.uuid5(MISSED_REPORT_NAMESPACE, f"{unit['unit_id']}:{day.isoformat()}"))
        if await session.get(Rectification, rid) is not None:
            continue
        now = _now()
        row = Rectification(id=rid, region_code=unit["region_code"], unit_id=unit["unit_id"], unit_name=unit["name"],
                            finding=f"{day.isoformat()} 未按时报送日报/零报告 (daily report missing)",
                            owner=unit["name"], deadline=deadline, status="open", note=None,
                            created_by=principal.sub, created_at=now, updated_at=now, closed_at=None)
        session.add(row)
        created.append(row)
    await session.flush()
    return [rectification_dict(r) for r in created]


# --- rectifications ----------------------------------------------------------------


def rectification_dict(r: Rectification, today: date | None = None) -> dict:
    today = today or today_local()
    return {"id": r.id, "region_code": r.region_code, "unit_id": r.unit_id, "unit_name": r.unit_name,
            "finding": r.finding, "owner": r.owner, "deadline": r.deadline.isoformat(), "status": r.status,
            "note": r.note, "overdue": r.status != "done" and r.deadline < today,
            "created_by": r.created_by, "created_at": _aware(r.created_at).isoformat(),
            "updated_at": _aware(r.updated_at).isoformat(),
            "closed_at": _aware(r.closed_at).isoformat() if r.closed_at else None}


async def create_rectification(session: AsyncSession, principal: Principal, body: RectificationIn) -> dict:
    require_region(principal, body.region_code)
    unit_name = body.unit_name
    if body.unit_id is not None:
        unit = await session.get(Unit, body.unit_id)
        if unit is None:
            raise Invalid(["body", "unit_id"], f"unit {body.unit_id} is not registered")
        unit_name = unit_name or unit.name
    if not unit_name:
        raise Invalid(["body", "unit_name"], "name the unit (unit_name) or give a registered unit_id")
    now = _now()
    row = Rectification(id=str(uuid.uuid4()), region_code=body.region_code, unit_id=body.unit_id,
                        unit_name=unit_name, finding=body.finding, owner=body.owner, deadline=body.deadline,
                        status=body.status, note=body.note, created_by=principal.sub, created_at=now,
                        updated_at=now, closed_at=now if body.status == "done" else None)
    session.add(row)
    await session.flush()
    return rectification_dict(row)


async def list_rectifications(session: AsyncSession, region_code: str | None, status: str | None,
                              overdue: bool | None) -> list[dict]:
    query = select(Rectification).where(in_region(Rectification.region_code, region_code))
    if status:
        query = query.where(Rectification.status == status)
    rows = (await session.execute(query.order_by(Rectification.deadline, Rectification.id))).scalars().all()
    out = [rectification_dict(r) for r in rows]
    if overdue is not None:
        out = [r for r in out if r["overdue"] == overdue]
    return out


async def update_rectification(session: AsyncSession, principal: Principal, rid: str,
                               body: RectificationPatch) -> dict:
    row = await session.get(Rectification, rid)
    if row is None or not principal.can_see(row.region_code):
        raise NotFound(f"rectification {rid} not found")
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise Invalid(["body"], "nothing to change")
    for name, value in changes.items():
        if value is None and name in ("status", "owner", "deadline", "finding"):
            raise Invalid(["body", name], "may not be null")
        setattr(row, name, value)
    row.updated_at = _now()
    if "status" in changes:
        row.closed_at = row.updated_at if row.status == "done" else None
    await session.flush()
    return rectification_dict(row)


# --- webhooks -------------------------------------------------------------------------


async def register_webhook(session: AsyncSession, principal: Principal, body: WebhookIn,
                           require_https: bool = False) -> dict:
    if not principal.sees_everything and not principal.regions:
        raise Invalid(["token"], "a webhook needs a caller with a region")
    if require_https and body.url.scheme != "https":
        # Deliveries carry counts and a signature, but the secret-bearing channel should be encrypted.
        raise Invalid(["body", "url"], "webhooks must use https in production")
    hook = Webhook(id=str(uuid.uuid4()), url=str(body.url), event_types=json.dumps(body.event_types),
                   secret=body.secret,
                   # The hook sees what its owner sees: deliveries are filtered by these prefixes.
                   regions=json.dumps([] if principal.sees_everything else principal.prefixes()),
                   created_by=principal.sub, active=True, created_at=_now())
    session.add(hook)
    await session.flush()
    return webhook_dict(hook)


def webhook_dict(hook: Webhook) -> dict:
    return {"id": hook.id, "url": hook.url, "event_types": json.loads(hook.event_types),
            "regions": json.loads(hook.regions), "active": hook.active, "created_by": hook.created_by,
            "created_at": _aware(hook.created_at).isoformat()}


async def own_webhook(session: AsyncSession, principal: Principal, hook_id: str) -> Webhook:
    hook = await session.get(Webhook, hook_id)
    if hook is None or (hook.created_by != principal.sub and not principal.sees_everything):
        raise NotFound(f"webhook {hook_id} not found")
    return hook


async def list_webhooks(session: AsyncSession, principal: Principal) -> list[dict]:
    query = select(Webhook).order_by(Webhook.created_at)
    if not principal.sees_everything:
        query = query.where(Webhook.created_by == principal.sub)
    return [webhook_dict(h) for h in (await session.execute(query)).scalars()]


async def deactivate_webhook(session: AsyncSession, principal: Principal, hook_id: str) -> dict:
    hook = await own_webhook(session, principal, hook_id)
    hook.active = False
    await session.flush()
    return webhook_dict(hook)


async def deliveries(session: AsyncSession, principal: Principal, hook_id: str, limit: int) -> list[dict]:
    await own_webhook(session, principal, hook_id)
    rows = (await session.execute(select(Delivery).where(Delivery.webhook_id == hook_id)
                                  .order_by(Delivery.created_at.desc(), Delivery.id).limit(limit))).scalars()
    return [{"id": d.id, "event_id": d.event_id, "event_type": d.event_type, "status": d.status,
             "attempts": d.attempts, "next_attempt_at": _aware(d.next_attempt_at).isoformat(),
             "last_status_code": d.last_status_code, "last_error": d.last_error,
             "created_at": _aware(d.created_at).isoformat(),
             "delivered_at": _aware(d.delivered_at).isoformat() if d.delivered_at else None,
             "body": json.loads(d.body)} for d in rows]


def new_secret() -> str:
    return secrets.token_urlsafe(24)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- vaccination targets ------------------------------------------------------------------


async def set_vaccination_target(session: AsyncSession, principal: Principal, body) -> dict:
    from dashboard.models import VaccinationTarget

    require_region(principal, body.region_code)
    values = {"region_code": body.region_code, "age_group": body.age_group, "target": body.target,
              "deadline": body.deadline, "set_by": principal.sub, "set_at": _now()}
    stmt = dialect_insert(session, VaccinationTarget).values(values)
    stmt = stmt.on_conflict_do_update(index_elements=["region_code", "age_group"],
                                      set_={k: stmt.excluded[k] for k in ("target", "deadline", "set_by", "set_at")})
    await session.execute(stmt)
    return {**values, "deadline": body.deadline.isoformat(), "set_at": values["set_at"].isoformat()}


async def vaccination_progress(session: AsyncSession, region_code: str | None, day: date, lang: str) -> list[dict]:
    """First-dose people against the targets set for the region and the regions under it."""
    from dashboard import queries
    from dashboard.domain.rules import AGE_GROUPS, dimension_label, ratio
    from dashboard.models import VaccinationTarget

    reached = await queries.sums(session, region_code, ["vaccinated_people", "vaccinations"], None, day)
    targets = (await session.execute(select(VaccinationTarget).where(
        in_region(VaccinationTarget.region_code, region_code)))).scalars().all()
    out = []
    for group in AGE_GROUPS:
        mine = [t for t in targets if t.age_group == group]
        target = sum(t.target for t in mine)
        people = reached.get(("vaccinated_people", group), 0)
        out.append({"age_group": group, "label": dimension_label(group, lang), "people": people,
                    "doses": reached.get(("vaccinations", group), 0), "target": target,
                    "ratio": ratio(people, target),
                    "deadline": min(t.deadline for t in mine).isoformat() if mine else None,
                    "overdue": bool(mine) and people < target and min(t.deadline for t in mine) < day})
    return out
