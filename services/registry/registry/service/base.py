"""What every part of the registry's use cases shares: scope, helpers, the settings."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from fastapi import HTTPException, status
from sqlalchemy import and_
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import clock
from fangkong_common import outbox
from fangkong_common.auth import Principal, Role
from fangkong_common.events.envelope import Envelope
from fangkong_common.identity import person_key

from registry.config import Settings
from registry.models import Person

SOURCE = "registry"
TRACERS_ACROSS_REGIONS = frozenset({Role.admin, Role.commander, Role.medical, Role.integration})
PII_FIELDS = ("id_number", "phone", "address")


def utcnow() -> datetime:
    return clock.now()


def emit(session: AsyncSession, payload, key: str) -> None:
    outbox.add(session, Envelope.wrap(payload, source=SOURCE, key=key))


# --- scope -----------------------------------------------------------------


def person_scope(principal: Principal):
    """Rows of Person the caller may see: their regions, and for a grid worker their grids."""
    clause = principal.scope_clause(Person.region_code)
    if principal.role is Role.grid_worker and principal.grids:
        clause = and_(clause, Person.grid.in_(principal.grids))
    return clause


def require_person_scope(principal: Principal, region_code: str, grid: str | None) -> None:
    if not principal.can_see(region_code):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {region_code} is outside your scope")
    if principal.role is Role.grid_worker and principal.grids and grid not in principal.grids:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"grid {grid!r} is not one of your grids")



def mask_address(address: str | None) -> str | None:
    if not address:
        return address
    return address[:6] + "****"


def jsonable(value):
    return value.isoformat() if isinstance(value, date) else value


def as_aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass
class RegistryBase:
    settings: Settings

    def key_of(self, id_type: str, id_number: str) -> str:
        return person_key(id_type, id_number, self.settings.person_key_secret.get_secret_value())

