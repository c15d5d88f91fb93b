"""The testing API on SQLite and PostgreSQL: sites, labs, tubes, results, orders, events, scope."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, text

from fangkong_common.events.schemas import QuarantineTestDue
from testing.models import TestOrder, Tube, TubeMember

NOW = datetime.now(UTC).replace(microsecond=0)


def tube(barcode, members, site_id, ratio=10, **extra):
    return {"barcode": barcode, "ratio": ratio, "members": members, "site_id": site_id,
            "collected_at": (NOW - timedelta(hours=1)).isoformat(), **extra}


def bc() -> str:
    return "T" + uuid.uuid4().hex[:12].upper()


async def test_sites_and_labs_answer_with_an_id_and_are_listed_in_scope(svc, kit):
    site = await kit.make_site(svc)
    lab = await kit.make_lab(svc, travel_minutes={site: 25})
    # a Guangzhou commander creates a lab there; Shenzhen does not see it
    r = await svc.client.post("/testing/labs", headers=kit.commander(svc, "440100"), json={
        "name": "天河实验室", "region_code": "440106", "latitude": 23.13, "longitude": 113.36,
        "tubes_per_day": 30000, "reagent_stock": 50000})
    assert r.status_code == 201
    gz_lab = r.json()["id"]
    sites = (await svc.client.get("/testing/sites", headers=kit.commander(svc))).json()
    labs = (await svc.client.get("/testing/labs", headers=kit.commander(svc))).json()
    assert [s["id"] for s in sites] == [site]
    assert [x["id"] for x in labs] == [lab] and labs[0]["reagent_stock"] == 100_000
    assert gz_lab not in {x["id"] for x in labs}
    # a Shenzhen commander may not create one in Guangzhou
    r = await svc.client.post("/testing/labs", headers=kit.commander(svc), json={
        "name": "x", "region_code": "440106", "latitude": 23.1, "longitude": 113.3, "tubes_per_day": 1,
        "reagent_stock": 1})
    assert r.status_code == 403
    assert (await svc.client.get("/testing/sites")).status_code == 401
    r = await svc.client.post("/testing/sites", headers=kit.commander(svc), json={
        "name": "x", "region_code": "4403", "latitude": 22.5, "longitude": 113.9, "swabs_per_hour": 10})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "region_code"


async def test_tubes_store_person_keys_never_id_numbers_and_emit_collected(svc, kit, events):
    site = await kit.make_site(svc)
    ids = [kit.id_number(i) for i in range(1, 11)]
    b1, b2 = bc(), bc()
    r = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json={"tubes": [
        tube(b1, ids, site), tube(b2, [svc.person_key(kit.id_number(50))], site, ratio=1)]})
    assert r.status_code == 201, r.text
    assert r.json()["accepted"] == 2
    async with svc.session() as s:
        keys = set(await s.scalars(select(TubeMember.person_key).where(TubeMember.barcode == b1)))
        assert keys == {svc.person_key(i) for i in ids}
        dump = " ".join(str(v) for row in (await s.execute(text("SELECT * FROM tube_members"))).all() for v in row)
        dump += " ".join(str(v) for row in (await s.execute(text("SELECT envelope FROM outbox"))).all() for v in row)
    assert not any(i in dump for i in ids)  # the raw ID number is nowhere
    await kit.eventually(lambda: _async(len(events.of("test.collected", {b1, b2})) == 2))
    collected = {e.payload["barcode"]: e.payload for e in events.of("test.collected", {b1, b2})}
    assert sorted(collected[b1]["member_keys"]) == sorted(svc.person_key(i) for i in ids)
    assert collected[b1]["ratio"] == 10 and collected[b2]["ratio"] == 1
    assert collected[b1]["region_code"] == kit.DISTRICT


async def _async(value):
    return value


@pytest.mark.parametrize("ratio", [0, 3, 8, 15, 30])
async def test_a_ratio_outside_1_5_10_20_is_a_422_naming_the_field_and_nothing_is_stored(svc, kit, ratio):
    site = await kit.make_site(svc)
    good, bad = bc(), bc()
    r = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json={"tubes": [
        tube(good, [kit.id_number(1)], site), tube(bad, [kit.id_number(2)], site, ratio=ratio)]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "tubes", 1, "ratio"]
    async with svc.session() as s:
        assert (await s.scalar(select(Tube).where(Tube.barcode == good))) is None


async def test_batch_rules_are_checked_together_with_a_per_item_error_list(svc, kit):
    site = await kit.make_site(svc)
    dup = bc()
    r = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json={"tubes": [
        tube(dup, [kit.id_number(1)], site),
        tube(dup, [kit.id_number(2)], site),  # barcode twice
        tube(bc(), [kit.id_number(i) for i in range(3, 9)], site, ratio=5),  # 6 members in a 5-in-1
        tube(bc(), [kit.id_number(1)], site),  # person 1 twice in the round
    ]})
    assert r.status_code == 422
    locs = [(e["loc"][2], e["loc"][3]) for e in r.json()["detail"]]
    assert (1, "barcode") in locs and (2, "members") in locs and (3, "members") in locs
    async with svc.session() as s:
        assert (await s.scalar(select(Tube.barcode).limit(1))) is None


async def test_unique_barcode_one_tube_per_round_and_retries_are_unchanged(svc, kit):
    site = await kit.make_site(svc)
    b1 = bc()
    batch = {"tubes": [tube(b1, [kit.id_number(1), kit.id_number(2)], site)]}
    assert (await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json=batch)).status_code == 201
    again = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json=batch)
    assert again.status_code == 201 and again.json() == {"accepted": 0, "unchanged": 1, "barcodes": []}
    clash = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json={"tubes": [
        tube(b1, [kit.id_number(3)], site)]})
    assert clash.status_code == 409 and clash.json()["detail"][0]["loc"][-1] == "barcode"
    same_person = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json={"tubes": [
        tube(bc(), [kit.id_number(2), kit.id_number(9)], site)]})
    assert same_person.status_code == 409 and same_person.json()["detail"][0]["loc"][-1] == "members"
    # another round (next day) is fine
    next_day = tube(bc(), [kit.id_number(2)], site)
    next_day["collected_at"] = (NOW + timedelta(days=1)).isoformat()
    assert (await svc.client.post("/testing/tubes", headers=kit.staff(svc, site),
                                  json={"tubes": [next_day]})).status_code == 201


async def test_site_staff_post_only_for_their_sites(svc, kit):
    mine, theirs = await kit.make_site(svc), await kit.make_site(svc, name="别的采样点")
    r = await svc.client.post("/testing/tubes", headers=kit.staff(svc, mine), json={"tubes": [
        tube(bc(), [kit.id_number(1)], mine), tube(bc(), [kit.id_number(2)], theirs)]})
    assert r.status_code == 403
    assert r.json()["detail"][0]["loc"] == ["body", "tubes", 1, "site_id"]
    async with svc.session() as s:
        assert (await s.scalar(select(Tube.barcode).limit(1))) is None
    # a lab may not post tubes at all; a commander is not collection staff either
    assert (await svc.client.post("/testing/tubes", headers=kit.lab_staff(svc, mine), json={"tubes": [
        tube(bc(), [kit.id_number(1)], mine)]})).status_code == 403
    assert (await svc.client.post("/testing/tubes", headers=kit.commander(svc), json={"tubes": [
        tube(bc(), [kit.id_number(1)], mine)]})).status_code == 403


async def _collect(svc, kit, site, tubes):
    r = await svc.client.post("/testing/tubes", headers=kit.staff(svc, site), json={"tubes": tubes})
    assert r.status_code == 201, r.text


def result(barcode, outcome, lab, **extra):
    return {"barcode": barcode, "result": outcome, "lab_id": lab, "tested_at": NOW.isoformat(), **extra}


async def test_a_positive_pool_makes_exactly_k_retest_orders_and_results_are_idempotent(svc, kit, events):
    site, lab = await kit.make_site(svc), await kit.make_lab(svc)
    pool, neg, single = bc(), bc(), bc()
    pool_ids = [kit.id_number(i) for i in range(1, 8)]  # a 10-in-1 tube with 7 people: k = 7
    neg_ids = [kit.id_number(i) for i in range(20, 30)]
    await _collect(svc, kit, site, [tube(pool, pool_ids, site), tube(neg, neg_ids, site),
                                    tube(single, [kit.id_number(99)], site, ratio=1)])
    batch = {"results": [result(pool, "positive", lab, ct_value=31.5), result(neg, "negative", lab),
                         result(single, "positive", lab, ct_value=25)]}
    r = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab), json=batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"applied": 3, "unchanged": 0, "retest_orders": 7, "reswab_orders": 0, "events": 3}
    orders = (await svc.client.get("/testing/orders", headers=kit.commander(svc),
                                   params={"reason": "retest"})).json()
    assert len(orders) == 7
    assert {o["person_key"] for o in orders} == {svc.person_key(i) for i in pool_ids}
    assert all(o["source_barcode"] == pool and o["status"] == "pending" for o in orders)
    await kit.eventually(lambda: _async(len(events.of("test.pool_positive", {pool})) == 1
                                        and len(events.of("test.negative", {neg})) == 1
                                        and len(events.of("test.positive", {single})) == 1))
    assert sorted(events.of("test.negative", {neg})[0].payload["member_keys"]) == sorted(
        svc.person_key(i) for i in neg_ids)
    positive = events.of("test.positive", {single})[0]
    assert positive.payload["person_key"] == svc.person_key(kit.id_number(99)) and positive.payload["ct_value"] == 25
    assert positive.key == positive.payload["person_key"]
    assert len(events.of("test.pool_positive", {pool})[0].payload["member_keys"]) == 7

    # The same results again: nothing changes, nothing is emitted.
    async with svc.session() as s:
        outbox_before = await s.scalar(text("SELECT count(*) FROM outbox"))
    again = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab), json=batch)
    assert again.status_code == 200
    assert again.json() == {"applied": 0, "unchanged": 3, "retest_orders": 0, "reswab_orders": 0, "events": 0}
    async with svc.session() as s:
        assert await s.scalar(text("SELECT count(*) FROM outbox")) == outbox_before
        assert await s.scalar(select(text("count(*)")).select_from(TestOrder)) == 7
    # A different result for a resulted tube is a conflict.
    clash = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab),
                                  json={"results": [result(neg, "positive", lab)]})
    assert clash.status_code == 409

    # A retest single tube fulfils the member's order.
    member = pool_ids[0]
    await _collect(svc, kit, site, [tube(bc(), [member], site, ratio=1)])
    mine = (await svc.client.get("/testing/orders", headers=kit.commander(svc), params={"person_id": member})).json()
    assert [o["status"] for o in mine] == ["collected"]
    pending = (await svc.client.get("/testing/orders", headers=kit.commander(svc),
                                    params={"status": "pending", "reason": "retest"})).json()
    assert len(pending) == 6


async def test_invalid_asks_for_a_reswab_in_the_same_round(svc, kit):
    site, lab = await kit.make_site(svc), await kit.make_lab(svc)
    first = bc()
    ids = [kit.id_number(1), kit.id_number(2)]
    await _collect(svc, kit, site, [tube(first, ids, site, ratio=5)])
    r = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab),
                              json={"results": [result(first, "invalid", lab)]})
    assert r.json()["reswab_orders"] == 2
    orders = (await svc.client.get("/testing/orders", headers=kit.commander(svc), params={"reason": "reswab"})).json()
    assert {o["person_key"] for o in orders} == {svc.person_key(i) for i in ids}
    # the same people may be pooled again in the same round
    await _collect(svc, kit, site, [tube(bc(), ids, site, ratio=5)])
    orders = (await svc.client.get("/testing/orders", headers=kit.commander(svc), params={"reason": "reswab"})).json()
    assert {o["status"] for o in orders} == {"collected"}


async def test_a_lab_posts_results_only_for_its_own_lab(svc, kit):
    site, lab, other = await kit.make_site(svc), await kit.make_lab(svc), await kit.make_lab(svc, name="另一实验室")
    b = bc()
    await _collect(svc, kit, site, [tube(b, [kit.id_number(1)], site)])
    r = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab),
                              json={"results": [result(b, "negative", other)]})
    assert r.status_code == 403 and r.json()["detail"][0]["loc"][-1] == "lab_id"
    async with svc.session() as s:
        assert (await s.get(Tube, b)).status == "collected"
    assert (await svc.client.post("/testing/results", headers=kit.staff(svc, site),
                                  json={"results": [result(b, "negative", lab)]})).status_code == 403
    unknown = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab),
                                    json={"results": [result("NOPE", "negative", lab)]})
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][-1] == "barcode"
    bad = await svc.client.post("/testing/results", headers=kit.lab_staff(svc, lab),
                                json={"results": [result(b, "maybe", lab)]})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "result"


async def test_quarantine_test_due_becomes_one_pending_order(svc, kit):
    key = svc.person_key(kit.id_number(7))
    due = QuarantineTestDue(order_id=uuid.uuid4(), person_key=key, region_code=kit.DISTRICT,
                            due_date=date.today(), stage_index=1)
    envelopes = await svc.publish(due)
    await svc.bus.publish(envelopes)  # redelivered
    await svc.publish(due)  # the same fact under a new event id

    async def one_order():
        orders = (await svc.client.get("/testing/orders", headers=kit.commander(svc),
                                       params={"person_id": key})).json()
        assert len(orders) == 1, orders
        return orders

    orders = await kit.eventually(one_order)
    assert orders[0]["reason"] == "quarantine" and orders[0]["status"] == "pending"
    assert orders[0]["due_date"] == date.today().isoformat() and orders[0]["stage_index"] == 1
    import asyncio
    await asyncio.sleep(0.3)
    assert len(await one_order()) == 1
    # other regions do not see it
    assert (await svc.client.get("/testing/orders", headers=kit.commander(svc, "440100"))).json() == []
    # swabbed: no longer pending
    site = await kit.make_site(svc)
    await _collect(svc, kit, site, [tube(bc(), [key], site, ratio=1)])
    assert (await one_order())[0]["status"] == "collected"
