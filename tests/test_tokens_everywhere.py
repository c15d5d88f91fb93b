"""Every endpoint of every service but health, metrics, login and the screen's static page
refuses a caller without a token (401), and a token signed with another secret (401)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute

from fangkong_cli.platform import create_platform
from fangkong_cli.services import SERVICE_NAMES
from fangkong_common.auth import Role, issue_token

OPEN = {"/healthz", "/readyz", "/metrics", "/dashboard/login", "/", "/dashboard/", "/dashboard/screen", "/docs"} | {
    f"/{name}/{page}" for name in SERVICE_NAMES for page in ("docs", "docs/oauth2-redirect", "redoc", "openapi.json")}


def routes(app) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
                found.append((method, route.path))
        for inner in getattr(getattr(route, "original_router", None), "routes", []) or []:
            if isinstance(inner, APIRoute):
                for method in sorted(inner.methods - {"HEAD", "OPTIONS"}):
                    found.append((method, inner.path))
    return found


async def test_no_endpoint_answers_without_a_valid_token(tmp_path: Path) -> None:
    platform = create_platform({"data_dir": tmp_path, "bus_url": f"memory://tokens-{uuid.uuid4().hex}"})
    forged = issue_token("not-the-deployment-secret-but-long-enough-0123456789", role=Role.admin)
    checked = 0
    async with platform.fallback.router.lifespan_context(platform.fallback):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=platform), base_url="http://p") as client:
            for name, app in platform.apps.items():
                for method, path in routes(app):
                    if path in OPEN or path.endswith(("/healthz", "/readyz")):
                        continue
                    url = re.sub(r"\{[^}]+\}", "x", path)
                    for headers in ({}, {"Authorization": f"Bearer {forged}"}):
                        response = await client.request(method, url, headers=headers)
                        assert response.status_code == 401, (name, method, path, headers and "forged",
                                                             response.status_code, response.text[:200])
                    checked += 1
    assert checked >= 60  # the four services' APIs, not an empty loop
