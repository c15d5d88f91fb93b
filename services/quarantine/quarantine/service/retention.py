"""Retention in quarantine: transfers of closed orders lose the personal data they carry.

Orders, stages and check-ins know people by person_key only; what names a person's home
(the transfer's pick-up or drop-off address when it is not a site) and the escort are on
transfers. A transfer is closed when it arrived or was cancelled before the cutoff and its
order (if any) ended before the cutoff too: released, cancelled or handed to a hospital.
Counts (transfers by status, orders, stages) stay as they were.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, exists, func, update
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import clock
from fangkong_common.retention import ERASED

from quarantine.models import Order, Transfer


async def scrub(session: AsyncSession, before: datetime) -> dict[str, int]:
    open_order = exists().where(Order.id == Transfer.order_id,
                                (Order.ended_at.is_(None)) | (Order.ended_at >= before))
    result = await session.execute(update(Transfer).where(
        Transfer.pii_erased_at.is_(None), Transfer.status.in_(("arrived", "cancelled")),
        func.coalesce(Transfer.arrived_at, Transfer.requested_at) < before, ~open_order,
    ).values(
        # A site's name is no one's address: kept, so a site's transfer history still reads.
        from_place=case((Transfer.from_site_id.is_(None), ERASED), else_=Transfer.from_place),
        to_place=case((Transfer.to_site_id.is_(None), ERASED), else_=Transfer.to_place),
        escort=ERASED, pii_erased_at=clock.now(),
    ).execution_options(synchronize_session=False))
    return {"transfers": result.rowcount or 0}
