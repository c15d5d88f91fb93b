"""Who may see personal data unmasked, and the audit trail of every unmasked read.

Each service keeps its own ``pii_audit`` table (created by
``fangkong_common.migrations.create_pii_audit_table`` in its migrations), written
in the same transaction as the read's request session, so a read that is
answered is a read that is logged.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote

from fastapi import Request
from sqlalchemy import BigInteger, DateTime, Integer, String, Text, func, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from fangkong_common.auth import Principal, Role
from fangkong_common.db import Base
from fangkong_common.logs import correlation_id

# Roles whose work needs the full ID number and phone: a commander ordering a
# transfer, a doctor classifying a case. Everyone else sees masks.
PII_ROLES: frozenset[Role] = frozenset({Role.admin, Role.commander, Role.medical})


def may_see_pii(principal: Principal) -> bool:
    return principal.role in PII_ROLES


class PiiAuditEntry(Base):
    __tablename__ = "pii_audit"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    role: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))  # read, export, update
    subject: Mapped[str] = mapped_column(String(200), index=True)  # person_key (or a batch label)
    fields: Mapped[str] = mapped_column(String(200))  # comma-separated field names
    reason: Mapped[str | None] = mapped_column(Text(), nullable=True)
    path: Mapped[str | None] = mapped_column(String(500), nullable=True)
    correlation_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


def access_reason(request: Request | None) -> str | None:
    """Why the caller reads: the ``reason`` query parameter or the ``X-Access-Reason`` header
    (percent-encoded UTF-8, since headers are ASCII)."""
    if request is None:
        return None
    header = request.headers.get("x-access-reason")
    return request.query_params.get("reason") or (unquote(header) if header else None)


async def record_pii_read(
    session: AsyncSession,
    principal: Principal,
    subjects: Iterable[str],
    fields: Iterable[str],
    *,
    request: Request | None = None,
    action: str = "read",
) -> int:
    """Log one unmasked read per subject, in ``session``'s transaction. Returns the rows written."""
    field_list = ",".join(sorted(set(fields)))
    now = datetime.now(UTC)
    reason = access_reason(request)
    path = str(request.url.path) if request is not None else None
    rows = [
        {"at": now, "actor": principal.sub, "role": principal.role.value, "action": action, "subject": subject,
         "fields": field_list, "reason": reason, "path": path, "correlation_id": correlation_id.get()}
        for subject in dict.fromkeys(subjects)
    ]
    if rows:
        await session.execute(insert(PiiAuditEntry), rows)
    return len(rows)
