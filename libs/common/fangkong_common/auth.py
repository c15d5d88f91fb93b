"""Tokens and scope.

A token (HS256 JWT, PyJWT) carries the caller's role and the region codes it may
see. A 6-digit GB/T 2260 code covers its children: ``440000`` (a province)
covers every code starting ``44``, ``440300`` (a city) every code starting
``4403``, ``440305`` (a county) only itself. ``admin`` with no regions sees
the whole country; any other role with no regions sees nothing.

Every token names its audience (``aud``, "fangkong" unless the installation sets
``FANGKONG_JWT_AUDIENCE``) and verification requires it: a JWT signed for another
system that happens to share the secret, or one without an audience, is refused.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from enum import StrEnum
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import ColumnElement, false, or_, true
from sqlalchemy.orm import InstrumentedAttribute

REGION_CODE = re.compile(r"[0-9]{6}")
DEFAULT_AUDIENCE = "fangkong"


class Role(StrEnum):
    admin = "admin"
    commander = "commander"
    grid_worker = "grid_worker"
    site_staff = "site_staff"
    lab = "lab"
    medical = "medical"
    viewer = "viewer"
    integration = "integration"


def region_prefix(code: str) -> str:
    """The prefix every code under ``code`` shares: 440000 → 44, 440300 → 4403."""
    if not REGION_CODE.fullmatch(code):
        raise ValueError(f"region code must be 6 digits (GB/T 2260), got {code!r}")
    prefix = code
    for _ in range(2):
        if prefix.endswith("00"):
            prefix = prefix[:-2]
    return prefix


def region_code_range(code: str) -> tuple[str, str]:
    """The first and last 6-digit code under ``code`` (inclusive): 440300 → ("440300", "440399").

    A BETWEEN on equal-length digit strings uses a plain index and sorts the same in
    every collation (a LIKE 'x%' or an upper bound like '440:' does not, outside "C").
    """
    prefix = region_prefix(code)
    return prefix.ljust(6, "0"), prefix.ljust(6, "9")


def within_region(column: InstrumentedAttribute | ColumnElement, code: str) -> ColumnElement[bool]:
    """WHERE ``column`` (6-digit codes) lies under ``code``."""
    low, high = region_code_range(code)
    return column.between(low, high)


class Principal(BaseModel):
    sub: str
    role: Role
    regions: list[str] = Field(default_factory=list)
    grids: list[str] = Field(default_factory=list, description="grid workers: the grids (网格) within their regions")
    sites: list[str] = Field(default_factory=list, description="site staff and labs: the site or lab ids they serve")

    @field_validator("regions")
    @classmethod
    def _valid_codes(cls, regions: list[str]) -> list[str]:
        for code in regions:
            region_prefix(code)
        return regions

    @property
    def sees_everything(self) -> bool:
        return self.role is Role.admin and not self.regions

    def prefixes(self) -> list[str]:
        return [region_prefix(code) for code in self.regions]

    def can_see(self, region_code: str) -> bool:
        if self.sees_everything:
            return True
        return any(region_code.startswith(prefix) for prefix in self.prefixes())

    def scope_clause(self, column: InstrumentedAttribute | ColumnElement) -> ColumnElement[bool]:
        """A WHERE clause keeping rows whose region code the caller may see."""
        if self.sees_everything:
            return true()
        prefixes = self.prefixes()
        if not prefixes:
            return false()
        return or_(*(column.startswith(prefix, autoescape=True) for prefix in prefixes))


class TokenError(ValueError):
    pass


def issue_token(
    secret: str,
    *,
    role: Role | str,
    regions: Iterable[str] = (),
    grids: Iterable[str] = (),
    sites: Iterable[str] = (),
    sub: str | None = None,
    ttl_seconds: int = 8 * 3600,
    issuer: str = "fangkong",
    audience: str = DEFAULT_AUDIENCE,
) -> str:
    principal = Principal(sub=sub or f"{Role(role).value}-{uuid.uuid4().hex[:8]}", role=Role(role),
                          regions=list(regions), grids=list(grids), sites=list(sites))
    now = int(time.time())
    claims = {
        "sub": principal.sub,
        "role": principal.role.value,
        "regions": principal.regions,
        "grids": principal.grids,
        "sites": principal.sites,
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def decode_token(token: str, secret: str, *, issuer: str = "fangkong",
                 audience: str = DEFAULT_AUDIENCE) -> Principal:
    # Only HS256: "none" and asymmetric algorithms (key confusion) never verify here.
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer=issuer, audience=audience,
                            options={"require": ["exp", "iat", "sub", "iss", "aud"]})
        return Principal(sub=claims["sub"], role=claims["role"], regions=claims.get("regions", []),
                         grids=claims.get("grids", []), sites=claims.get("sites", []))
    except (jwt.PyJWTError, ValueError, KeyError) as exc:
        raise TokenError(str(exc)) from exc


_bearer = HTTPBearer(auto_error=False)


async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """FastAPI dependency: the caller, from ``Authorization: Bearer <jwt>``; 401 otherwise."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    settings = request.app.state.settings
    try:
        principal = decode_token(credentials.credentials, settings.jwt_secret.get_secret_value(),
                                 issuer=settings.jwt_issuer, audience=settings.jwt_audience)
    except TokenError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid token: {exc}",
                            headers={"WWW-Authenticate": "Bearer"}) from exc
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role):
    """Dependency factory: 403 unless the caller has one of ``roles``."""
    allowed = set(roles)

    async def check(principal: CurrentPrincipal) -> Principal:
        if principal.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"role {principal.role.value} may not do this; needs one of "
                                f"{sorted(r.value for r in allowed)}")
        return principal

    return check


def require_region(principal: Principal, region_code: str) -> None:
    """403 when the caller's scope does not cover ``region_code``."""
    if not principal.can_see(region_code):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"region {region_code} is outside your scope")
