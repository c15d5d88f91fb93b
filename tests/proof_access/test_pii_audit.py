"""The trail of unmasked reads: a commander queries it for the people of his region (and only
those); the roles that work with masks cannot query it at all."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from fangkong_common.auth import Role
from fangkong_common.identity import make_resident_id
from fangkong_common.testing import running
from registry.config import Settings
from registry.main import create_app

pytestmark = pytest.mark.proof("access")
A, B, CITY = "440305", "440306", "440300"


async def test_a_commander_queries_the_audit_of_his_region_only(tmp_path: Path, proof) -> None:
    proof.injected("unmasked reads of people of 440305 and 440306 by admin, commanders and a doctor (with a "
                   "reason); the audit queried by each district's commander, the city's, and 6 other roles")
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/r.db", bus_url=f"memory://audit-{id(tmp_path)}")
    async with running(create_app(settings)) as h:
        keys: dict[str, list[str]] = {A: [], B: []}
        admin = h.headers(Role.admin, sub="registrar")
        for n, code in enumerate([A, A, B, B]):
            body = {"id_number": make_resident_id(code, date(1990, 1, 1 + n), 200 + n), "name": f"审计{n}",
                    "phone": f"1380000{n:04d}", "region_code": code, "grid": "g1", "address": f"街道{n}号"}
            response = await h.client.post("/registry/persons", json=body, headers=admin)
            assert response.status_code == 201, response.text
            keys[code].append(response.json()["id"])
        readers = {A: h.headers(Role.commander, regions=[A], sub="commander-A"),
                   B: h.headers(Role.commander, regions=[B], sub="commander-B")}
        for code, headers in readers.items():
            for key in keys[code]:
                seen = await h.client.get(f"/registry/persons/{key}", params={"reason": "流调核实"}, headers=headers)
                assert not seen.json()["masked"]
        doctor = h.headers(Role.medical, regions=[A], sub="doctor-A")
        listed = await h.client.get("/registry/persons", headers=doctor, params={"region_code": A})
        assert len(listed.json()["items"]) == 2 and not listed.json()["items"][0]["masked"]
        worker = h.headers(Role.grid_worker, regions=[A], grids=["g1"], sub="worker-A")
        masked = await h.client.get("/registry/persons", headers=worker)
        assert all(p["masked"] for p in masked.json()["items"]) and len(masked.json()["items"]) == 2

        trails = {}
        for label, regions in (("A", [A]), ("B", [B]), ("city", [CITY])):
            response = await h.client.get("/registry/audit", params={"limit": 1000},
                                          headers=h.headers(Role.commander, regions=regions))
            assert response.status_code == 200, response.text
            trails[label] = response.json()
        other_for_a = [r for r in trails["A"] if r["subject"] not in keys[A]]
        other_for_b = [r for r in trails["B"] if r["subject"] not in keys[B]]
        probe = await h.client.get("/registry/audit", params={"subject": keys[B][0]},
                                   headers=h.headers(Role.commander, regions=[A]))
        refused = {role.value: (await h.client.get("/registry/audit", headers=h.headers(role, regions=[A]))).status_code
                   for role in (Role.grid_worker, Role.viewer, Role.medical, Role.integration, Role.site_staff,
                                Role.lab)}

    actors_a = {r["actor"] for r in trails["A"]}
    assert {"registrar", "commander-A", "doctor-A"} <= actors_a and "worker-A" not in actors_a
    assert not other_for_a and not other_for_b and probe.json() == []
    assert any(r["reason"] == "流调核实" and r["path"].startswith("/registry/persons/") for r in trails["A"])
    assert len(trails["city"]) == len(trails["A"]) + len(trails["B"])
    assert set(refused.values()) == {403}, refused
    proof.measured(f"commander 440305 sees {len(trails['A'])} audit rows ({len(other_for_a)} of other regions), "
                   f"440306 {len(trails['B'])} ({len(other_for_b)}), city {len(trails['city'])}; masked reads by the "
                   f"grid worker audited: 0; {len(refused)}/6 other roles refused (403)")
