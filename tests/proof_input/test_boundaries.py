"""Boundary values of the domain, through the HTTP API where the rule is user-facing: resident ID
numbers (GB 11643), moments around midnight Beijing time and month/year ends, temperatures, and
pool ratios. Each case states the answer a user must get."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from fangkong_common import clock
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import PersonReturned
from fangkong_common.identity import make_resident_id, resident_id_check_character
from fangkong_common.outbox import OutboxMessage
from fangkong_common.testing import eventually
from sqlalchemy import select

from conftest import bearer

SZ_CITY = "440300"


def with_check(first17: str) -> str:
    return first17 + resident_id_check_character(first17)


def x_number() -> str:
    """A valid resident ID whose check character is X."""
    for sequence in range(1000):
        number = make_resident_id("440305", date(1990, 5, 17), sequence)
        if number.endswith("X"):
            return number
    raise AssertionError("no X check character in 1000 sequences")


async def register(h, id_number: str, n: int = 0):
    return await h.client.post("/registry/persons", headers=bearer(h.app, "commander", [SZ_CITY]), json={
        "id_number": id_number, "name": f"边界{n}", "region_code": "440305"})


@pytest.mark.proof("bad input")
async def test_resident_id_numbers_at_their_boundaries(registry, proof) -> None:
    h = registry
    good = make_resident_id("110105", date(1949, 12, 31), 2)
    wrong_check = good[:-1] + ("0" if good[-1] != "0" else "1")
    x = x_number()
    tomorrow = clock.today() + timedelta(days=1)
    cases = [
        # (what, id_number, status, error type or None)
        ("valid", good, 201, None),
        ("wrong check character", wrong_check, 422, "id_number.check_digit"),
        ("X as lower-case x", x[:-1] + "x", 201, None),
        ("the same number with X: the same person", x, 200, None),
        ("full-width digits (hand-typed form)", "".join(chr(ord(c) + 0xFEE0) for c in good[:-1]) + good[-1], 200, None),
        ("spaces and hyphens", f"{good[:6]} {good[6:14]}-{good[14:]}", 200, None),
        ("15-digit legacy number", "110105491231002", 422, "id_number.length"),
        ("17 digits", good[:17], 422, "id_number.length"),
        ("19 characters", good + "1", 422, "id_number.length"),
        ("letter inside", good[:8] + "A" + good[9:], 422, "id_number.characters"),
        ("29 Feb of a leap year (2000)", with_check("440305" + "20000229" + "123"), 201, None),
        ("29 Feb 1900 (not a leap year)", with_check("440305" + "19000229" + "123"), 422, "id_number.birth_date"),
        ("29 Feb 2023", with_check("440305" + "20230229" + "123"), 422, "id_number.birth_date"),
        ("31 April", with_check("440305" + "19900431" + "123"), 422, "id_number.birth_date"),
        ("month 13", with_check("440305" + "19901301" + "123"), 422, "id_number.birth_date"),
        ("born tomorrow (Beijing)", make_resident_id("440305", tomorrow, 5), 422, "id_number.birth_date"),
        ("born 1869", with_check("440305" + "18690101" + "123"), 422, "id_number.birth_date"),
        ("no such province (99)", with_check("990305" + "19900101" + "123"), 422, "id_number.region"),
    ]
    wrong = []
    for n, (what, number, status, error) in enumerate(cases):
        response = await register(h, number, n)
        detail = response.json().get("detail")
        got_type = detail[0]["type"] if response.status_code == 422 else None
        if response.status_code != status or (error and got_type != error):
            wrong.append((what, number, response.status_code, detail))
        elif response.status_code == 422:
            assert detail[0]["loc"][-1] == "id_number" and detail[0]["msg"], detail
            if len(number) == 15:
                assert "15位" in detail[0]["msg"] and "18位" in detail[0]["msg"], detail
    assert not wrong, wrong
    proof.injected(f"{len(cases)} ID numbers: check character, x/X, full-width, 15/17/19 characters, 0229 in "
                   "leap and non-leap years (2000, 1900, 2023), 0431, month 13, born tomorrow, 1869, province 99")
    proof.measured(f"{len(cases)} of {len(cases)} answered as the rule says "
                   f"({sum(1 for c in cases if c[2] == 422)} refused with 422 naming id_number and the part)")


@pytest.mark.proof("bad input")
async def test_a_baby_born_today_in_beijing_is_registered(registry, proof) -> None:
    """The platform's day is Beijing's (clock.today()), not the server's local date: at 00:30 in
    Beijing a UTC server still has yesterday, and a newborn of today was refused as born in the future."""
    h = registry
    proof.injected("the platform clock at 00:30 Beijing time (16:30 UTC the day before), two days ahead of the "
                   "machine; a newborn's ID with today's Beijing date")
    moment = datetime.now(UTC).replace(hour=16, minute=30, second=0, microsecond=0) + timedelta(days=2)
    clock.move_to(moment, freeze=True)
    try:
        today_beijing = clock.today()
        assert today_beijing == (moment + timedelta(hours=8)).date() != moment.date()
        newborn = make_resident_id("440305", today_beijing, 7)
        response = await register(h, newborn, 1)
        assert response.status_code == 201, response.text
        tomorrow = make_resident_id("440305", today_beijing + timedelta(days=1), 7)
        assert (await register(h, tomorrow, 2)).status_code == 422
    finally:
        clock.set_offset(timedelta(0))
    proof.measured(f"born {today_beijing} (Beijing today): 201; born the day after: 422")


async def fever_events(h) -> list[dict]:
    async with h.session() as session:
        rows = (await session.scalars(select(OutboxMessage.envelope)
                                      .where(OutboxMessage.topic == "checkpoint.fever"))).all()
    return [json.loads(r)["payload"] for r in rows]


@pytest.mark.proof("bad input")
async def test_checkpoint_temperatures_and_offsets_around_midnight(registry, proof) -> None:
    h = registry
    headers = bearer(h.app, "commander", [SZ_CITY])
    checkpoint = await h.client.post("/registry/checkpoints", headers=headers,
                                     json={"name": "南山高铁站", "region_code": "440305", "kind": "station"})
    assert checkpoint.status_code == 201, checkpoint.text
    url = f"/registry/checkpoints/{checkpoint.json()['id']}/passes"
    people = [make_resident_id("440305", date(1980, 1, 1), i) for i in range(6)]

    async def pass_(temperature, passed_at="2027-01-01T00:30:00+08:00", who=0, raw=None):
        if raw is not None:
            return await h.client.post(url, headers={**headers, "Content-Type": "application/json"}, content=raw)
        return await h.client.post(url, headers=headers, json={"passes": [
            {"id_number": people[who], "temperature_c": temperature, "passed_at": passed_at}]})

    # The fever rule is ≥37.3 ℃: 37.2 passes quietly, 37.3 raises checkpoint.fever.
    assert (await pass_(37.2, who=0)).json()["fevers"] == 0
    assert (await pass_(37.3, who=1)).json()["fevers"] == 1
    # The same instant written in Beijing time and in UTC, half an hour into the new year in Beijing.
    assert (await pass_(38.5, "2027-01-01T00:30:00+08:00", who=2)).json()["fevers"] == 1
    assert (await pass_(38.6, "2026-12-31T16:30:00+00:00", who=3)).json()["fevers"] == 1
    absurd = [29.9, 45.1, -1, 1e308, "37.3℃"]
    refused = [await pass_(t, who=4) for t in absurd]
    refused.append(await pass_(None, raw=b'{"passes": [{"id_number": "%s", "temperature_c": NaN, '
                                          b'"passed_at": "2027-01-01T00:30:00+08:00"}]}' % people[4].encode()))
    refused.append(await pass_(37.0, "2027-01-01T00:30:00", who=4))  # no UTC offset: ambiguous
    assert [r.status_code for r in refused] == [422] * len(refused), [(r.status_code, r.text[:200]) for r in refused]
    events = sorted(await fever_events(h), key=lambda e: e["temperature_c"])
    assert [e["temperature_c"] for e in events] == [37.3, 38.5, 38.6]
    observed = {e["temperature_c"]: datetime.fromisoformat(e["observed_at"]) for e in events}
    instant = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)
    assert observed[38.5] == instant and observed[38.6] == instant, observed
    proof.injected("checkpoint temperatures 37.2/37.3 (threshold), 29.9, 45.1, -1, 1e308, NaN, '37.3℃'; one "
                   "instant as 2027-01-01T00:30+08:00 and as 2026-12-31T16:30+00:00; a time without offset")
    proof.measured(f"37.2: no fever, 37.3: fever; {len(refused)} absurd or ambiguous passes: 422; both spellings of "
                   f"the instant: observed_at {instant.isoformat()} in the fever events (SQLite)")


async def _order(quarantine, person: str, arrival: date) -> dict:
    h = quarantine
    returned = PersonReturned(person_key=person, region_code="440305", category="inbound_international",
                              origin_kind="international", origin_country="SG", arrival_date=arrival,
                              port_of_entry="440300")
    occurred = datetime.combine(arrival, datetime.min.time(), UTC)
    await h.bus.publish([Envelope.wrap(returned, source="registry", key=person, occurred_at=occurred)])

    async def fetched():
        response = await h.client.get("/quarantine/orders", params={"person_id": person},
                                      headers=bearer(h.app, "admin"))
        return response.json()["items"]

    [order] = await eventually(fetched)
    return order


@pytest.mark.proof("bad input")
async def test_quarantine_stages_across_month_and_year_ends(quarantine, proof) -> None:
    h = quarantine
    cases = {
        # arrival: (port 14 days, municipal 7 with tests on its first and last day, home 7, release)
        date(2026, 12, 20): [("2026-12-20", "2027-01-02"), ("2027-01-03", "2027-01-09"), ("2027-01-10", "2027-01-16"),
                             "2027-01-17"],
        date(2028, 2, 20): [("2028-02-20", "2028-03-04"), ("2028-03-05", "2028-03-11"), ("2028-03-12", "2028-03-18"),
                            "2028-03-19"],  # 2028 is a leap year: 29 Feb counts as a day served
        date(2027, 2, 20): [("2027-02-20", "2027-03-05"), ("2027-03-06", "2027-03-12"), ("2027-03-13", "2027-03-19"),
                            "2027-03-20"],
        date(2026, 1, 31): [("2026-01-31", "2026-02-13"), ("2026-02-14", "2026-02-20"), ("2026-02-21", "2026-02-27"),
                            "2026-02-28"],
    }
    for n, (arrival, expected) in enumerate(cases.items()):
        person = h.person_key(make_resident_id("440305", date(1985, 1, 1), n))
        order = await _order(h, person, arrival)
        stages = [(s["start_date"], s["end_date"]) for s in order["stages"]]
        assert stages == expected[:3] and order["release_date"] == expected[3], (arrival, order)
        municipal = order["stages"][1]
        assert municipal["test_days"] == [expected[1][0], expected[1][1]]
    # A check-in's temperature: 34-43 ℃ accepted, the fever alert from 37.3; absurd values refused.
    headers = bearer(h.app, "admin")
    url = f"/quarantine/orders/{order['id']}/checkins"
    checkins = {t: await h.client.post(url, headers=headers, json={"temperature_c": t,
                                                                   "at": "2026-02-01T00:10:00+08:00"})
                for t in (34.0, 37.2, 37.3, 43.0, 33.9, 43.1, -273.15, 1e6)}
    assert {t: r.status_code for t, r in checkins.items()} == {
        34.0: 201, 37.2: 201, 37.3: 201, 43.0: 201, 33.9: 422, 43.1: 422, -273.15: 422, 1e6: 422}
    assert "fever" not in checkins[37.2].json()["alerts"] and "fever" in checkins[37.3].json()["alerts"]
    nan = await h.client.post(url, headers={**headers, "Content-Type": "application/json"},
                              content=b'{"temperature_c": NaN}')
    assert nan.status_code == 422, nan.text
    proof.injected("inbound arrivals on 2026-12-20, 2028-02-20 (leap), 2027-02-20, 2026-01-31; check-ins at "
                   "34.0, 37.2, 37.3, 43.0, 33.9, 43.1, -273.15, 1e6, NaN ℃")
    proof.measured(f"{len(cases)} orders: 14+7+7 days with stage ends across year and month ends exactly "
                   "(leap day counted); check-ins 34-43 ℃: 201, fever alert from 37.3; 4 absurd + NaN: 422")


@pytest.mark.proof("bad input")
async def test_pool_ratios_at_their_boundaries(testing_service, proof) -> None:
    h = testing_service
    admin = bearer(h.app, "admin")
    site = await h.client.post("/testing/sites", headers=admin, json={
        "name": "南山采样点", "region_code": "440305", "latitude": 22.53, "longitude": 113.93, "swabs_per_hour": 300})
    assert site.status_code == 201, site.text
    site_id = site.json()["id"]
    members = [make_resident_id("440305", date(1990, 1, 1), i) for i in range(25)]
    cursor = iter(range(10_000))

    async def tube(ratio, count):
        take = [members.pop() for _ in range(count)] if count <= len(members) else []
        return await h.client.post("/testing/tubes", headers=admin, json={"tubes": [{
            "barcode": f"B{next(cursor):05d}", "ratio": ratio, "members": take, "site_id": site_id,
            "collected_at": "2027-01-01T00:05:00+08:00"}]})

    expected = [(0, 1, 422), (-5, 1, 422), (1, 1, 201), (1, 2, 422), (5, 5, 201), (3, 3, 422), (20, 20, 422),
                (10, 11, 422), (21, 1, 422), (1000, 1, 422), (20, 0, 422)]
    # 25 people: (20, 20) is refused only for lack of members left; give it its own below.
    got = []
    for ratio, count, _ in expected[:6]:
        got.append((await tube(ratio, count)).status_code)
    members[:] = [make_resident_id("440306", date(1991, 1, 1), i) for i in range(40)]
    full = await tube(20, 20)
    assert full.status_code == 201, full.text
    for ratio, count, _ in expected[7:]:
        got.append((await tube(ratio, count)).status_code)
    assert got == [s for _, _, s in expected[:6]] + [s for _, _, s in expected[7:]], got
    bad = await tube(21, 1)
    assert bad.json()["detail"][0]["msg"] and "ratio" in json.dumps(bad.json()["detail"][0]["loc"])
    proof.injected("tubes with ratio 0, -5, 1 (1 and 2 people), 5, 3, 20 (20 people), 10 with 11 people, 21, "
                   "1000, 20 with nobody")
    proof.measured("1-in-1, 5-in-1 and 20-in-1 (max) accepted; ratio 0, -5, 3, 21, 1000, more people than the "
                   "ratio and an empty pool: 422 naming the field")


@pytest.mark.proof("bad input")
async def test_dashboard_counts_positives_on_the_beijing_day(dashboard, proof) -> None:
    """A result at 23:59:59 Beijing time is the old day's, one at 00:00 the new day's, however the
    moment is written (+08:00 or UTC); across a year end and a month end."""
    from fangkong_common.events.schemas import TestPositive

    h = dashboard
    moments = {  # resulted_at as the lab wrote it → the Beijing day it must count on
        "2026-12-31T23:59:59+08:00": "2026-12-31",
        "2026-12-31T16:00:00+00:00": "2027-01-01",
        "2027-01-01T00:00:00+08:00": "2027-01-01",
        "2027-01-31T15:59:59Z": "2027-01-31",
        "2027-01-31T16:30:00+00:00": "2027-02-01",
    }
    envelopes = []
    for n, text in enumerate(moments):
        moment = datetime.fromisoformat(text)
        payload = TestPositive(person_key=f"{n:064x}", barcode=f"P{n}", lab_id="lab-1", region_code="440305",
                               resulted_at=moment)
        envelopes.append(Envelope.wrap(payload, source="testing", key=payload.person_key, occurred_at=moment))
    await h.bus.publish(envelopes)
    expected: dict[str, int] = {}
    for day in moments.values():
        expected[day] = expected.get(day, 0) + 1
    headers = bearer(h.app, "commander", [SZ_CITY])

    async def counted():
        response = await h.client.get("/dashboard/metrics", headers=headers, params={
            "region_code": SZ_CITY, "names": "positives", "from": "2026-12-30", "to": "2027-02-02"})
        assert response.status_code == 200, response.text
        got = {p["date"]: p["value"] for p in response.json()["series"][0]["points"] if p["value"]}
        assert got == expected, got
        return got

    got = await eventually(counted, timeout=30)
    proof.injected("5 positives resulted at 23:59:59 and 00:00 Beijing time around 2027-01-01 and 2027-02-01, "
                   "written with +08:00 and with UTC offsets")
    proof.measured(f"counted per Beijing day {got} (expected {expected})")
