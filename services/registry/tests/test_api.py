"""The registry API on SQLite and on real PostgreSQL: handle these requests, check the state and the events."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from fangkong_common.audit import PiiAuditEntry
from fangkong_common.auth import Role
from fangkong_common.events.schemas import CaseClass, CaseClassified, TestPositive
from fangkong_common.outbox import OutboxMessage
from fangkong_common.testing import ServiceHarness, eventually

from registry.domain.idcard import make_resident_id
from registry.imports import COLUMNS
from registry.models import Person, RiskFlag, TravelRecord

SZ = "440305"  # Shenzhen Nanshan
COMMANDER = {"regions": ["440300"]}


def rid(n: int, region: str = SZ, born: date = date(1990, 3, 7)) -> str:
    return make_resident_id(region, born, n)


def person_body(n: int, **extra) -> dict:
    return {"id_type": "resident_id", "id_number": rid(n), "name": f"测试{n}", "phone": f"13800{n:06d}",
            "region_code": SZ, "grid": "g1", "address": "南山区科技园一路1号", **extra}


async def events(h: ServiceHarness, topic: str) -> list[dict]:
    async with h.session() as session:
        rows = (await session.scalars(select(OutboxMessage.envelope).where(OutboxMessage.topic == topic)
                                      .order_by(OutboxMessage.seq))).all()
    return [json.loads(r)["payload"] for r in rows]


async def register(h: ServiceHarness, n: int, role=Role.commander, **extra) -> dict:
    response = await h.client.post("/registry/persons", json=person_body(n, **extra), headers=h.headers(role, **COMMANDER))
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_same_id_twice_is_the_same_person_and_the_id_is_the_person_key(service: ServiceHarness) -> None:
    first = await h_post(service, person_body(1))
    assert first.status_code == 201
    again = await h_post(service, person_body(1, name="别名"))
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"] == service.person_key(rid(1))
    assert again.json()["name"] == "测试1"  # not overwritten: corrections go through PATCH
    async with service.session() as session:
        assert await session.scalar(select(func.count()).select_from(Person)) == 1


async def h_post(h: ServiceHarness, body: dict, role=Role.commander, scope=COMMANDER):
    return await h.client.post("/registry/persons", json=body, headers=h.headers(role, **scope))


async def test_a_wrong_resident_id_is_a_422_naming_the_part(service: ServiceHarness) -> None:
    good = rid(2)
    wrong_check = good[:-1] + ("0" if good[-1] != "0" else "1")
    response = await h_post(service, person_body(2, id_number=wrong_check))
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "id_number"] and error["type"] == "id_number.check_digit"
    bad_date = await h_post(service, person_body(3, id_number="440305199002300012"))
    assert bad_date.json()["detail"][0]["type"] == "id_number.birth_date"
    mismatch = await h_post(service, person_body(4, birth_date="1991-01-01"))
    assert mismatch.status_code == 422 and mismatch.json()["detail"][0]["loc"] == ["body", "birth_date"]
    missing = await h_post(service, {"id_number": rid(5), "region_code": SZ})
    assert missing.status_code == 422 and any(e["loc"] == ["body", "name"] for e in missing.json()["detail"])
    async with service.session() as session:
        assert await session.scalar(select(func.count()).select_from(Person)) == 0


async def test_pii_masked_for_grid_workers_and_unmasked_reads_audited(service: ServiceHarness) -> None:
    created = await register(service, 6)
    key = created["id"]
    worker = service.headers(Role.grid_worker, regions=[SZ], grids=["g1"], sub="worker-1")
    seen = (await service.client.get(f"/registry/persons/{key}", headers=worker)).json()
    assert seen["masked"] and seen["id_number"] == rid(6)[:6] + "********" + rid(6)[-4:]
    assert seen["phone"] == "138****" + f"{6:06d}"[-4:] and seen["address"].endswith("****")
    commander = service.headers(Role.commander, regions=["440300"], sub="commander-1")
    full = await service.client.get(f"/registry/persons/{key}", params={"reason": "流调"}, headers=commander)
    assert full.json()["id_number"] == rid(6) and not full.json()["masked"]
    async with service.session() as session:
        audit = (await session.scalars(select(PiiAuditEntry).where(PiiAuditEntry.actor == "commander-1"))).all()
    # Only the unmasked read by commander-1 (the registration was by another sub).
    assert len(audit) == 1 and audit[0].subject == key
    assert any(a.reason == "流调" and a.path == f"/registry/persons/{key}" for a in audit)
    async with service.session() as session:
        assert await session.scalar(select(func.count()).select_from(PiiAuditEntry)
                                    .where(PiiAuditEntry.actor == "worker-1")) == 0
    trail = await service.client.get(f"/registry/audit?subject={key}", headers=commander)
    assert {"commander-1"} <= {e["actor"] for e in trail.json()}


async def test_scope_a_grid_worker_sees_only_their_grid(service: ServiceHarness) -> None:
    mine = await register(service, 7)
    other = await register(service, 8, grid="g2")
    worker = service.headers(Role.grid_worker, regions=[SZ], grids=["g1"])
    listed = (await service.client.get("/registry/persons", headers=worker)).json()
    assert [p["id"] for p in listed["items"]] == [mine["id"]] and listed["total"] == 1
    assert (await service.client.get(f"/registry/persons/{other['id']}", headers=worker)).status_code == 404
    stranger = service.headers(Role.grid_worker, regions=["310101"], grids=["g1"])
    assert (await service.client.get("/registry/persons", headers=stranger)).json()["total"] == 0
    refused = await h_post(service, person_body(9, grid="g2"), Role.grid_worker, {"regions": [SZ], "grids": ["g1"]})
    assert refused.status_code == 403
    # Registering someone already registered in another grid: 409, and nothing of them is shown.
    taken = await h_post(service, person_body(8, grid="g1"), Role.grid_worker, {"regions": [SZ], "grids": ["g1"]})
    assert taken.status_code == 409 and "测试8" not in taken.text
    assert (await service.client.get("/registry/persons")).status_code == 401
    lab = await service.client.get("/registry/persons", headers=service.headers(Role.lab, regions=[SZ]))
    assert lab.status_code == 403


async def test_search_by_id_number_name_and_phone(service: ServiceHarness) -> None:
    person = await register(service, 10)
    commander = service.headers(Role.commander, **COMMANDER)
    for q in (rid(10), "测试10", "13800000010"):
        found = (await service.client.get("/registry/persons", params={"q": q}, headers=commander)).json()
        assert [p["id"] for p in found["items"]] == [person["id"]], q


async def test_possible_duplicates_are_listed_not_merged(service: ServiceHarness) -> None:
    born = date(1985, 6, 1)
    a = await h_post(service, person_body(11, id_number=rid(11, born=born), birth_date=born.isoformat(),
                                          name="李雷", phone="13900000000"))
    b = await h_post(service, {**person_body(12, name="李雷", phone="13900000000"), "id_type": "passport",
                               "id_number": "E12345678", "birth_date": born.isoformat()})
    assert a.status_code == b.status_code == 201
    assert b.json()["possible_duplicates"] == [a.json()["id"]]
    commander = service.headers(Role.commander, **COMMANDER)
    listed = (await service.client.get("/registry/duplicates", headers=commander)).json()
    assert {(d["person_id"], d["other_person_id"]) for d in listed} == {(a.json()["id"], b.json()["id"]),
                                                                        (b.json()["id"], a.json()["id"])}
    reviewed = await service.client.patch(f"/registry/duplicates/{listed[0]['id']}", json={"status": "different"},
                                          headers=commander)
    assert reviewed.status_code == 200 and reviewed.json()["status"] == "different"
    assert (await service.client.get("/registry/duplicates", headers=commander)).json() == []
    async with service.session() as session:  # still two people: a verdict never merges
        assert await session.scalar(select(func.count()).select_from(Person)) == 2


async def test_correction_is_audited(service: ServiceHarness) -> None:
    person = await register(service, 13)
    headers = service.headers(Role.commander, **COMMANDER)
    no_reason = await service.client.patch(f"/registry/persons/{person['id']}", json={"phone": "13700000000"},
                                           headers=headers)
    assert no_reason.status_code == 422
    fixed = await service.client.patch(f"/registry/persons/{person['id']}",
                                       json={"phone": "13700000000", "reason": "本人更正"}, headers=headers)
    assert fixed.status_code == 200 and fixed.json()["phone"] == "13700000000"
    from registry.models import PersonChange
    async with service.session() as session:
        change = await session.scalar(select(PersonChange).where(PersonChange.person_key == person["id"]))
    assert change.changes == {"phone": ["13800000013", "13700000000"]} and change.reason == "本人更正"


async def add_travel(h: ServiceHarness, key: str, body: dict):
    return await h.client.post(f"/registry/persons/{key}/travel", json=body, headers=h.headers(Role.commander, **COMMANDER))


async def test_travel_classifies_and_emits_person_returned_once(service: ServiceHarness) -> None:
    person = await register(service, 14)
    body = {"origin_kind": "international", "origin_country": "SG", "arrival_date": "2022-03-20",
            "port_of_entry": "310000", "served_quarantine_days": 14, "served_quarantine_place": "上海浦东",
            "transport": {"kind": "flight", "number": "SQ830"},
            "places": [{"country": "SG", "from": "2022-01-01", "to": "2022-03-05"}]}
    first = await add_travel(service, person["id"], body)
    assert first.status_code == 201, first.text
    assert first.json()["category"] == "inbound_port_completed_elsewhere"
    again = await add_travel(service, person["id"], body)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    [event] = await events(service, "person.returned")
    assert event["person_key"] == person["id"] and event["served_quarantine_days"] == 14
    assert event["category"] == "inbound_port_completed_elsewhere" and event["port_of_entry"] == "310000"
    shown = (await service.client.get(f"/registry/persons/{person['id']}",
                                      headers=service.headers(Role.commander, **COMMANDER))).json()
    assert shown["category"] == "inbound_port_completed_elsewhere"
    bad = await add_travel(service, person["id"], {"origin_kind": "domestic", "arrival_date": "2022-03-20"})
    assert bad.status_code == 422 and "origin_region_code" in bad.text


async def test_declaring_a_risk_area_flags_everyone_whose_stay_touches_it(service: ServiceHarness) -> None:
    commander = service.headers(Role.commander, **COMMANDER)
    inside = await register(service, 15)
    coarse = await register(service, 16)
    before_window = await register(service, 17)
    elsewhere = await register(service, 18)
    stays = {
        inside["id"]: {"region_code": "320505", "from": "2022-03-10", "to": "2022-03-12"},
        coarse["id"]: {"region_code": "320500", "from": "2022-03-14", "to": "2022-03-14"},  # city level
        before_window["id"]: {"region_code": "320505", "from": "2022-02-01", "to": "2022-02-10"},
        elsewhere["id"]: {"region_code": "320506", "from": "2022-03-10", "to": "2022-03-12"},
    }
    for key, stay in stays.items():
        response = await add_travel(service, key, {"origin_kind": "domestic", "origin_region_code": stay["region_code"],
                                                   "arrival_date": "2022-03-15", "places": [stay]})
        assert response.status_code == 201, response.text
    area = await service.client.post("/registry/risk-areas", json={
        "region_code": "320505", "name": "苏州高新区某小区", "level": "medium", "effective_from": "2022-03-16"},
        headers=commander)
    assert area.status_code == 201, area.text
    assert area.json()["flagged_count"] == 2
    flagged = {e["person_key"] for e in await events(service, "person.risk_flagged")}
    assert flagged == {inside["id"], coarse["id"]}
    shown = (await service.client.get(f"/registry/persons/{inside['id']}", headers=commander)).json()
    [flag] = shown["risk_flags"]
    assert flag["risk_area_id"] == area.json()["id"] and flag["window_start"] == "2022-03-02"
    # Declaring it again (a second area over the same place) flags the same people once more for that area only.
    worker = service.headers(Role.grid_worker, regions=[SZ], grids=["g1"])
    assert (await service.client.post("/registry/risk-areas", json={
        "region_code": "320505", "level": "high", "effective_from": "2022-03-16"}, headers=worker)).status_code == 403
    # A returnee registered after the declaration is flagged on arrival.
    late = await register(service, 19)
    response = await add_travel(service, late["id"], {"origin_kind": "domestic", "origin_region_code": "320505",
                                                      "arrival_date": "2022-03-20",
                                                      "places": [{"region_code": "320505", "from": "2022-03-17",
                                                                  "to": "2022-03-19"}]})
    assert [f["risk_area_id"] for f in response.json()["risk_flags"]] == [area.json()["id"]]
    assert len(await events(service, "person.risk_flagged")) == 3
    lifted = await service.client.post(f"/registry/risk-areas/{area.json()['id']}/lift", headers=commander)
    assert lifted.status_code == 200 and lifted.json()["active"] is False
    async with service.session() as session:
        assert await session.scalar(select(func.count()).select_from(RiskFlag)) == 3


async def test_checkpoint_passes_fevers_unknown_people_and_retries(service: ServiceHarness) -> None:
    commander = service.headers(Role.commander, **COMMANDER)
    known = await register(service, 20)
    checkpoint = (await service.client.post("/registry/checkpoints", json={"name": "南山高速卡口", "region_code": SZ,
                                                                          "kind": "road"}, headers=commander)).json()
    now = datetime(2022, 3, 20, 8, 0, tzinfo=UTC)
    batch = {"passes": [
        {"person_id": known["id"], "temperature_c": 36.5, "passed_at": now.isoformat(), "pass_id": "p1"},
        {"id_number": rid(21), "name": "路人", "temperature_c": 37.3, "passed_at": now.isoformat(), "pass_id": "p2"},
        {"id_number": rid(22), "temperature_c": 38.1, "passed_at": (now + timedelta(minutes=1)).isoformat(),
         "pass_id": "p3"},
    ]}
    first = await service.client.post(f"/registry/checkpoints/{checkpoint['id']}/passes", json=batch, headers=commander)
    assert first.json() == {"accepted": 3, "duplicates": 0, "fevers": 2, "registered": 2}
    retried = await service.client.post(f"/registry/checkpoints/{checkpoint['id']}/passes", json=batch,
                                        headers=commander)
    assert retried.json() == {"accepted": 0, "duplicates": 3, "fevers": 0, "registered": 0}
    fevers = await events(service, "checkpoint.fever")
    assert sorted(e["temperature_c"] for e in fevers) == [37.3, 38.1]
    assert {e["person_key"] for e in fevers} == {service.person_key(rid(21)), service.person_key(rid(22))}
    minimal = (await service.client.get(f"/registry/persons/{service.person_key(rid(21))}", headers=commander)).json()
    assert minimal["registered_via"] == "checkpoint" and minimal["region_code"] == SZ
    bad = await service.client.post(f"/registry/checkpoints/{checkpoint['id']}/passes", headers=commander, json={
        "passes": [{"id_number": rid(23), "temperature_c": 36.6, "passed_at": now.isoformat()},
                   {"id_number": "440305199001010000", "temperature_c": 36.6, "passed_at": now.isoformat()}]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "passes", 1, "id_number"]
    async with service.session() as session:  # nothing of the refused batch was written
        assert await session.get(Person, service.person_key(rid(23))) is None


async def test_a_batch_of_contacts_is_recorded_whole_or_not_at_all(service: ServiceHarness) -> None:
    commander = service.headers(Role.commander, **COMMANDER)
    case = await register(service, 40)
    await service.publish(TestPositive(person_key=case["id"], barcode="T40", lab_id="lab1", region_code=SZ,
                                       resulted_at=datetime(2022, 3, 20, tzinfo=UTC)))

    async def is_case():
        return (await service.client.get(f"/registry/persons/{case['id']}", headers=commander)).json()["is_case"]

    await eventually(is_case)
    exposure = "2022-03-18T10:00:00+08:00"
    first = {"person": person_body(41), "source_person_id": case["id"], "exposure_at": exposure,
             "setting": "household", "reported_by": "流调组"}
    # The second item's source is the first item's person: only known once the first is applied.
    close_key = service.person_key(rid(41))
    second = {"person": person_body(42), "source_person_id": close_key, "exposure_at": exposure,
              "setting": "workplace", "reported_by": "流调组"}
    bad = {"person": person_body(43), "source_person_id": "0" * 64, "exposure_at": exposure,
           "setting": "school", "reported_by": "流调组"}

    refused = await service.client.post("/registry/contacts/batch", headers=commander,
                                        json={"contacts": [first, second, bad]})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert error["loc"][:3] == ["body", "contacts", 2] and "source_person_id" in error["loc"]
    assert await events(service, "contact.identified") == []  # nothing of the first two was kept
    assert (await service.client.get(f"/registry/persons/{close_key}", headers=commander)).status_code == 404

    accepted = await service.client.post("/registry/contacts/batch", headers=commander,
                                         json={"contacts": [first, second]})
    assert accepted.status_code == 200, accepted.text
    assert [c["degree"] for c in accepted.json()["contacts"]] == [1, 2] and accepted.json()["created"] == 2
    again = await service.client.post("/registry/contacts/batch", headers=commander, json={"contacts": [first, second]})
    assert again.json()["created"] == 0  # idempotent, as one at a time
    announced = [(e["person_key"], e["degree"]) for e in await events(service, "contact.identified")]
    assert announced == [(close_key, 1), (service.person_key(rid(42)), 2)]
    too_many = await service.client.post("/registry/contacts/batch", headers=commander,
                                         json={"contacts": [first] * 1001})
    assert too_many.status_code == 422


async def test_contacts_degrees_graph_and_events(service: ServiceHarness) -> None:
    commander = service.headers(Role.commander, **COMMANDER)
    case = await register(service, 30)
    await service.publish(TestPositive(person_key=case["id"], barcode="T1", lab_id="lab1", region_code=SZ,
                                       resulted_at=datetime(2022, 3, 20, tzinfo=UTC)))

    async def is_case():
        person = (await service.client.get(f"/registry/persons/{case['id']}", headers=commander)).json()
        return person["is_case"]

    await eventually(is_case)
    exposure = "2022-03-18T10:00:00+08:00"
    close = await service.client.post("/registry/contacts", headers=commander, json={
        "person": person_body(31), "source_person_id": case["id"], "exposure_at": exposure,
        "setting": "household", "reported_by": "流调组"})
    assert close.status_code == 201, close.text
    assert close.json()["degree"] == 1 and close.json()["case_person_id"] == case["id"]
    secondary = await service.client.post("/registry/contacts", headers=commander, json={
        "person": person_body(32), "source_person_id": close.json()["person_id"], "exposure_at": exposure,
        "setting": "workplace", "reported_by": "流调组"})
    assert secondary.json()["degree"] == 2 and secondary.json()["case_person_id"] == case["id"]
    too_deep = await service.client.post("/registry/contacts", headers=commander, json={
        "person": person_body(33), "source_person_id": secondary.json()["person_id"], "exposure_at": exposure,
        "setting": "school", "reported_by": "流调组"})
    assert too_deep.status_code == 422 and "degree 2" in too_deep.text
    unknown_source = await service.client.post("/registry/contacts", headers=commander, json={
        "person": person_body(34), "source_person_id": "0" * 64, "exposure_at": exposure, "setting": "school",
        "reported_by": "流调组"})
    assert unknown_source.status_code == 422
    # The secondary contact turns out to have met the case too: now a close contact, announced again.
    closer = await service.client.post("/registry/contacts", headers=commander, json={
        "person_id": secondary.json()["person_id"], "source_person_id": case["id"], "exposure_at": exposure,
        "setting": "gathering", "reported_by": "流调组"})
    assert closer.json()["degree"] == 1
    announced = [(e["person_key"], e["degree"]) for e in await events(service, "contact.identified")]
    assert announced == [(close.json()["person_id"], 1), (secondary.json()["person_id"], 2),
                         (secondary.json()["person_id"], 1)]
    # A contact living in another city (协查): recorded, announced for their own region, nothing of them shown.
    elsewhere = await service.client.post("/registry/contacts", headers=commander, json={
        "person": {**person_body(35), "region_code": "420102"}, "source_person_id": case["id"],
        "exposure_at": exposure, "setting": "transport", "reported_by": "流调组"})
    assert elsewhere.status_code == 201 and elsewhere.json()["degree"] == 1
    assert set(elsewhere.json()) == {"id", "person_id", "source_person_id", "case_person_id", "degree",
                                     "exposure_at", "setting", "created"}
    assert (await service.client.get(f"/registry/persons/{elsewhere.json()['person_id']}",
                                     headers=commander)).status_code == 404
    [wuhan] = [e for e in await events(service, "contact.identified") if e["person_key"] == elsewhere.json()["person_id"]]
    assert wuhan["region_code"] == "420102"
    worker = service.headers(Role.grid_worker, regions=[SZ], grids=["g1"])
    refused = await service.client.post("/registry/contacts", headers=worker, json={
        "person": {**person_body(36), "region_code": "420102"}, "source_person_id": case["id"],
        "exposure_at": exposure, "setting": "transport", "reported_by": "网格员"})
    assert refused.status_code == 403
    graph = (await service.client.get(f"/registry/persons/{case['id']}/contacts", headers=commander)).json()
    assert graph["is_case"] is True
    tree = {n["person_id"]: [c["person_id"] for c in n["contacts"]] for n in graph["contacts"]
            if n["person_id"] != elsewhere.json()["person_id"]}
    # Each person appears once, on their shortest chain to the case.
    assert tree == {close.json()["person_id"]: [], secondary.json()["person_id"]: []}
    chain = (await service.client.get(f"/registry/persons/{close.json()['person_id']}/contacts",
                                      headers=commander)).json()
    assert [n["person_id"] for n in chain["contacts"]] == [secondary.json()["person_id"]]
    assert [e["source_person_id"] for e in chain["exposed_to"]] == [case["id"]]
    await service.publish(CaseClassified(person_key=case["id"], origin_region_code=SZ, treating_region_code="440100",
                                         classification=CaseClass.confirmed,
                                         classified_at=datetime(2022, 3, 21, tzinfo=UTC)))
    from registry.models import Case

    async def classified():
        async with service.session() as session:
            return (await session.get(Case, case["id"])).classification == "confirmed"

    await eventually(classified)


async def test_vaccinations_and_progress_against_targets(service: ServiceHarness) -> None:
    commander = service.headers(Role.commander, **COMMANDER)
    teen = await h_post(service, person_body(40, id_number=rid(40, born=date(2008, 6, 1))))
    adult = await register(service, 41)
    target = await service.client.put("/registry/vaccination-targets", headers=commander, json={
        "region_code": SZ, "age_group": "12-14", "target_people": 2, "deadline": "2022-06-30"})
    assert target.status_code == 200
    for person, dose in ((teen.json(), 1), (teen.json(), 2), (adult, 1)):
        response = await service.client.post("/registry/vaccinations", headers=commander, json={
            "person_id": person["id"], "vaccine": "科兴", "dose_number": dose,
            "vaccinated_on": f"2022-0{3 + dose}-01"})
        assert response.status_code == 201, response.text
    again = await service.client.post("/registry/vaccinations", headers=commander, json={
        "person_id": adult["id"], "vaccine": "科兴", "dose_number": 1, "vaccinated_on": "2022-04-01"})
    assert again.status_code == 200 and not again.json()["created"]
    progress = (await service.client.get("/registry/vaccination-progress", params={"region_code": "440300",
                                                                                   "as_of": "2022-05-01"},
                                         headers=commander)).json()
    groups = {g["age_group"]: g for g in progress["groups"]}
    assert groups["12-14"]["first_dose"] == 1 and groups["12-14"]["full_course"] == 1
    assert groups["12-14"]["target_people"] == 2 and groups["12-14"]["ratio"] == 0.5
    assert groups["12-14"]["days_left"] == 60
    assert groups["18+"]["first_dose"] == 1 and groups["18+"]["target_people"] is None
    assert [e["age_group"] for e in await events(service, "vaccination.recorded")] == ["12-14", "12-14", "18+"]


async def test_gatherings_over_100_are_refused_and_filings_need_approval(service: ServiceHarness) -> None:
    worker = service.headers(Role.grid_worker, regions=[SZ], grids=["g1"])
    commander = service.headers(Role.commander, **COMMANDER)
    body = {"kind": "wedding", "organiser": "王五", "place": "南山酒店", "region_code": SZ, "held_on": "2022-04-10",
            "expected_attendees": 101}
    refused = await service.client.post("/registry/gatherings", json=body, headers=worker)
    assert refused.status_code == 422 and "100" in refused.json()["detail"][0]["msg"]
    filed = await service.client.post("/registry/gatherings", json={**body, "expected_attendees": 100}, headers=worker)
    assert filed.status_code == 201 and filed.json()["status"] == "filed"
    assert (await service.client.post(f"/registry/gatherings/{filed.json()['id']}/decision", json={"approve": True},
                                      headers=worker)).status_code == 403
    approved = await service.client.post(f"/registry/gatherings/{filed.json()['id']}/decision",
                                         json={"approve": True, "note": "控制在100人内"}, headers=commander)
    assert approved.json()["status"] == "approved"
    twice = await service.client.post(f"/registry/gatherings/{filed.json()['id']}/decision", json={"approve": False},
                                      headers=commander)
    assert twice.status_code == 409
    assert [e["status"] for e in await events(service, "gathering.filed")] == ["filed", "approved"]


def workbook_bytes(rows: list[list]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append([header for _, header, _ in COLUMNS])
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def import_row(n: int, **overrides) -> list:
    values = {"id_type": "身份证", "id_number": rid(n), "name": f"返乡{n}", "phone": "13800000000",
              "region_code": SZ, "grid": "g1", "address": "南山", "origin_kind": "国内", "origin_country": None,
              "origin_region_code": "110105", "arrival_date": "2022-03-20", "port_of_entry": None,
              "transport_kind": "高铁", "transport_number": "G79", "served_quarantine_days": 0,
              "served_quarantine_place": None, **overrides}
    return [values[field] for field, _, _ in COLUMNS]


async def test_import_stores_valid_rows_reports_bad_ones_and_is_idempotent(service: ServiceHarness) -> None:
    commander = service.headers(Role.commander, **COMMANDER)
    template = await service.client.get("/registry/import-template.xlsx", headers=commander)
    headers = [c.value for c in load_workbook(io.BytesIO(template.content)).active[1]]
    assert headers[:3] == ["证件类型", "证件号码", "姓名"]
    content = workbook_bytes([
        import_row(50),
        import_row(51, id_number=rid(51)[:-1] + ("0" if rid(51)[-1] != "0" else "1")),
        import_row(52, arrival_date="2022-02-30"),
        import_row(53, origin_kind="境外", origin_country="JP", origin_region_code=None, port_of_entry="440300"),
        import_row(54, region_code="310101"),  # outside the commander's city
    ])
    files = {"file": ("返乡人员.xlsx", content, "application/octet-stream")}
    report = (await service.client.post("/registry/import", files=files, headers=commander)).json()
    assert report["rows"] == 5 and report["stored"] == 2 and report["rejected"] == 3
    assert {(e["row"], e["column"]) for e in report["errors"]} == {(3, "证件号码"), (4, "抵达日期"),
                                                                   (6, "现住地行政区划代码")}
    second = (await service.client.post("/registry/import", files=files, headers=commander)).json()
    assert second["stored"] == 0 and second["unchanged"] == 2
    async with service.session() as session:
        assert await session.scalar(select(func.count()).select_from(TravelRecord)) == 2
    assert len(await events(service, "person.returned")) == 2


async def test_import_reads_gbk_csv_and_refuses_what_is_not_a_spreadsheet(service: ServiceHarness) -> None:
    commander = service.headers(Role.commander, **COMMANDER)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow([header for _, header, _ in COLUMNS])
    writer.writerow(import_row(60))
    report = (await service.client.post("/registry/import", headers=commander, files={
        "file": ("list.csv", text.getvalue().encode("gbk"), "text/csv")})).json()
    assert report["stored"] == 1, report
    async with service.session() as session:
        assert (await session.get(Person, service.person_key(rid(60)))).name == "返乡60"
    broken = await service.client.post("/registry/import", headers=commander, files={
        "file": ("list.xlsx", b"PK\x03\x04 not really a zip", "application/octet-stream")})
    assert broken.status_code == 422 and broken.json()["detail"][0]["loc"] == ["body", "file"]
    no_columns = await service.client.post("/registry/import", headers=commander, files={
        "file": ("list.csv", "a,b\n1,2\n".encode(), "text/csv")})
    assert no_columns.status_code == 422 and "证件号码" in no_columns.text
