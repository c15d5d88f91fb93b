"""Outcome intervals (四早) from events: the figures of a small hand-made outbreak, the same
whatever order the events arrive in, repeated events changing nothing, and the API's checks."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from fangkong_common.auth import Role
from fangkong_common.events import schemas as ev
from fangkong_common.events.envelope import Envelope
from fangkong_common.inbox import InboxEntry
from fangkong_common.testing import eventually, running

from dashboard import outcomes
from dashboard.config import Settings
from dashboard.main import create_app

from outbreak_events import pk

H = 3600.0
DAY = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
NANSHAN, FUTIAN, TIANHE = "440305", "440304", "440106"
NOW = T0 + timedelta(days=3)  # the figures are asked for "now" = 23 Nov 10:00 Beijing


def at(payload, hours: float) -> Envelope:
    return Envelope.wrap(payload, source="test", key=getattr(payload, "person_key", None) or "k",
                         occurred_at=T0 + timedelta(hours=hours))


def collected(barcode: str, members: list[str], hours: float, region: str = NANSHAN) -> Envelope:
    return at(ev.TestCollected(barcode=barcode, site_id="s1", region_code=region, ratio=1 if len(members) == 1 else 5,
                               member_keys=members, collected_at=T0 + timedelta(hours=hours)), hours)


def positive(person: str, barcode: str, hours: float) -> Envelope:
    return at(ev.TestPositive(person_key=person, barcode=barcode, lab_id="lab", region_code=NANSHAN,
                              resulted_at=T0 + timedelta(hours=hours)), hours)


def admitted(person: str, kind: str, hours: float) -> Envelope:
    return at(ev.QuarantineAdmitted(person_key=person, region_code=FUTIAN, origin_region_code=NANSHAN,
                                    site_id=f"site-{kind}", site_kind=kind, admitted_at=T0 + timedelta(hours=hours)),
              hours)


def ordered(person: str, reason: str, hours: float) -> Envelope:
    return at(ev.QuarantineOrdered(order_id=uuid.uuid4(), person_key=person, region_code=FUTIAN, reason=reason,
                                   policy_id="p", policy_version=1,
                                   stages=[{"kind": "centralized", "place": "municipal_site", "start_date": DAY,
                                            "end_date": DAY + timedelta(days=14)}]), hours)


def contact(person: str, source: str, degree: int, hours: float) -> Envelope:
    return at(ev.ContactIdentified(person_key=person, region_code=FUTIAN, degree=degree, source_person_key=source,
                                   last_exposure_at=T0, setting="school"), hours)


def returned(person: str, category: str, hours: float, region: str = NANSHAN) -> Envelope:
    return at(ev.PersonReturned(person_key=person, region_code=region, category=category,
                                origin_kind="domestic", arrival_date=DAY), hours)


P1, P2, P3 = pk("p1"), pk("p2"), pk("p3")
C1, C2, C3, C4 = pk("c1"), pk("c2"), pk("c3"), pk("c4")
R1, R2, R3, R4 = pk("r1"), pk("r2"), pk("r3"), pk("r4")


def events() -> list[Envelope]:
    return [
        # Tubes: B1 negative after 6 h, B2 a positive pool after 20 h, B3 P1's tube (positive after 30 h),
        # B4 never resulted, B5 P2's (3 h), B6 P3's (5 h); B7 swabs returnee R1 after 20 h.
        collected("B1", [pk("x1")], 0), at(ev.TestNegative(barcode="B1", lab_id="lab", region_code=NANSHAN,
                                                           member_keys=[pk("x1")], resulted_at=T0), 6),
        collected("B2", [pk("x2"), pk("x3")], 0),
        at(ev.TestPoolPositive(barcode="B2", lab_id="lab", region_code=NANSHAN, member_keys=[pk("x2"), pk("x3")],
                               resulted_at=T0), 20),
        collected("B3", [P1], 0), positive(P1, "B3", 30),
        collected("B4", [pk("x4")], 1),
        collected("B5", [P2], 0), positive(P2, "B5", 3),
        collected("B6", [P3], 0), positive(P3, "B6", 5),
        collected("B7", [R1, pk("x5")], 20),
        # P1: a bed 2 h after the result, classified after 10 h; P3 is taken to a 方舱 at once (a hotel
        # room first does not count); P2 waits for a bed and for a doctor.
        admitted(P1, "hospital", 32), at(ev.CaseClassified(person_key=P1, origin_region_code=NANSHAN,
                                                           treating_region_code=FUTIAN, classification="confirmed",
                                                           classified_at=T0), 40),
        admitted(P3, "hotel", 4), admitted(P3, "fangcang", 5),
        # P1's close contacts C1 (ordered 1 h later) and C2 (30 h later); C3 is secondary (not measured);
        # C4 is P2's and never ordered. A returnee order for C2 earlier is not a contact order.
        contact(C1, P1, 1, 31), contact(C2, P1, 1, 31), contact(C3, C1, 2, 32), contact(C4, P2, 1, 4),
        ordered(C1, "contact_degree_1", 31), ordered(C2, "returned:domestic_other", 10),
        ordered(C2, "contact_degree_1", 60), ordered(C3, "contact_degree_2", 32),
        # Returnees: R1 tested 20 h after registering; R2 not yet; R3 travelled within the province
        # (not tested by the policy); R4 in Guangzhou (another city).
        returned(R1, "domestic_other", 0), returned(R2, "inbound_international", 1), returned(R3, "local", 1),
        returned(R4, "domestic_other", 2, region=TIANHE), collected("B8", [R4], 3, region=TIANHE),
    ]


async def figures(h, region: str = "440300", day_from: date = DAY, day_to: date = DAY + timedelta(days=2)) -> dict:
    async with h.session() as session:
        return await outcomes.outcomes(session, region, day_from, day_to, now=NOW)


def check_expected(out: dict) -> None:
    got = out["intervals"]
    assert out["as_of"] == "2026-11-22T16:00:00Z"  # the end of the 22nd in Beijing: before NOW
    bed = got["result_to_bed"]
    assert (bed["count"], bed["median_seconds"], bed["p90_seconds"], bed["max_seconds"]) == (2, 0.0, 2 * H, 2 * H)
    # P2: positive at T0+3 h, no bed by 22 Nov 16:00 UTC (T0 + 62 h).
    assert bed["waiting"] == 1 and bed["longest_wait_seconds"] == 59 * H
    contacts = got["case_to_contacts_ordered"]
    # C1: 1 h after P1's positive (T0+30 h), C2: 30 h; C4's case P2 has no order for C4: waiting.
    assert (contacts["count"], contacts["median_seconds"], contacts["p90_seconds"], contacts["max_seconds"],
            contacts["share_within_24h"], contacts["waiting"]) == (2, 1 * H, 30 * H, 30 * H, 0.5, 1)
    tubes = got["collection_to_result"]
    # B1 6 h, B2 20 h, B3 30 h, B5 3 h, B6 5 h (sorted 3 5 6 20 30: median rank 3, p90 rank 5).
    assert (tubes["count"], tubes["median_seconds"], tubes["p90_seconds"], tubes["max_seconds"]) == (
        5, 6 * H, 30 * H, 30 * H)
    assert tubes["share_within_12h"] == 3 / 5 and tubes["share_within_24h"] == 4 / 5 and tubes["waiting"] == 2
    classified = got["positive_to_classified"]
    assert (classified["count"], classified["median_seconds"], classified["max_seconds"]) == (1, 10 * H, 10 * H)
    assert classified["unclassified"] == 2 and classified["oldest_unclassified_seconds"] == 59 * H
    returnees = got["registered_to_first_test"]["by_category"]
    assert set(returnees) == {"domestic_other", "inbound_international"}  # not "local"; not Guangzhou's
    assert returnees["domestic_other"] | {} == {"count": 1, "median_seconds": 20 * H, "p90_seconds": 20 * H,
                                                "max_seconds": 20 * H, "waiting": 0}
    assert returnees["inbound_international"]["count"] == 0 and returnees["inbound_international"]["waiting"] == 1
    assert returnees["inbound_international"]["median_seconds"] is None
    # Per day (Beijing): the 20th has the tubes B1 (16:00), B5, B6 and P3's bed; the 21st the rest.
    days = {d["date"]: d["intervals"] for d in out["days"]}
    assert list(days) == ["2026-11-20", "2026-11-21", "2026-11-22"]
    assert days["2026-11-20"]["collection_to_result"]["count"] == 3
    assert days["2026-11-20"]["result_to_bed"]["count"] == 1
    assert days["2026-11-21"]["collection_to_result"]["count"] == 2
    assert days["2026-11-21"]["result_to_bed"]["count"] == 1
    # At the end of the 20th P1 was not yet positive: one positive waiting (P2), since 3 h after T0.
    assert days["2026-11-20"]["result_to_bed"]["waiting"] == 1
    assert days["2026-11-20"]["result_to_bed"]["longest_wait_seconds"] == (14 - 3) * H
    # C2's order at T0+60 h is 22:00 on the 22nd in Beijing.
    assert days["2026-11-22"]["case_to_contacts_ordered"]["count"] == 1
    assert days["2026-11-21"]["case_to_contacts_ordered"]["count"] == 1


async def applied(h, envelopes: list[Envelope]) -> None:
    ids = {str(e.id) for e in envelopes}

    async def done() -> bool:
        async with h.session() as session:
            seen = set((await session.scalars(select(InboxEntry.event_id).where(InboxEntry.event_id.in_(ids)))).all())
        return seen == ids

    await eventually(done, timeout=60)


async def test_outcome_intervals_from_events(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, bus_url=f"memory://outcomes-{uuid.uuid4().hex}"))
    async with running(app) as h:
        batch = events()
        await h.bus.publish(batch)
        await applied(h, batch)
        check_expected(await figures(h))
        # Guangzhou's returnee counts at the province, not in Shenzhen.
        province = (await figures(h, "440000"))["intervals"]["registered_to_first_test"]["by_category"]
        assert province["domestic_other"]["count"] == 2 and province["domestic_other"]["max_seconds"] == 20 * H


async def test_any_arrival_order_and_repeats_give_the_same_figures(database_url: str) -> None:
    """Admissions before their positive, results before their tube, orders before the contact link,
    each event twice under a new id, one at a time: the figures do not move."""
    app = create_app(Settings(database_url=database_url, bus_url=f"memory://outcomes-{uuid.uuid4().hex}"))
    async with running(app) as h:
        batch = events()
        shuffled = batch[::-1]  # every end before its start
        random.Random(10).shuffle(shuffled[len(shuffled) // 2:])
        repeats = [e.model_copy(update={"id": uuid.uuid4()}) for e in batch]
        for envelope in shuffled + repeats:
            await h.bus.publish([envelope])
        await applied(h, shuffled + repeats)
        check_expected(await figures(h))


async def test_the_endpoint_checks_token_region_and_dates() -> None:
    app = create_app(Settings(database_url="sqlite+aiosqlite://", bus_url=f"memory://outcomes-{uuid.uuid4().hex}"))
    async with running(app) as h:
        url = "/dashboard/outcomes"
        assert (await h.client.get(url)).status_code == 401
        commander = h.headers(Role.commander, regions=["440300"])
        ok = await h.client.get(url, params={"region_code": "440305", "from": "2026-11-20", "to": "2026-11-21"},
                                headers=commander)
        assert ok.status_code == 200, ok.text
        body = ok.json()
        assert set(body) >= {"region_code", "from", "to", "as_of", "intervals", "days"}
        assert set(body["intervals"]) == {"result_to_bed", "case_to_contacts_ordered", "collection_to_result",
                                          "positive_to_classified", "registered_to_first_test"}
        assert body["intervals"]["result_to_bed"] == {"count": 0, "median_seconds": None, "p90_seconds": None,
                                                      "max_seconds": None, "waiting": 0,
                                                      "longest_wait_seconds": None}
        assert len(body["days"]) == 2
        # Without a region: the caller's own.
        assert (await h.client.get(url, headers=commander)).json()["region_code"] == "440300"
        assert (await h.client.get(url, params={"region_code": "110105"}, headers=commander)).status_code == 403
        for params in ({"from": "2026-11-22", "to": "2026-11-21"}, {"from": "2026-02-30"}, {"to": "yesterday"},
                       {"from": "2024-01-01", "to": "2026-01-01"}, {"region_code": "4403"}):
            bad = await h.client.get(url, params=params, headers=commander)
            assert bad.status_code == 422, (params, bad.text)


@pytest.mark.parametrize("n, median, p90", [(1, 1, 1), (2, 1, 2), (4, 2, 4), (5, 3, 5), (10, 5, 9), (11, 6, 10),
                                            (20, 10, 18), (100, 50, 90)])
def test_nearest_rank_percentiles(n: int, median: int, p90: int) -> None:
    values = [float(v) for v in range(1, n + 1)]
    random.Random(n).shuffle(values)
    got = outcomes.summary(values)
    assert (got["count"], got["median_seconds"], got["p90_seconds"], got["max_seconds"]) == (n, median, p90, n)


async def test_the_daily_report_and_export_carry_the_intervals(tmp_path) -> None:
    import csv
    import io

    from openpyxl import load_workbook

    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'report.db'}", bus_url=f"memory://outcomes-{uuid.uuid4().hex}"))
    async with running(app) as h:
        batch = events()
        await h.bus.publish(batch)
        await applied(h, batch)
        headers = h.headers(Role.commander, regions=["440300"])
        # The 21st (Beijing): P1's bed 2 h after the result, tubes B2 (20 h) and B3 (30 h), contact C1 (1 h).
        params = {"region_code": "440300", "date": "2026-11-21"}
        report = (await h.client.get("/dashboard/reports/daily", params=params, headers=headers)).json()
        day = report["outcomes"]["intervals"]
        assert (day["result_to_bed"]["count"], day["result_to_bed"]["max_seconds"]) == (1, 2 * H)
        assert (day["collection_to_result"]["count"], day["collection_to_result"]["median_seconds"]) == (2, 20 * H)
        assert day["case_to_contacts_ordered"]["count"] == 1 and day["positive_to_classified"]["count"] == 0
        xlsx = await h.client.get("/dashboard/reports/daily", params=params | {"format": "xlsx"}, headers=headers)
        assert xlsx.status_code == 200
        rows = [list(r) for r in load_workbook(io.BytesIO(xlsx.content)).active.iter_rows(values_only=True)]
        [bed] = [r for r in rows if r[0] == "阳性结果 → 入院床位"]
        assert bed[1:5] == [1, 2.0, 2.0, 2.0] and "等待 1" in bed[5]
        assert any(r[0] and str(r[0]).startswith("四早时效") for r in rows)
        english = await h.client.get("/dashboard/reports/daily", params=params | {"format": "xlsx", "lang": "en"},
                                     headers=headers)
        rows = [list(r) for r in load_workbook(io.BytesIO(english.content)).active.iter_rows(values_only=True)]
        assert any(r[0] == "Positive result → hospital bed" for r in rows)
        pdf = await h.client.get("/dashboard/reports/daily", params=params | {"format": "pdf"}, headers=headers)
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        export = await h.client.get("/dashboard/exports/outcomes", params=params, headers=headers)
        assert export.status_code == 200
        table = list(csv.DictReader(io.StringIO(export.content.decode("utf-8-sig"))))
        bed = next(r for r in table if r["interval"] == "result_to_bed")
        # 14 days up to the 21st: P3 (0 s, the 20th) and P1 (2 h); P2 still waiting at the 21st's end.
        assert (bed["count"], bed["median_seconds"], bed["max_seconds"], bed["waiting"]) == ("2", "0.0", "7200.0", "1")
        assert {r["category"] for r in table if r["interval"] == "registered_to_first_test"} == {
            "domestic_other", "inbound_international"}


async def test_a_purged_swab_does_not_move_a_measured_first_test(tmp_path) -> None:
    """Swabs go with the person facts after their retention; a later swab must not then pass for the first."""
    from dashboard import stream

    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'purge.db'}",
                              bus_url=f"memory://outcomes-{uuid.uuid4().hex}"))
    async with running(app) as h:
        first = [returned(R1, "domestic_other", 0), collected("P-1", [R1], 5)]
        await h.bus.publish(first)
        await applied(h, first)
        await stream.purge(app, facts_before=DAY + timedelta(days=30))
        async with h.session() as session:
            from dashboard.models import Moment
            assert not (await session.scalars(select(Moment).where(Moment.kind == "swab"))).all()
        later = [collected("P-2", [R1], 24 * 20)]
        await h.bus.publish(later)
        await applied(h, later)
        async with h.session() as session:
            out = await outcomes.outcomes(session, "440300", DAY, DAY + timedelta(days=30), now=NOW + timedelta(days=40))
        by_category = out["intervals"]["registered_to_first_test"]["by_category"]
        assert by_category["domestic_other"]["count"] == 1 and by_category["domestic_other"]["max_seconds"] == 5 * H


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_replicas_each_holding_one_end_still_close_the_interval(database_url: str) -> None:
    """Replica A holds the positive in an open transaction while replica B gets the admission: B waits
    for A (advisory lock), then sees A's moment — the interval is closed, not left waiting forever."""
    from dashboard.readmodel import apply_batch

    app = create_app(Settings(database_url=database_url, bus_url=f"memory://outcomes-{uuid.uuid4().hex}"))
    async with running(app) as h:
        a, b = h.session(), h.session()
        async with a, b:
            await a.begin()
            await apply_batch(a, [positive(P2, "B5", 3)])
            await b.begin()
            other = asyncio.create_task(apply_batch(b, [admitted(P2, "hospital", 7)]))
            await asyncio.sleep(0.5)
            assert not other.done()  # B waits for A's outcome step
            await a.commit()
            await asyncio.wait_for(other, 10)
            await b.commit()
        got = (await figures(h, day_to=DAY + timedelta(days=2)))["intervals"]["result_to_bed"]
        assert (got["count"], got["max_seconds"], got["waiting"]) == (1, 4 * H, 0)
