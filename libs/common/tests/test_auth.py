"""Tokens, region scope and the FastAPI dependencies of fangkong_common.auth."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import jwt
import pytest
from fastapi import Depends, FastAPI
from pydantic import ValidationError
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common import auth
from fangkong_common.auth import (
    CurrentPrincipal,
    Principal,
    Role,
    TokenError,
    decode_token,
    issue_token,
    region_prefix,
    require_region,
    require_roles,
)
from fangkong_common.settings import CommonSettings

SECRET = "auth-test-secret-of-at-least-32-bytes"
OTHER_SECRET = "another-secret-also-at-least-32-bytes"


# --- region_prefix ----------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "prefix"),
    [("440000", "44"), ("440300", "4403"), ("440305", "440305"), ("110101", "110101"), ("110100", "1101")],
)
def test_region_prefix_strips_trailing_zero_levels(code: str, prefix: str) -> None:
    assert region_prefix(code) == prefix


@pytest.mark.parametrize("code", ["", "44", "44030", "4403050", "44030a", " 440300", "44-300", "44%000", "4403_5"])
def test_region_prefix_rejects_codes_that_are_not_six_digits(code: str) -> None:
    with pytest.raises(ValueError, match="6 digits"):
        region_prefix(code)


@pytest.mark.parametrize("code", ["440300\n", "４４０３００", "٤٤٠٣٠٠"])
def test_region_prefix_rejects_trailing_newline_and_non_ascii_digits(code: str) -> None:
    with pytest.raises(ValueError):
        region_prefix(code)


# --- Principal.can_see --------------------------------------------------------


def test_province_scope_sees_every_code_of_the_province() -> None:
    province = Principal(sub="p", role=Role.commander, regions=["440000"])
    assert province.can_see("440305")
    assert province.can_see("440103")
    assert province.can_see("440000")
    assert not province.can_see("110101")
    assert not province.can_see("450305")


def test_city_scope_sees_its_counties_only() -> None:
    city = Principal(sub="c", role=Role.commander, regions=["440300"])
    assert city.can_see("440305")
    assert city.can_see("440306")
    assert not city.can_see("440103")
    assert not city.can_see("110101")


def test_county_scope_sees_only_itself() -> None:
    county = Principal(sub="k", role=Role.grid_worker, regions=["440305"])
    assert county.can_see("440305")
    assert not county.can_see("440306")
    assert not county.can_see("440300")


def test_several_regions_add_up() -> None:
    both = Principal(sub="b", role=Role.viewer, regions=["440305", "110000"])
    assert both.can_see("440305")
    assert both.can_see("110101")
    assert not both.can_see("440306")


def test_admin_without_regions_sees_everything() -> None:
    admin = Principal(sub="a", role=Role.admin)
    assert admin.sees_everything
    assert admin.can_see("440305")
    assert admin.can_see("650102")


def test_admin_with_regions_is_limited_to_them() -> None:
    admin = Principal(sub="a", role=Role.admin, regions=["440300"])
    assert not admin.sees_everything
    assert admin.can_see("440305")
    assert not admin.can_see("110101")


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.admin])
def test_non_admin_without_regions_sees_nothing(role: Role) -> None:
    nobody = Principal(sub="n", role=role)
    assert not nobody.sees_everything
    assert not nobody.can_see("440305")
    assert not nobody.can_see("110101")


def test_principal_rejects_bad_region_codes() -> None:
    with pytest.raises(ValidationError):
        Principal(sub="x", role=Role.commander, regions=["44"])
    with pytest.raises(ValidationError):
        Principal(sub="x", role=Role.commander, regions=["44%000"])


def test_require_region_raises_403_outside_scope() -> None:
    from fastapi import HTTPException

    city = Principal(sub="c", role=Role.commander, regions=["440300"])
    require_region(city, "440305")  # inside: no error
    with pytest.raises(HTTPException) as caught:
        require_region(city, "110101")
    assert caught.value.status_code == 403
    assert "110101" in caught.value.detail


# --- tokens -------------------------------------------------------------------


def test_token_round_trip_keeps_sub_role_and_regions() -> None:
    token = issue_token(SECRET, role=Role.commander, regions=["440300", "110000"], sub="alice")
    principal = decode_token(token, SECRET)
    assert principal == Principal(sub="alice", role=Role.commander, regions=["440300", "110000"])


def test_token_accepts_role_as_string_and_invents_a_sub() -> None:
    principal = decode_token(issue_token(SECRET, role="lab"), SECRET)
    assert principal.role is Role.lab
    assert principal.sub.startswith("lab-")
    assert principal.regions == []


def test_token_carries_issuer_and_lifetime() -> None:
    before = int(time.time())
    token = issue_token(SECRET, role=Role.viewer, ttl_seconds=600, issuer="fangkong")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], issuer="fangkong", audience="fangkong")
    assert claims["iss"] == "fangkong"
    assert before <= claims["iat"] <= before + 5
    assert claims["exp"] - claims["iat"] == 600
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_issue_token_refuses_bad_region_codes() -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, role=Role.commander, regions=["12"])


def test_expired_token_is_rejected() -> None:
    token = issue_token(SECRET, role=Role.commander, ttl_seconds=-10)
    with pytest.raises(TokenError, match="(?i)expired"):
        decode_token(token, SECRET)


def test_token_signed_with_another_secret_is_rejected() -> None:
    token = issue_token(OTHER_SECRET, role=Role.admin)
    with pytest.raises(TokenError):
        decode_token(token, SECRET)


def test_token_from_another_issuer_is_rejected() -> None:
    token = issue_token(SECRET, role=Role.admin, issuer="someone-else")
    with pytest.raises(TokenError):
        decode_token(token, SECRET)
    # ... but accepted by a verifier expecting that issuer
    assert decode_token(token, SECRET, issuer="someone-else").role is Role.admin


def test_unsigned_token_is_rejected() -> None:
    now = int(time.time())
    claims = {"sub": "mallory", "role": "admin", "iss": "fangkong", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(TokenError):
        decode_token(unsigned, SECRET)


def test_token_without_exp_is_rejected() -> None:
    claims = {"sub": "x", "role": "admin", "iss": "fangkong", "iat": int(time.time())}
    with pytest.raises(TokenError):
        decode_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET)


@pytest.mark.parametrize(
    "extra", [{"role": "emperor"}, {"role": "commander", "regions": ["44"]}], ids=["unknown-role", "bad-region"]
)
def test_signed_token_with_invalid_claims_is_rejected(extra: dict) -> None:
    now = int(time.time())
    claims = {"sub": "x", "iss": "fangkong", "iat": now, "exp": now + 60, **extra}
    with pytest.raises(TokenError):
        decode_token(jwt.encode(claims, SECRET, algorithm="HS256"), SECRET)


def test_garbage_token_is_rejected() -> None:
    with pytest.raises(TokenError):
        decode_token("not.a.jwt", SECRET)


# --- scope_clause on a real database -----------------------------------------


class _ScopeBase(DeclarativeBase):
    pass


class Place(_ScopeBase):
    __tablename__ = "place"

    id: Mapped[int] = mapped_column(primary_key=True)
    region_code: Mapped[str] = mapped_column(String(20))


ROWS = ["440305", "440306", "440103", "110101"]


@pytest.fixture
async def places() -> AsyncIterator[AsyncConnection]:
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.connect() as conn:
        await conn.run_sync(_ScopeBase.metadata.create_all)
        await conn.execute(Place.__table__.insert(), [{"region_code": code} for code in ROWS + ["4_0305"]])
        yield conn
    await engine.dispose()


async def _visible(conn: AsyncConnection, principal: Principal) -> list[str]:
    result = await conn.execute(
        select(Place.region_code).where(principal.scope_clause(Place.region_code)).order_by(Place.region_code)
    )
    return list(result.scalars())


@pytest.mark.parametrize(
    ("role", "regions", "expected"),
    [
        (Role.commander, ["440000"], ["440103", "440305", "440306"]),
        (Role.commander, ["440300"], ["440305", "440306"]),
        (Role.grid_worker, ["440305"], ["440305"]),
        (Role.viewer, ["440305", "110000"], ["110101", "440305"]),
        (Role.commander, ["120000"], []),
        (Role.grid_worker, [], []),
        (Role.admin, ["440100"], ["440103"]),
    ],
)
async def test_scope_clause_filters_rows(
    places: AsyncConnection, role: Role, regions: list[str], expected: list[str]
) -> None:
    principal = Principal(sub="s", role=role, regions=regions)
    assert await _visible(places, principal) == expected
    # the SQL filter and the in-memory check agree on every real code
    assert [code for code in sorted(ROWS) if principal.can_see(code)] == expected


async def test_admin_without_regions_gets_every_row(places: AsyncConnection) -> None:
    assert await _visible(places, Principal(sub="a", role=Role.admin)) == sorted(ROWS + ["4_0305"])


async def test_scope_clause_matches_prefixes_literally_not_as_like_patterns(
    places: AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Validation keeps wildcards out of region codes; the clause must not rely on it.
    monkeypatch.setattr(auth, "region_prefix", lambda code: code)
    sneaky = Principal.model_construct(sub="m", role=Role.commander, regions=["4_0305"])
    assert await _visible(places, sneaky) == ["4_0305"]  # not 440305 via "_" matching any char
    everything = Principal.model_construct(sub="m", role=Role.commander, regions=["%"])
    assert await _visible(places, everything) == []


def test_unvalidated_wildcard_region_cannot_build_a_clause() -> None:
    sneaky = Principal.model_construct(sub="m", role=Role.commander, regions=["%"])
    with pytest.raises(ValueError):
        sneaky.scope_clause(Place.region_code)


# --- FastAPI dependencies -----------------------------------------------------


@pytest.fixture
def api() -> FastAPI:
    app = FastAPI()
    app.state.settings = CommonSettings(jwt_secret=SECRET)

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict:
        return {"sub": principal.sub, "role": principal.role.value, "regions": principal.regions}

    @app.post("/orders")
    async def order(principal: Annotated[Principal, Depends(require_roles(Role.commander))]) -> dict:
        return {"by": principal.sub}

    @app.post("/reports")
    async def report(principal: Annotated[Principal, Depends(require_roles(Role.commander, Role.admin))]) -> dict:
        return {"by": principal.sub}

    return app


@pytest.fixture
async def client(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as client:
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_token_is_401_with_www_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.get("/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "missing bearer token" in response.json()["detail"]


async def test_non_bearer_scheme_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/me", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_garbage_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/me", headers=_bearer("garbage"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"].startswith("invalid token")


@pytest.mark.parametrize(
    "token",
    [
        issue_token(OTHER_SECRET, role=Role.commander),
        issue_token(SECRET, role=Role.commander, ttl_seconds=-10),
        issue_token(SECRET, role=Role.commander, issuer="elsewhere"),
    ],
    ids=["wrong-secret", "expired", "wrong-issuer"],
)
async def test_untrusted_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    assert (await client.get("/me", headers=_bearer(token))).status_code == 401


async def test_valid_token_reaches_the_route_as_principal(client: httpx.AsyncClient) -> None:
    token = issue_token(SECRET, role=Role.grid_worker, regions=["440305"], sub="grid-7")
    response = await client.get("/me", headers=_bearer(token))
    assert response.status_code == 200
    assert response.json() == {"sub": "grid-7", "role": "grid_worker", "regions": ["440305"]}


async def test_wrong_role_is_403_naming_the_role_and_the_allowed_roles(client: httpx.AsyncClient) -> None:
    token = issue_token(SECRET, role=Role.grid_worker, regions=["440305"])
    response = await client.post("/orders", headers=_bearer(token))
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "grid_worker" in detail
    assert "commander" in detail


async def test_right_role_is_200(client: httpx.AsyncClient) -> None:
    token = issue_token(SECRET, role=Role.commander, regions=["440300"], sub="chief")
    response = await client.post("/orders", headers=_bearer(token))
    assert response.status_code == 200
    assert response.json() == {"by": "chief"}


async def test_any_of_several_roles_is_enough(client: httpx.AsyncClient) -> None:
    admin = issue_token(SECRET, role=Role.admin, sub="root")
    assert (await client.post("/reports", headers=_bearer(admin))).status_code == 200
    lab = issue_token(SECRET, role=Role.lab)
    assert (await client.post("/reports", headers=_bearer(lab))).status_code == 403


async def test_role_check_still_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/orders")
    assert response.status_code == 401


def test_region_code_ranges_are_digit_bounds_that_sort_alike_in_every_collation() -> None:
    from fangkong_common.auth import region_code_range

    assert region_code_range("440000") == ("440000", "449999")
    assert region_code_range("440300") == ("440300", "440399")
    assert region_code_range("440305") == ("440305", "440305")
    low, high = region_code_range("440900")  # a prefix ending in 9: no ':' bound
    assert low <= "440901" <= high and not (low <= "441001" <= high)
    assert all(c.isdigit() for c in low + high)


def test_token_carries_the_audience_and_a_wrong_or_missing_one_is_refused() -> None:
    token = issue_token(SECRET, role=Role.viewer)
    assert jwt.decode(token, SECRET, algorithms=["HS256"], audience="fangkong")["aud"] == "fangkong"
    with pytest.raises(TokenError, match="(?i)audience"):
        decode_token(token, SECRET, audience="another-system")
    elsewhere = issue_token(SECRET, role=Role.admin, audience="another-system")
    with pytest.raises(TokenError, match="(?i)audience"):
        decode_token(elsewhere, SECRET)
    now = int(time.time())
    no_audience = jwt.encode({"sub": "x", "role": "admin", "iss": "fangkong", "iat": now, "exp": now + 60},
                             SECRET, algorithm="HS256")
    with pytest.raises(TokenError, match="aud"):
        decode_token(no_audience, SECRET)
