"""Closed-loop transfers (点对点闭环): requested → dispatched → arrived."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common.auth import Principal
from fangkong_common.errors import Conflict

from quarantine.domain.transfers import allowed_next, can_advance
from quarantine.models import (
    Transfer,
)
from quarantine.service.common import Unprocessable


async def create_transfer(session: AsyncSession, *, principal: Principal, now: datetime,
                          **fields: Any) -> Transfer:
    transfer = Transfer(id=str(uuid.uuid4()), status="requested", requested_at=now, requested_by=principal.sub,
                        **fields)
    session.add(transfer)
    await session.flush()
    return transfer


async def advance_transfer(session: AsyncSession, transfer: Transfer, target: str, at: datetime) -> Transfer:
    if not can_advance(transfer.status, target):
        raise Conflict(f"转运单状态 {transfer.status} 不能变为 {target}；允许：{allowed_next(transfer.status) or '无'}")
    if target == "dispatched" and not (transfer.vehicle and transfer.escort):
        raise Unprocessable([{"loc": ["body", "vehicle"], "msg": "派车前须登记车辆和随车人员"}])
    transfer.status = target
    if target == "dispatched":
        transfer.dispatched_at = at
    elif target == "arrived":
        transfer.arrived_at = at
    await session.flush()
    return transfer
