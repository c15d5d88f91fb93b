"""Gathering filings (备案): the 100-person rule and a commander's decision."""

from __future__ import annotations

import uuid

from fastapi import HTTPException, status
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal
from fangkong_common.errors import Invalid, NotFound
from fangkong_common.events.schemas import GatheringFiled

from registry import schemas
from registry.domain import rules
from registry.models import Gathering
from registry.service.base import RegistryBase, emit


class Gatherings(RegistryBase):
    async def file_gathering(self, session: AsyncSession, principal: Principal,
                             data: schemas.GatheringIn) -> Gathering:
        if not principal.can_see(data.region_code):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {data.region_code} is outside your scope")
        if data.expected_attendees > rules.GATHERING_LIMIT:
            raise Invalid(("body", "expected_attendees"), f"{data.expected_attendees}人超过上限。{rules.GATHERING_RULE}",
                          type="gathering.too_large")
        gathering = Gathering(id=str(uuid.uuid4()), kind=data.kind, organiser=data.organiser,
                              organiser_phone=data.organiser_phone, place=data.place, region_code=data.region_code,
                              held_on=data.held_on, expected_attendees=data.expected_attendees, status="filed",
                              filed_by=principal.sub)
        session.add(gathering)
        await session.flush()
        self._emit_gathering(session, gathering)
        return gathering

    async def decide_gathering(self, session: AsyncSession, principal: Principal, gathering_id: str,
                               decision: schemas.GatheringDecision) -> Gathering:
        gathering = await session.get(Gathering, gathering_id)
        if gathering is None or not principal.can_see(gathering.region_code):
            raise NotFound(f"gathering {gathering_id} not found")
        if gathering.status != "filed":
            raise HTTPException(status.HTTP_409_CONFLICT, f"already {gathering.status}")
        gathering.status = "approved" if decision.approve else "refused"
        gathering.decided_by, gathering.decision_note = principal.sub, decision.note
        self._emit_gathering(session, gathering)
        return gathering

    @staticmethod
    def _emit_gathering(session: AsyncSession, g: Gathering) -> None:
        emit(session, GatheringFiled(gathering_id=g.id, region_code=g.region_code, kind=g.kind,
                                      expected_attendees=g.expected_attendees, held_on=g.held_on,
                                      status=g.status), g.id)



