"""Bad tokens are refused on every route of every service; production refuses weak secrets, in
the settings and when a service starts; the login that hands out tokens is rate-limited."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jwt
import pytest

from fangkong_cli.platform import create_platform
from fangkong_common.auth import Role, issue_token
from fangkong_common.settings import CommonSettings
from fangkong_common.testing import running
from dashboard.config import Settings as DashboardSettings
from dashboard.main import create_app as create_dashboard
from tests.test_tokens_everywhere import OPEN, routes

pytestmark = pytest.mark.proof("access")


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def bad_tokens(secret: str) -> dict[str, str]:
    """Each way a token can be wrong. The payload is an admin's: if any were taken, it could do anything."""
    now = int(time.time())
    good = issue_token(secret, role=Role.admin, sub="mallory")
    header, payload, signature = good.split(".")
    claims = jwt.decode(good, secret, algorithms=["HS256"], audience="fangkong")
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    return {
        "expired": issue_token(secret, role=Role.admin, ttl_seconds=-60),
        "signature tampered": f"{header}.{payload}.{flipped}",
        "payload edited (regions)": f"{header}.{_b64({**claims, 'role': 'admin', 'regions': ['110000']})}.{signature}",
        "alg=none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "alg=HS512": jwt.encode(claims, secret * 2, algorithm="HS512"),
        "wrong key": issue_token("a-different-installation-secret-0123456789", role=Role.admin),
        "wrong audience": issue_token(secret, role=Role.admin, audience="another-system"),
        "no audience": jwt.encode({k: v for k, v in claims.items() if k != "aud"}, secret, algorithm="HS256"),
        "wrong issuer": issue_token(secret, role=Role.admin, issuer="someone-else"),
        "no exp": jwt.encode({"sub": "x", "role": "admin", "iss": "fangkong", "aud": "fangkong",
                                               "iat": now}, secret, algorithm="HS256"),
        "garbage": "not.a.token",
    }


async def test_expired_tampered_and_wrong_audience_tokens_are_refused_everywhere(tmp_path: Path, proof) -> None:
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://badtok-{uuid.uuid4().hex}"})
    secret = platform.apps["registry"].state.settings.jwt_secret.get_secret_value()
    tokens = bad_tokens(secret)
    proof.injected(f"{len(tokens)} kinds of bad token ({', '.join(tokens)}) on every route of the 4 services")
    answered: dict[int, int] = {}
    calls = 0
    async with platform.fallback.router.lifespan_context(platform.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://p") as client:
            good = {"Authorization": f"Bearer {issue_token(secret, role=Role.admin)}"}
            assert (await client.get("/registry/persons", headers=good)).status_code == 200  # the door works
            for app in platform.apps.values():
                for method, path in routes(app):
                    if path in OPEN or path.endswith(("/healthz", "/readyz")):
                        continue
                    url = re.sub(r"\{[^}]+\}", "x", path)
                    for kind, token in tokens.items():
                        response = await client.request(method, url, headers={"Authorization": f"Bearer {token}"})
                        calls += 1
                        answered[response.status_code] = answered.get(response.status_code, 0) + 1
                        assert response.status_code == 401, (kind, method, path, response.status_code,
                                                             response.text[:200])
            # The dashboard also takes ?token= (EventSource, download links): the same checks apply.
            for kind, token in tokens.items():
                response = await client.get("/dashboard/kpis", params={"token": token})
                calls += 1
                answered[response.status_code] = answered.get(response.status_code, 0) + 1
                assert response.status_code == 401, (kind, response.text)
    proof.measured(f"{calls} requests with bad tokens: {answered.get(401, 0)} answered 401, "
                   f"{calls - answered.get(401, 0)} anything else")


def test_production_refuses_default_or_short_secrets(tmp_path: Path, proof) -> None:
    strong = "s" * 32
    cases = {"default jwt": {"person_key_secret": strong}, "default person key": {"jwt_secret": strong},
             "empty": {"jwt_secret": "", "person_key_secret": strong},
             "31-byte jwt": {"jwt_secret": "j" * 31, "person_key_secret": strong},
             "31-byte person key": {"jwt_secret": strong, "person_key_secret": "p" * 31},
             "20 UTF-8 bytes in 8 chars": {"jwt_secret": "防控防控防控ab", "person_key_secret": strong}}
    proof.injected(f"FANGKONG_ENV=production with {len(cases)} weak secret settings; `fangkong serve` started "
                   "with a 31-byte JWT secret")
    refused = 0
    for label, overrides in cases.items():
        with pytest.raises(ValueError, match="FANGKONG_"):
            CommonSettings(env="production", **overrides)
        refused += 1
    assert CommonSettings(env="production", jwt_secret=strong, person_key_secret=strong).env == "production"

    # A service process: exits non-zero before listening, naming the variable.
    fangkong = Path(sys.executable).with_name("fangkong")
    exits = []
    for label, secret in (("31-byte", "x" * 31),):  # the default secret: refused by the same check, above
        env = {**os.environ, "FANGKONG_ENV": "production", "FANGKONG_PERSON_KEY_SECRET": strong,
               "FANGKONG_DATA_DIR": str(tmp_path), "FANGKONG_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/r.db"}
        env.pop("FANGKONG_JWT_SECRET", None)
        if secret is not None:
            env["FANGKONG_JWT_SECRET"] = secret
        started = time.monotonic()
        done = subprocess.run([str(fangkong), "serve", "registry", "--port", "0"], env=env, capture_output=True,
                              text=True, timeout=60, check=False)
        exits.append((label, done.returncode, round(time.monotonic() - started, 1)))
        assert done.returncode != 0, (label, done.stdout, done.stderr)
        assert "FANGKONG_JWT_SECRET" in done.stderr + done.stdout, (label, done.stderr[-2000:])
        assert "Traceback" not in done.stderr, done.stderr[-2000:]  # one clear line for the operator
    proof.measured(f"{refused}/{len(cases)} weak settings refused; `fangkong serve registry` exit codes "
                   + ", ".join(f"{label} secret {code} in {secs} s" for label, code, secs in exits))


async def test_login_is_rate_limited_per_address_and_role(tmp_path: Path, proof) -> None:
    settings = DashboardSettings(database_url=f"sqlite+aiosqlite:///{tmp_path}/d.db",
                                 bus_url=f"memory://login-{uuid.uuid4().hex}", login_rate_limit=10,
                                 login_rate_window_seconds=60)
    proof.injected("30 POST /dashboard/login as commander from one address, 5 as viewer from it, "
                   "5 as commander from another address (limit 10 per minute per address and role)")
    async with running(create_dashboard(settings)) as h:
        body = {"role": "commander", "region_code": "440305"}
        statuses = [(await h.client.post("/dashboard/login", json=body)).status_code for _ in range(30)]
        limited = await h.client.post("/dashboard/login", json=body)
        viewer = [(await h.client.post("/dashboard/login", json={**body, "role": "viewer"})).status_code
                  for _ in range(5)]
        other_ip = httpx.AsyncClient(transport=httpx.ASGITransport(app=h.app, client=("10.0.0.9", 1234)),
                                     base_url="http://svc")
        async with other_ip:
            elsewhere = [(await other_ip.post("/dashboard/login", json=body)).status_code for _ in range(5)]
        # What it handed out still works: the limit guards issuing, not using.
        token = (await h.client.post("/dashboard/login", json={**body, "role": "viewer"})).json()["token"]
        assert (await h.client.get("/dashboard/kpis", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert statuses[:10] == [200] * 10 and statuses[10:] == [429] * 20, statuses
    retry_after = int(limited.headers["Retry-After"])
    assert 1 <= retry_after <= 60 and limited.status_code == 429 and "登录过于频繁" in limited.json()["detail"]
    assert viewer == [200] * 5 and elsewhere == [200] * 5
    proof.measured(f"commander from one address: {statuses.count(200)} of 30 issued, {statuses.count(429)} "
                   f"answered 429 (Retry-After {retry_after} s); viewer from it 5/5 and another address 5/5 issued")
