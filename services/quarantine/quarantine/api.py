"""HTTP API of the quarantine service, under /quarantine. Thin: scope, validate, call service."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from sqlalchemy import and_, false, func, or_, select, true

from fangkong_common import clock
from fangkong_common.auth import CurrentPrincipal, Principal, Role, require_region, require_roles
from fangkong_common.db import DbSession
from fangkong_common.errors import NotFound
from fangkong_common.events.schemas import PersonKey
from quarantine import service
from quarantine.domain.placement import is_low
from quarantine.domain.policy import PolicyError, policy_document
from quarantine.models import Alert, Case, Order, OrderChange, PolicyVersion, Site, Transfer
from quarantine.schemas import (
    AlertOut,
    CaseOut,
    CheckinIn,
    CheckinOut,
    ClassificationIn,
    DailyRunOut,
    OrderOut,
    OrderPage,
    PolicyOut,
    SiteIn,
    SiteOut,
    StageOut,
    TransferIn,
    TransferOut,
    TransferPatch,
)

router = APIRouter(prefix="/quarantine", tags=["quarantine"])

R = Role
ReadOrders = Annotated[Principal, Depends(require_roles(R.admin, R.commander, R.site_staff, R.medical,
                                                        R.grid_worker))]
Commanders = Annotated[Principal, Depends(require_roles(R.admin, R.commander))]
SiteWork = Annotated[Principal, Depends(require_roles(R.admin, R.commander, R.site_staff))]
CheckinWork = Annotated[Principal, Depends(require_roles(R.admin, R.commander, R.site_staff, R.grid_worker,
                                                         R.medical))]
Medical = Annotated[Principal, Depends(require_roles(R.admin, R.medical))]
CaseReaders = Annotated[Principal, Depends(require_roles(R.admin, R.commander, R.medical))]
Admins = Annotated[Principal, Depends(require_roles(R.admin))]


def now() -> datetime:
    return clock.now()


# --- scope ---------------------------------------------------------------------


def order_clause(p: Principal):
    """Orders a caller may see: site staff their sites; grid workers their grids; others their
    region, both as the person's home and as the site's region (a supporting city sees its guests)."""
    if p.sees_everything:
        return true()
    if p.role is Role.site_staff:
        return Order.site_id.in_(p.sites) if p.sites else false()
    if p.role is Role.grid_worker and p.grids:
        return and_(p.scope_clause(Order.region_code), Order.grid.in_(p.grids))
    return or_(p.scope_clause(Order.region_code), p.scope_clause(Order.site_region_code))


def may_see_order(p: Principal, order: Order) -> bool:
    if p.sees_everything:
        return True
    if p.role is Role.site_staff:
        return order.site_id is not None and order.site_id in p.sites
    if p.role is Role.grid_worker and p.grids:
        return p.can_see(order.region_code) and order.grid in p.grids
    return p.can_see(order.region_code) or (order.site_region_code is not None and p.can_see(order.site_region_code))


def site_clause(p: Principal):
    if p.sees_everything:
        return true()
    if p.role is Role.site_staff:
        return Site.id.in_(p.sites) if p.sites else false()
    return p.scope_clause(Site.region_code)


def may_see_site(p: Principal, site: Site) -> bool:
    if p.sees_everything:
        return True
    if p.role is Role.site_staff:
        return site.id in p.sites
    return p.can_see(site.region_code)


async def visible_order(session, principal: Principal, order_id: str) -> Order:
    order = await session.get(Order, order_id)
    if order is None or not may_see_order(principal, order):
        raise NotFound(f"隔离令 {order_id} 不存在或不在您的辖区")  # no hint that it exists elsewhere
    return order


def order_out(order: Order, changes: list[dict] | None = None) -> OrderOut:
    stages = [StageOut(**s) for s in order.stages]
    current = stages[order.current_stage] if order.current_stage is not None and order.current_stage < len(
        stages) else None
    return OrderOut(id=order.id, person_key=order.person_key, region_code=order.region_code, grid=order.grid,
                    cause=order.cause, category=order.category, status=order.status, policy_id=order.policy_id,
                    policy_version=order.policy_version, stages=stages, current_stage=order.current_stage,
                    current=current, release_date=order.release_date, site_id=order.site_id,
                    site_region_code=order.site_region_code, awaiting_site=order.awaiting_site,
                    created_at=order.created_at, ended_at=order.ended_at, changes=changes)


def site_out(site: Site) -> SiteOut:
    return SiteOut(id=site.id, name=site.name, kind=site.kind, region_code=site.region_code,
                   capacity=site.capacity, occupancy=site.occupancy, free=max(0, site.capacity - site.occupancy),
                   supporting_regions=list(site.supporting_regions or []),
                   capacity_low=is_low(site.capacity, site.occupancy))


# --- policies --------------------------------------------------------------------


@router.get("/policies", response_model=list[PolicyOut])
async def list_policies(session: DbSession, _: CurrentPrincipal) -> list[PolicyOut]:
    out = [PolicyOut(**{**policy_document(p), "source": "package"}) for p in service.PACKAGED]
    for row in (await session.scalars(select(PolicyVersion).order_by(PolicyVersion.id))).all():
        out.append(PolicyOut(**{**row.document, "source": "api", "applied_at": row.applied_at,
                                "replanned_orders": row.replanned_orders}))
    return out


@router.post("/policies", response_model=PolicyOut, status_code=status.HTTP_201_CREATED,
             responses={409: {"description": "version not newer than the latest"},
                        422: {"description": "the document does not parse"}})
async def publish_policy(request: Request, session: DbSession, principal: Commanders) -> PolicyOut:
    """Publish a new version (JSON, or YAML with Content-Type application/yaml). If it is already in
    force, active orders are re-planned from their current stage at once; otherwise on its effective date."""
    raw = await request.body()
    try:
        if "yaml" in request.headers.get("content-type", ""):
            document = yaml.safe_load(raw.decode("utf-8"))
        else:
            document = json.loads(raw or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise HTTPException(422, [{"loc": ["body"], "msg": f"无法解析：{exc}", "type": "parse"}]) from exc
    try:
        row, _ = await service.publish_policy(session, document, principal, now())
    except PolicyError as exc:
        raise HTTPException(422, [{"loc": ["body", *loc.split(".")], "msg": msg, "type": "policy"}
                                  for loc, msg in exc.errors]) from exc
    return PolicyOut(**{**row.document, "source": "api", "applied_at": row.applied_at,
                        "replanned_orders": row.replanned_orders})


# --- orders ----------------------------------------------------------------------


@router.get("/orders", response_model=OrderPage)
async def list_orders(
    session: DbSession, principal: ReadOrders,
    person_id: Annotated[PersonKey | None, Query(description="the person_key")] = None,
    status_: Annotated[Literal["active", "released", "hospitalized", "cancelled"] | None,
                       Query(alias="status")] = None,
    site_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> OrderPage:
    conditions = [order_clause(principal)]
    if person_id:
        conditions.append(Order.person_key == person_id)
    if status_:
        conditions.append(Order.status == status_)
    if site_id:
        conditions.append(Order.site_id == site_id)
    where = and_(*conditions)
    total = await session.scalar(select(func.count()).select_from(Order).where(where))
    rows = (await session.scalars(select(Order).where(where).order_by(Order.created_at, Order.id)
                                  .limit(limit).offset(offset))).all()
    return OrderPage(items=[order_out(o) for o in rows], total=total or 0, limit=limit, offset=offset)


@router.get("/orders/{order_id}", response_model=OrderOut)
async def get_order(order_id: str, session: DbSession, principal: ReadOrders) -> OrderOut:
    order = await visible_order(session, principal, order_id)
    changes = (await session.scalars(select(OrderChange).where(OrderChange.order_id == order.id)
                                     .order_by(OrderChange.id))).all()
    return order_out(order, [{"kind": c.kind, "at": c.at, "detail": c.detail} for c in changes])


@router.post("/orders/{order_id}/checkins", response_model=CheckinOut, status_code=status.HTTP_201_CREATED)
async def post_checkin(order_id: str, body: CheckinIn, session: DbSession, principal: CheckinWork) -> CheckinOut:
    """Temperature and symptoms (twice a day by default). A fever (≥37.3℃) or symptoms raise an
    alert and a test due at once."""
    order = await visible_order(session, principal, order_id)
    at = body.at or now()
    checkin, kinds, test_due = await service.record_checkin(
        session, order, temperature_c=body.temperature_c, symptoms=body.symptoms, at=at, principal=principal,
        now=now())
    return CheckinOut(id=checkin.id, order_id=order.id, at=checkin.at, temperature_c=checkin.temperature_c,
                      symptoms=checkin.symptoms, alerts=kinds, test_due=test_due)


@router.get("/alerts", response_model=list[AlertOut])
async def list_alerts(session: DbSession, principal: ReadOrders,
                      kind: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[AlertOut]:
    if principal.sees_everything:
        where = true()
    elif principal.role is Role.site_staff:
        where = Alert.site_id.in_(principal.sites) if principal.sites else false()
    else:
        where = principal.scope_clause(Alert.region_code)
    if kind:
        where = and_(where, Alert.kind == kind)
    rows = (await session.scalars(select(Alert).where(where).order_by(Alert.id.desc()).limit(limit))).all()
    return [AlertOut.model_validate(a) for a in rows]


# --- sites -----------------------------------------------------------------------


@router.post("/sites", response_model=SiteOut, status_code=status.HTTP_201_CREATED)
async def create_site(body: SiteIn, session: DbSession, principal: Commanders) -> SiteOut:
    require_region(principal, body.region_code)
    site = await service.create_site(session, site_id=body.id, name=body.name, kind=body.kind,
                                     region_code=body.region_code, capacity=body.capacity,
                                     supporting_regions=body.supporting_regions)
    return site_out(site)


@router.get("/sites", response_model=list[SiteOut])
async def list_sites(session: DbSession, principal: ReadOrders, kind: str | None = None,
                     region_code: str | None = None) -> list[SiteOut]:
    where = site_clause(principal)
    if kind:
        where = and_(where, Site.kind == kind)
    if region_code:
        where = and_(where, Site.region_code == region_code)
    rows = (await session.scalars(select(Site).where(where).order_by(Site.region_code, Site.id))).all()
    return [site_out(s) for s in rows]


@router.get("/sites/{site_id}", response_model=SiteOut)
async def get_site(site_id: str, session: DbSession, principal: ReadOrders) -> SiteOut:
    site = await session.get(Site, site_id)
    if site is None or not may_see_site(principal, site):
        raise NotFound(f"隔离点 {site_id} 不存在或不在您的辖区")
    return site_out(site)


# --- transfers -------------------------------------------------------------------


def may_see_transfer(p: Principal, t: Transfer) -> bool:
    if p.sees_everything:
        return True
    if p.role is Role.site_staff:
        return bool({t.from_site_id, t.to_site_id} & set(p.sites))
    return p.can_see(t.region_code)


@router.post("/transfers", response_model=TransferOut, status_code=status.HTTP_201_CREATED)
async def create_transfer(body: TransferIn, session: DbSession, principal: SiteWork) -> TransferOut:
    """A closed-loop, point-to-point transfer (点对点闭环): who, from, to, vehicle, escort."""
    region = body.region_code
    if body.order_id:
        order = await visible_order(session, principal, body.order_id)
        if order.person_key != body.person_key:
            raise HTTPException(422, [{"loc": ["body", "order_id"], "msg": "隔离令与人员不符", "type": "value"}])
        region = order.region_code
    if region is None:
        raise HTTPException(422, [{"loc": ["body", "region_code"], "msg": "未给隔离令时须填写辖区代码",
                                   "type": "missing"}])
    for field in ("from_site_id", "to_site_id"):
        site_id = getattr(body, field)
        if site_id and await session.get(Site, site_id) is None:
            raise HTTPException(422, [{"loc": ["body", field], "msg": f"隔离点 {site_id} 不存在", "type": "value"}])
    if principal.role is Role.site_staff:
        if not {body.from_site_id, body.to_site_id} & set(principal.sites):
            raise HTTPException(403, "只能登记本隔离点的转运")
    elif not body.order_id:
        require_region(principal, region)
    transfer = await service.create_transfer(
        session, principal=principal, now=now(), person_key=body.person_key, order_id=body.order_id,
        region_code=region, from_place=body.from_place, to_place=body.to_place, from_site_id=body.from_site_id,
        to_site_id=body.to_site_id, vehicle=body.vehicle, escort=body.escort)
    return TransferOut.model_validate(transfer)


@router.patch("/transfers/{transfer_id}", response_model=TransferOut,
              responses={409: {"description": "not a valid next state"}})
async def advance_transfer(transfer_id: str, body: TransferPatch, session: DbSession,
                           principal: SiteWork) -> TransferOut:
    transfer = await session.get(Transfer, transfer_id)
    if transfer is None or not may_see_transfer(principal, transfer):
        raise NotFound(f"转运单 {transfer_id} 不存在或不在您的辖区")
    if body.vehicle:
        transfer.vehicle = body.vehicle
    if body.escort:
        transfer.escort = body.escort
    await service.advance_transfer(session, transfer, body.status, body.at or now())
    return TransferOut.model_validate(transfer)


@router.get("/transfers", response_model=list[TransferOut])
async def list_transfers(session: DbSession, principal: SiteWork, status_: Annotated[
        str | None, Query(alias="status")] = None, person_id: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[TransferOut]:
    if principal.sees_everything:
        where = true()
    elif principal.role is Role.site_staff:
        where = or_(Transfer.from_site_id.in_(principal.sites), Transfer.to_site_id.in_(principal.sites)) \
            if principal.sites else false()
    else:
        where = principal.scope_clause(Transfer.region_code)
    if status_:
        where = and_(where, Transfer.status == status_)
    if person_id:
        where = and_(where, Transfer.person_key == person_id)
    rows = (await session.scalars(select(Transfer).where(where).order_by(Transfer.requested_at).limit(limit))).all()
    return [TransferOut.model_validate(t) for t in rows]


# --- cases -----------------------------------------------------------------------


def case_clause(p: Principal):
    if p.sees_everything:
        return true()
    return or_(p.scope_clause(Case.origin_region_code), p.scope_clause(Case.treating_region_code))


@router.get("/cases", response_model=list[CaseOut])
async def list_cases(session: DbSession, principal: CaseReaders, classified: bool | None = None,
                     limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> list[CaseOut]:
    """``classified=false``: positives not yet classified as confirmed or asymptomatic (the backlog
    that never reaches the national statistics until a doctor classifies it)."""
    where = case_clause(principal)
    if classified is not None:
        where = and_(where, Case.classification.is_not(None) if classified else Case.classification.is_(None))
    rows = (await session.scalars(select(Case).where(where).order_by(Case.positive_at).limit(limit))).all()
    return [CaseOut.model_validate(c) for c in rows]


@router.post("/cases/{person_id}/classification", response_model=CaseOut)
async def classify(person_id: str, body: ClassificationIn, session: DbSession, principal: Medical) -> CaseOut:
    case = await session.get(Case, person_id)
    if case is None or not (principal.sees_everything or principal.can_see(case.origin_region_code) or (
            case.treating_region_code and principal.can_see(case.treating_region_code))):
        raise NotFound(f"病例 {person_id} 不存在或不在您的辖区")
    case = await service.classify_case(session, person_id, classification=body.classification.value,
                                       severity=body.severity, principal=principal, now=now())
    return CaseOut.model_validate(case)


@router.post("/cases/{person_id}/discharge", response_model=CaseOut)
async def discharge(person_id: str, request: Request, session: DbSession, principal: Medical) -> CaseOut:
    """出院: the bed goes back to the site."""
    case = await session.get(Case, person_id)
    if case is None or not (principal.sees_everything or principal.can_see(case.origin_region_code) or (
            case.treating_region_code and principal.can_see(case.treating_region_code))):
        raise NotFound(f"病例 {person_id} 不存在或不在您的辖区")
    case = await service.discharge_case(session, person_id, now(),
                                        low_share=request.app.state.settings.capacity_low_share)
    return CaseOut.model_validate(case)


# --- operations --------------------------------------------------------------------


@router.post("/scheduler/run", response_model=DailyRunOut)
async def run_scheduler(request: Request, session: DbSession, _: Admins,
                        at: Annotated[datetime | None, Query(description="run as of this instant")] = None
                        ) -> DailyRunOut:
    """Run the daily job now (it also runs by itself); safe to repeat."""
    settings = request.app.state.settings
    when = at if at is not None and at.tzinfo else now()
    report = await service.run_daily(session, when, checkins_per_day=settings.checkins_per_day,
                                     low_share=settings.capacity_low_share)
    return DailyRunOut(**report.__dict__)
