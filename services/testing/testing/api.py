"""HTTP API of the testing service, under /testing."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from fangkong_common.auth import Principal, Role, require_roles
from fangkong_common.db import DbSession
from testing import schemas, service

router = APIRouter(prefix="/testing", tags=["testing"])

Manager = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander))]
Reader = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander, Role.viewer, Role.site_staff,
                                                    Role.lab, Role.medical, Role.integration))]
Collector = Annotated[Principal, Depends(require_roles(Role.admin, Role.site_staff, Role.integration))]
LabStaff = Annotated[Principal, Depends(require_roles(Role.admin, Role.lab, Role.integration))]
OrderReader = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander, Role.viewer, Role.site_staff,
                                                         Role.medical, Role.grid_worker, Role.integration))]
LabEditor = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander, Role.lab))]
Planner = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander, Role.viewer))]


def _settings(request: Request):
    return request.app.state.settings


@router.post("/sites", status_code=201, response_model=schemas.Created)
async def create_site(body: schemas.SiteIn, principal: Manager, session: DbSession) -> schemas.Created:
    return schemas.Created(id=await service.create_site(session, principal, body))


@router.get("/sites", response_model=list[schemas.SiteOut])
async def list_sites(principal: Reader, session: DbSession) -> list:
    return [schemas.SiteOut.model_validate(s, from_attributes=True) for s in await service.list_sites(session, principal)]


@router.post("/labs", status_code=201, response_model=schemas.Created)
async def create_lab(body: schemas.LabIn, principal: Manager, session: DbSession) -> schemas.Created:
    return schemas.Created(id=await service.create_lab(session, principal, body))


@router.patch("/labs/{lab_id}", response_model=schemas.LabOut)
async def update_lab(lab_id: str, body: schemas.LabPatch, principal: LabEditor, session: DbSession) -> schemas.LabOut:
    return schemas.LabOut.model_validate(await service.update_lab(session, principal, lab_id, body),
                                         from_attributes=True)


@router.get("/labs", response_model=list[schemas.LabOut])
async def list_labs(principal: Reader, session: DbSession) -> list:
    return [schemas.LabOut.model_validate(lab, from_attributes=True) for lab in await service.list_labs(session, principal)]


@router.post("/tubes", status_code=201, response_model=schemas.TubesOut,
             responses={403: {"description": "a tube for a site the caller does not serve"},
                        409: {"description": "barcode or person already used"},
                        422: {"description": "per-item errors; nothing was stored"}})
async def post_tubes(body: schemas.TubesIn, principal: Collector, session: DbSession,
                     request: Request) -> schemas.TubesOut:
    return await service.ingest_tubes(session, principal, _settings(request), body)


@router.post("/results", response_model=schemas.ResultsOut,
             responses={403: {"description": "a result for another lab"},
                        409: {"description": "a different result for an already resulted tube"},
                        422: {"description": "per-item errors; nothing was stored"}})
async def post_results(body: schemas.ResultsIn, principal: LabStaff, session: DbSession,
                       request: Request) -> schemas.ResultsOut:
    return await service.ingest_results(session, principal, _settings(request), body)


@router.get("/orders", response_model=list[schemas.OrderOut])
async def list_orders(
    principal: OrderReader, session: DbSession, request: Request,
    person_id: Annotated[str | None, Query(description="ID number or person key")] = None,
    status: Literal["pending", "collected"] | None = None,
    reason: Literal["quarantine", "retest", "reswab"] | None = None,
    source_barcode: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list:
    orders = await service.list_orders(session, principal, _settings(request), person_id=person_id, status=status,
                                       reason=reason, source_barcode=source_barcode, limit=limit)
    return [schemas.OrderOut.model_validate(o, from_attributes=True) for o in orders]


@router.get("/capacity/plan")
async def capacity_plan(
    principal: Planner, session: DbSession, request: Request,
    horizon_hours: Annotated[int, Query(ge=1, le=168)] = 48,
    region_code: Annotated[str | None, Query(pattern=r"^[0-9]{6}$")] = None,
    include_planned_collection: bool = True,
    batches_limit: Annotated[int, Query(ge=0, le=100_000)] = 1000,
) -> dict:
    result, extra, _sites, labs = await service.build_plan(
        session, principal, _settings(request), horizon_hours=horizon_hours, region=region_code,
        include_planned_collection=include_planned_collection)
    return service.plan_response(result, extra, labs, horizon_hours, batches_limit)


@router.get("/capacity/forecast")
async def capacity_forecast(
    principal: Planner, session: DbSession, request: Request,
    days: Annotated[int, Query(ge=1, le=7)] = 3,
    region_code: Annotated[str | None, Query(pattern=r"^[0-9]{6}$")] = None,
) -> dict:
    return await service.forecast(session, principal, _settings(request), days=days, region=region_code)
