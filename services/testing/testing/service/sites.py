"""Use cases: collection sites and labs."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal, Role
from fangkong_common.errors import NotFound, ServiceError
from testing import schemas
from testing.domain.plan import parse_hhmm
from testing.models import CollectionSite, Lab, TravelTime
from testing.service.common import BatchRejected, err, insert_ignore


def require_scope(principal: Principal, region_code: str) -> None:
    if not principal.can_see(region_code):
        raise ServiceError(f"地区 {region_code} 不在您的权限范围内", status_code=403)


async def create_site(session: AsyncSession, principal: Principal, body: schemas.SiteIn) -> str:
    require_scope(principal, body.region_code)
    site_id = str(uuid.uuid4())
    session.add(CollectionSite(id=site_id, **body.model_dump(exclude={"travel_minutes"})))
    if body.travel_minutes:
        await _add_travel(session, [(site_id, lab_id, m) for lab_id, m in body.travel_minutes.items()],
                          ["travel_minutes"])
    return site_id


async def create_lab(session: AsyncSession, principal: Principal, body: schemas.LabIn) -> str:
    require_scope(principal, body.region_code)
    lab_id = str(uuid.uuid4())
    session.add(Lab(id=lab_id, **body.model_dump(exclude={"travel_minutes"})))
    if body.travel_minutes:
        await _add_travel(session, [(site_id, lab_id, m) for site_id, m in body.travel_minutes.items()],
                          ["travel_minutes"])
    return lab_id


async def update_lab(session: AsyncSession, principal: Principal, lab_id: str, body: schemas.LabPatch) -> Lab:
    lab = await session.get(Lab, lab_id, with_for_update=session.get_bind().dialect.name == "postgresql")
    if lab is None or not (principal.can_see(lab.region_code) or lab_id in principal.sites):
        raise NotFound(f"检测机构 {lab_id} 不存在")
    if principal.role is Role.lab and lab_id not in principal.sites:
        raise ServiceError("您只能更新本机构的信息", status_code=403)
    if principal.role not in (Role.lab, Role.admin, Role.commander):
        raise ServiceError("无权更新检测机构", status_code=403)
    for name, value in body.model_dump(exclude_none=True).items():
        if name in ("opens_at", "closes_at"):
            parse_hhmm(value)
        setattr(lab, name, value)
    await session.flush()
    return lab


async def _add_travel(session: AsyncSession, rows: list[tuple[str, str, float]], loc: list) -> None:
    if any(m < 0 for _, _, m in rows):
        raise BatchRejected([err(loc, "路程时间不能为负数")])
    await session.flush()
    await session.execute(insert_ignore(session, TravelTime), [
        {"site_id": s, "lab_id": lab, "minutes": m} for s, lab, m in rows])


async def list_sites(session: AsyncSession, principal: Principal) -> list[CollectionSite]:
    return list(await session.scalars(select(CollectionSite).where(principal.scope_clause(CollectionSite.region_code))
                                      .order_by(CollectionSite.created_at, CollectionSite.id)))


async def list_labs(session: AsyncSession, principal: Principal) -> list[Lab]:
    return list(await session.scalars(select(Lab).where(principal.scope_clause(Lab.region_code))
                                      .order_by(Lab.created_at, Lab.id)))

