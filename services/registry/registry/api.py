"""HTTP API of the registry service, under /registry."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, File, Path, Query, Request, Response, UploadFile, status
from sqlalchemy import and_, select

from fangkong_common import clock
from fangkong_common.audit import PiiAuditEntry
from fangkong_common.auth import Principal, Role, require_roles
from fangkong_common.db import DbSession
from fangkong_common.errors import Invalid, NotFound
from fangkong_common.events.schemas import ReturneeCategory

from registry import imports, schemas
from registry.models import Checkpoint, Gathering, Person, PossibleDuplicate, RiskArea
from registry.service import Registry, contact_out, person_scope

router = APIRouter(prefix="/registry", tags=["registry"])

Reader = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander, Role.grid_worker, Role.medical,
                                                      Role.viewer, Role.integration))]
Writer = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander, Role.grid_worker, Role.integration))]
Tracer = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander, Role.grid_worker, Role.medical,
                                                      Role.integration))]
Commander = Annotated[Principal, Depends(require_roles(Role.admin, Role.commander))]
PersonId = Annotated[str, "the person_key"]


def registry_of(request: Request) -> Registry:
    return Registry(request.app.state.settings)


RegistryDep = Annotated[Registry, Depends(registry_of)]


# --- people ----------------------------------------------------------------


@router.post("/persons", response_model=schemas.PersonCreated, status_code=status.HTTP_201_CREATED,
             responses={200: {"model": schemas.PersonCreated, "description": "the same ID was already registered"}})
async def register_person(body: schemas.PersonIn, principal: Writer, session: DbSession, registry: RegistryDep,
                          request: Request, response: Response) -> schemas.PersonCreated:
    person, created = await registry.register(session, principal, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    [out] = await registry.present(session, principal, [person], request, detail=True)
    return schemas.PersonCreated(**out.model_dump(), created=created)


@router.get("/persons", response_model=schemas.Page[schemas.PersonOut])
async def list_persons(principal: Reader, session: DbSession, registry: RegistryDep, request: Request,
                       region_code: Annotated[str | None, Query(pattern=r"^[0-9]{6}$")] = None,
                       grid: str | None = None, category: ReturneeCategory | None = None,
                       q: Annotated[str | None, Query(max_length=100)] = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50,
                       offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0) -> schemas.Page[schemas.PersonOut]:
    persons, total = await registry.list_persons(session, principal, region_code=region_code, grid=grid,
                                                 category=category.value if category else None, q=q, limit=limit,
                                                 offset=offset)
    items = await registry.present(session, principal, persons, request)
    return schemas.Page[schemas.PersonOut](items=items, total=total, limit=limit, offset=offset)


@router.get("/persons/{person_id}", response_model=schemas.PersonOut)
async def get_person(person_id: PersonId, principal: Reader, session: DbSession, registry: RegistryDep,
                     request: Request) -> schemas.PersonOut:
    person = await registry.get_visible(session, principal, person_id)
    [out] = await registry.present(session, principal, [person], request, detail=True)
    return out


@router.patch("/persons/{person_id}", response_model=schemas.PersonOut)
async def correct_person(person_id: PersonId, body: schemas.PersonPatch, principal: Writer, session: DbSession,
                         registry: RegistryDep, request: Request) -> schemas.PersonOut:
    person = await registry.correct(session, principal, person_id, body)
    [out] = await registry.present(session, principal, [person], request, detail=True)
    return out


@router.post("/persons/{person_id}/travel", response_model=schemas.TravelOut, status_code=status.HTTP_201_CREATED)
async def add_travel(person_id: PersonId, body: schemas.TravelIn, principal: Writer, session: DbSession,
                     registry: RegistryDep, response: Response) -> schemas.TravelOut:
    record, created = await registry.add_travel(session, principal, person_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    flags = (await registry.risk_flags_of(session, [person_id])).get(person_id, [])
    return schemas.TravelOut(id=record.id, person_id=person_id, category=ReturneeCategory(record.category),
                             created=created, risk_flags=[f for f in flags if f.travel_record_id == record.id])


@router.get("/persons/{person_id}/contacts", response_model=schemas.ContactGraph)
async def contact_graph(person_id: PersonId, principal: Reader, session: DbSession, registry: RegistryDep,
                        depth: Annotated[int, Query(ge=1, le=5)] = 5) -> schemas.ContactGraph:
    return await registry.contact_graph(session, principal, person_id, max_depth=depth)


@router.get("/duplicates", response_model=list[schemas.DuplicateOut])
async def possible_duplicates(principal: Commander, session: DbSession,
                              review_status: Annotated[str, Query(alias="status")] = "open"
                              ) -> list[schemas.DuplicateOut]:
    """Records that may be one person under two documents (same name, birth date and phone)."""
    rows = (await session.scalars(
        select(PossibleDuplicate).join(Person, Person.person_key == PossibleDuplicate.person_key)
        .where(person_scope(principal), PossibleDuplicate.status == review_status)
        .order_by(PossibleDuplicate.id).limit(1000))).all()
    return [schemas.DuplicateOut.model_validate(r, from_attributes=True) for r in rows]


@router.patch("/duplicates/{duplicate_id}", response_model=schemas.DuplicateOut)
async def review_duplicate(duplicate_id: Annotated[int, Path(ge=1, le=2**63 - 1)], body: schemas.DuplicateReview, principal: Commander,
                           session: DbSession) -> schemas.DuplicateOut:
    """A commander's verdict; both directions of the pair get it. Records are never merged here."""
    row = await session.scalar(select(PossibleDuplicate).join(Person, Person.person_key == PossibleDuplicate.person_key)
                               .where(PossibleDuplicate.id == duplicate_id, person_scope(principal)))
    if row is None:
        raise NotFound(f"possible duplicate {duplicate_id} not found")
    pair = (await session.scalars(select(PossibleDuplicate).where(
        PossibleDuplicate.person_key.in_([row.person_key, row.other_person_key]),
        PossibleDuplicate.other_person_key.in_([row.person_key, row.other_person_key])))).all()
    for entry in pair:
        entry.status = body.status
    return schemas.DuplicateOut.model_validate(row, from_attributes=True)


@router.get("/audit", response_model=list[schemas.AuditEntryOut])
async def pii_audit(principal: Commander, session: DbSession,
                    subject: str | None = None, actor: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[schemas.AuditEntryOut]:
    """Who read whose personal data unmasked: for people in the caller's region."""
    conditions = [person_scope(principal)]
    if subject:
        conditions.append(PiiAuditEntry.subject == subject)
    if actor:
        conditions.append(PiiAuditEntry.actor == actor)
    rows = (await session.scalars(select(PiiAuditEntry).join(Person, Person.person_key == PiiAuditEntry.subject)
                                  .where(and_(*conditions)).order_by(PiiAuditEntry.id.desc()).limit(limit))).all()
    return [schemas.AuditEntryOut.model_validate(r, from_attributes=True) for r in rows]


# --- risk areas ------------------------------------------------------------


def _area_out(area: RiskArea, today: date) -> schemas.RiskAreaOut:
    active = area.lifted_at is None and area.effective_from <= today and (
        area.effective_to is None or area.effective_to >= today)
    return schemas.RiskAreaOut(id=area.id, region_code=area.region_code, name=area.name, level=area.level,
                               effective_from=area.effective_from, effective_to=area.effective_to,
                               lookback_days=area.lookback_days, active=active, flagged_count=area.flagged_count,
                               declared_at=area.declared_at, lifted_at=area.lifted_at)


@router.post("/risk-areas", response_model=schemas.RiskAreaOut, status_code=status.HTTP_201_CREATED)
async def declare_risk_area(body: schemas.RiskAreaIn, principal: Commander, session: DbSession,
                            registry: RegistryDep) -> schemas.RiskAreaOut:
    area = await registry.declare_risk_area(session, principal, body)
    return _area_out(area, clock.today())


@router.get("/risk-areas", response_model=list[schemas.RiskAreaOut])
async def list_risk_areas(principal: Reader, session: DbSession,
                          active: bool | None = None) -> list[schemas.RiskAreaOut]:
    # Risk areas are public notices: everyone may see all of them.
    areas = (await session.scalars(select(RiskArea).order_by(RiskArea.declared_at.desc()))).all()
    today = clock.today()
    out = [_area_out(a, today) for a in areas]
    return [a for a in out if active is None or a.active == active]


@router.post("/risk-areas/{area_id}/lift", response_model=schemas.RiskAreaOut)
async def lift_risk_area(area_id: str, principal: Commander, session: DbSession,
                         registry: RegistryDep) -> schemas.RiskAreaOut:
    return _area_out(await registry.lift_risk_area(session, principal, area_id), clock.today())


# --- import ----------------------------------------------------------------


@router.get("/import-template.xlsx", response_class=Response,
            responses={200: {"content": {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}}}})
async def import_template(principal: Reader) -> Response:
    return Response(imports.template_xlsx(),
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": "attachment; filename*=UTF-8''%E8%BF%94%E4%B9%A1%E4%BA%BA%E5%91%98"
                                                    "%E5%AF%BC%E5%85%A5%E6%A8%A1%E6%9D%BF.xlsx"})


@router.post("/import", response_model=schemas.ImportReport)
async def import_returnees(principal: Writer, session: DbSession, registry: RegistryDep,
                           file: Annotated[UploadFile, File(description=".xlsx or .csv, headers as in the template")]
                           ) -> schemas.ImportReport:
    settings = registry.settings
    if file.size is not None and file.size > settings.import_max_bytes:
        raise Invalid(("body", "file"), f"文件超过{settings.import_max_bytes}字节上限 (file too large)")
    report = schemas.ImportReport(rows=0, stored=0, unchanged=0, rejected=0, errors=[])
    pending: list[tuple[schemas.PersonIn, schemas.TravelIn]] = []

    async def store() -> None:
        # Every row here passed every check: the set-based writes below cannot refuse one.
        people = await registry.register_many(session, principal, [p for p, _ in pending], via="import")
        stored = await registry.store_travel(session, [(key, region, grid, travel) for (key, region, grid), (_, travel)
                                                       in zip(people, pending, strict=True)])
        report.stored += sum(created for _, created in stored)
        report.unchanged += sum(not created for _, created in stored)
        pending.clear()

    try:
        for row, record in imports.read_rows(file.file, file.filename or "", max_rows=settings.import_max_rows,
                                             max_unpacked_bytes=settings.import_max_unpacked_bytes):
            report.rows += 1
            error = imports.check_row(registry, principal, row, record)
            if isinstance(error, list):
                report.errors.extend(error)
                report.rejected += 1
                continue
            pending.append(error)
            if len(pending) >= 500:
                await store()
        if pending:
            await store()
    except imports.ImportFileError as exc:
        raise Invalid(("body", "file"), str(exc), type="import.file") from None
    return report


# --- checkpoints -------------------------------------------------------------


@router.post("/checkpoints", response_model=schemas.CheckpointOut, status_code=status.HTTP_201_CREATED)
async def add_checkpoint(body: schemas.CheckpointIn, principal: Commander, session: DbSession,
                         registry: RegistryDep) -> schemas.CheckpointOut:
    checkpoint = await registry.add_checkpoint(session, principal, body)
    return schemas.CheckpointOut(id=checkpoint.id, name=checkpoint.name, region_code=checkpoint.region_code,
                                 kind=checkpoint.kind)


@router.get("/checkpoints", response_model=list[schemas.CheckpointOut])
async def list_checkpoints(principal: Reader, session: DbSession) -> list[schemas.CheckpointOut]:
    rows = (await session.scalars(select(Checkpoint).where(principal.scope_clause(Checkpoint.region_code))
                                  .order_by(Checkpoint.created_at))).all()
    return [schemas.CheckpointOut(id=c.id, name=c.name, region_code=c.region_code, kind=c.kind) for c in rows]


@router.post("/checkpoints/{checkpoint_id}/passes", response_model=schemas.PassesOut)
async def record_passes(checkpoint_id: str, body: schemas.PassesIn, principal: Writer, session: DbSession,
                        registry: RegistryDep) -> schemas.PassesOut:
    return await registry.record_passes(session, principal, checkpoint_id, body)


# --- contacts ----------------------------------------------------------------


@router.post("/contacts", response_model=schemas.ContactOut, status_code=status.HTTP_201_CREATED)
async def add_contact(body: schemas.ContactIn, principal: Tracer, session: DbSession, registry: RegistryDep,
                      response: Response) -> schemas.ContactOut:
    link, created = await registry.add_contact(session, principal, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return contact_out(link, created)


@router.post("/contacts/batch", response_model=schemas.ContactBatchOut,
             responses={422: {"description": "an item was refused; its loc names it (body.contacts.N…)"}})
async def add_contacts(body: schemas.ContactBatchIn, principal: Tracer, session: DbSession,
                       registry: RegistryDep) -> schemas.ContactBatchOut:
    """Many contacts in one transaction (a survey team's list): all are recorded or none."""
    links = await registry.add_contacts(session, principal, body.contacts)
    return schemas.ContactBatchOut(contacts=[contact_out(link, created) for link, created in links],
                                   created=sum(1 for _, created in links if created))


# --- vaccinations --------------------------------------------------------------


@router.post("/vaccinations", response_model=schemas.VaccinationOut, status_code=status.HTTP_201_CREATED)
async def add_vaccination(body: schemas.VaccinationIn, principal: Tracer, session: DbSession,
                          registry: RegistryDep, response: Response) -> schemas.VaccinationOut:
    dose, created = await registry.add_vaccination(session, principal, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return schemas.VaccinationOut(person_id=dose.person_key, age_group=dose.age_group, vaccine=dose.vaccine,
                                  dose_number=dose.dose_number, vaccinated_on=dose.vaccinated_on, created=created)


@router.put("/vaccination-targets", response_model=schemas.VaccinationTargetIn)
async def set_vaccination_target(body: schemas.VaccinationTargetIn, principal: Commander, session: DbSession,
                                 registry: RegistryDep) -> schemas.VaccinationTargetIn:
    await registry.set_target(session, principal, body)
    return body


@router.get("/vaccination-progress", response_model=schemas.VaccinationProgress)
async def vaccination_progress(principal: Reader, session: DbSession, registry: RegistryDep,
                               region_code: Annotated[str, Query(pattern=r"^[0-9]{6}$")],
                               as_of: date | None = None) -> schemas.VaccinationProgress:
    return await registry.vaccination_progress(session, principal, region_code, as_of or clock.today())


# --- gatherings ----------------------------------------------------------------


def _gathering_out(g: Gathering) -> schemas.GatheringOut:
    return schemas.GatheringOut(id=g.id, kind=g.kind, organiser=g.organiser, place=g.place,
                                region_code=g.region_code, held_on=g.held_on,
                                expected_attendees=g.expected_attendees, status=g.status, decided_by=g.decided_by,
                                decision_note=g.decision_note)


@router.post("/gatherings", response_model=schemas.GatheringOut, status_code=status.HTTP_201_CREATED)
async def file_gathering(body: schemas.GatheringIn, principal: Writer, session: DbSession,
                         registry: RegistryDep) -> schemas.GatheringOut:
    return _gathering_out(await registry.file_gathering(session, principal, body))


@router.get("/gatherings", response_model=list[schemas.GatheringOut])
async def list_gatherings(principal: Reader, session: DbSession,
                          gathering_status: Annotated[str | None, Query(alias="status")] = None
                          ) -> list[schemas.GatheringOut]:
    conditions = [principal.scope_clause(Gathering.region_code)]
    if gathering_status:
        conditions.append(Gathering.status == gathering_status)
    rows = (await session.scalars(select(Gathering).where(*conditions).order_by(Gathering.held_on))).all()
    return [_gathering_out(g) for g in rows]


@router.post("/gatherings/{gathering_id}/decision", response_model=schemas.GatheringOut)
async def decide_gathering(gathering_id: str, body: schemas.GatheringDecision, principal: Commander,
                           session: DbSession, registry: RegistryDep) -> schemas.GatheringOut:
    return _gathering_out(await registry.decide_gathering(session, principal, gathering_id, body))
