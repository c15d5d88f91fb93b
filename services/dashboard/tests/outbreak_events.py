"""A small, fixed outbreak as other services would publish it (used by several tests)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, date, datetime, timedelta

from fangkong_common.events import schemas as ev
from fangkong_common.events.envelope import Envelope

DAY = date(2026, 11, 20)
# 02:00 UTC is 10:00 in Beijing: the same calendar day.
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
SHENZHEN_NANSHAN = "440305"
SHENZHEN_FUTIAN = "440304"
GUANGZHOU_TIANHE = "440106"
BEIJING_CHAOYANG = "110105"


def pk(n: int | str) -> str:
    return hashlib.sha256(f"person-{n}".encode()).hexdigest()


def order_id(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def wrap(payload, minutes: int = 0) -> Envelope:
    return Envelope.wrap(payload, source="test", key=getattr(payload, "person_key", None) or "k",
                         occurred_at=T0 + timedelta(minutes=minutes))


def stage(kind: str, place: str, days: int = 14) -> dict:
    return {"kind": kind, "place": place, "start_date": DAY, "end_date": DAY + timedelta(days=days),
            "test_days": [DAY]}


def outbreak() -> list[Envelope]:
    """Returnees, contacts, quarantine, tests, positives, cases in Shenzhen (and one elsewhere)."""
    events = []
    add = events.append
    # Five returnees in Nanshan, one local traveller (not to be managed), one in Guangzhou.
    for n, cat in enumerate(["inbound_international", "domestic_key_region", "domestic_key_region",
                             "domestic_other", "domestic_other"]):
        add(wrap(ev.PersonReturned(person_key=pk(n), region_code=SHENZHEN_NANSHAN, category=cat,
                                   origin_kind="international" if n == 0 else "domestic", arrival_date=DAY)))
    add(wrap(ev.PersonReturned(person_key=pk(90), region_code=SHENZHEN_NANSHAN, category="local",
                               origin_kind="domestic", arrival_date=DAY)))
    add(wrap(ev.PersonReturned(person_key=pk(91), region_code=GUANGZHOU_TIANHE, category="domestic_other",
                               origin_kind="domestic", arrival_date=DAY)))
    add(wrap(ev.PersonRiskFlagged(person_key=pk(1), region_code=SHENZHEN_NANSHAN, risk_area_id="ra-1",
                                  risk_area_region_code="650102", level="high", window_start=T0 - timedelta(days=10),
                                  window_end=T0)))
    # Contacts of the case pk(50): two close, one secondary, in Futian.
    for n, degree in [(10, 1), (11, 1), (12, 2)]:
        add(wrap(ev.ContactIdentified(person_key=pk(n), region_code=SHENZHEN_FUTIAN, degree=degree,
                                      source_person_key=pk(50), case_person_key=pk(50), last_exposure_at=T0)))
    # Quarantine orders: returnee 0 (centralized), contacts 10 and 11 (centralized), returnee 1 home.
    for n, region, first in [(0, SHENZHEN_NANSHAN, stage("centralized", "port")),
                             (10, SHENZHEN_FUTIAN, stage("centralized", "municipal_site")),
                             (11, SHENZHEN_FUTIAN, stage("centralized", "municipal_site")),
                             (1, SHENZHEN_NANSHAN, stage("home", "home", 7))]:
        add(wrap(ev.QuarantineOrdered(order_id=order_id(n), person_key=pk(n), region_code=region, reason="test",
                                      policy_id="p", policy_version=1, stages=[first]), minutes=5))
        add(wrap(ev.QuarantineTestDue(order_id=order_id(n), person_key=pk(n), region_code=region, due_date=DAY,
                                      stage_index=0), minutes=6))
    # 0 and 10 admitted to a hotel; 11 still waits for a bed.
    for n in (0, 10):
        add(wrap(ev.QuarantineAdmitted(person_key=pk(n), region_code=SHENZHEN_FUTIAN,
                                       origin_region_code=SHENZHEN_NANSHAN if n == 0 else SHENZHEN_FUTIAN,
                                       order_id=order_id(n), site_id="hotel-1", site_kind="hotel",
                                       admitted_at=T0 + timedelta(hours=1)), minutes=10))
    # A 5-in-1 pool with 0, 10, 11 and two others; a single tube for 1; a pool not yet resulted.
    add(wrap(ev.TestCollected(barcode="P-1", site_id="c-1", region_code=SHENZHEN_FUTIAN, ratio=5,
                              member_keys=[pk(0), pk(10), pk(11), pk(20), pk(21)], collected_at=T0 + timedelta(hours=2)),
             minutes=20))
    add(wrap(ev.TestCollected(barcode="S-1", site_id="c-1", region_code=SHENZHEN_NANSHAN, ratio=1,
                              member_keys=[pk(1)], collected_at=T0 + timedelta(hours=2)), minutes=21))
    add(wrap(ev.TestCollected(barcode="P-2", site_id="c-1", region_code=SHENZHEN_NANSHAN, ratio=10,
                              member_keys=[pk(30 + i) for i in range(10)], collected_at=T0 + timedelta(hours=2)),
             minutes=22))
    add(wrap(ev.TestNegative(barcode="S-1", lab_id="lab-1", region_code=SHENZHEN_NANSHAN, member_keys=[pk(1)],
                             resulted_at=T0 + timedelta(hours=6)), minutes=30))
    add(wrap(ev.TestPoolPositive(barcode="P-1", lab_id="lab-1", region_code=SHENZHEN_FUTIAN,
                                 member_keys=[pk(0), pk(10), pk(11), pk(20), pk(21)],
                                 resulted_at=T0 + timedelta(hours=6)), minutes=31))
    # Two positives from the retest: 10 (Futian) and a Beijing traveller swabbed in Futian (counts for Beijing).
    add(wrap(ev.TestPositive(person_key=pk(10), barcode="R-10", lab_id="lab-1", region_code=SHENZHEN_FUTIAN,
                             resulted_at=T0 + timedelta(hours=8)), minutes=40))
    add(wrap(ev.TestPositive(person_key=pk(20), barcode="R-20", lab_id="lab-1", region_code=SHENZHEN_FUTIAN,
                             origin_region_code=BEIJING_CHAOYANG, resulted_at=T0 + timedelta(hours=8)), minutes=41))
    # 10 goes to hospital (treated) and is classified; 20 is classified for Beijing while treated in Shenzhen.
    add(wrap(ev.QuarantineReleased(order_id=order_id(10), person_key=pk(10), region_code=SHENZHEN_FUTIAN,
                                   released_at=T0 + timedelta(hours=9), outcome="transferred_to_hospital"), minutes=50))
    add(wrap(ev.QuarantineAdmitted(person_key=pk(10), region_code="440307", origin_region_code=SHENZHEN_FUTIAN,
                                   site_id="hosp-1", site_kind="hospital", admitted_at=T0 + timedelta(hours=10)),
             minutes=51))
    add(wrap(ev.CaseClassified(person_key=pk(10), origin_region_code=SHENZHEN_FUTIAN, treating_region_code="440307",
                               classification="asymptomatic", classified_at=T0 + timedelta(hours=11)), minutes=52))
    add(wrap(ev.CaseClassified(person_key=pk(20), origin_region_code=BEIJING_CHAOYANG,
                               treating_region_code=SHENZHEN_FUTIAN, classification="confirmed",
                               classified_at=T0 + timedelta(hours=11)), minutes=53))
    add(wrap(ev.CheckpointFever(checkpoint_id="cp-1", region_code=SHENZHEN_NANSHAN, temperature_c=38.1,
                                observed_at=T0)))
    add(wrap(ev.VaccinationRecorded(person_key=pk(60), region_code=SHENZHEN_NANSHAN, age_group="12-14",
                                    vaccine="x", dose_number=1, vaccinated_on=DAY)))
    add(wrap(ev.VaccinationRecorded(person_key=pk(61), region_code=SHENZHEN_NANSHAN, age_group="18+",
                                    vaccine="x", dose_number=3, vaccinated_on=DAY)))
    add(wrap(ev.GatheringFiled(gathering_id="g-1", region_code=SHENZHEN_NANSHAN, kind="wedding",
                               expected_attendees=80, held_on=DAY + timedelta(days=3), status="filed")))
    add(wrap(ev.SiteCapacityLow(site_id="hotel-1", region_code=SHENZHEN_FUTIAN, site_kind="hotel", beds_total=100,
                                beds_free=8, threshold=0.1), minutes=60))
    add(wrap(ev.TestingCapacityAlert(region_code=SHENZHEN_NANSHAN, kind="backlog", lab_id="lab-1",
                                     backlog_tubes=1, message="积压"), minutes=61))
    return events


# What the outbreak must produce for Shenzhen (440300) on DAY.
EXPECTED_SHENZHEN = {
    "returnees": 6, "returnees_managed": 2,  # 0 and 1 were ordered and swabbed; 2-4 and local 90 were not
    "risk_flagged": 1, "contacts": 3, "quarantine_ordered": 4,
    "isolation_required": 2,  # 0 and 11 wait or sit in a site (10 was released to hospital); 0 admitted
    "isolation_admitted": 1,
    "in_quarantine": 2,  # 0 in hotel, 1 at home
    "released": 1, "admissions": 3, "tests_due": 4, "tests_due_tested": 4,
    "tubes_collected": 3, "people_swabbed": 16, "tubes_resulted": 4, "tube_backlog": 1,
    "pools_positive": 1, "positives": 1, "positives_admitted": 1, "cases": 1, "unclassified": 0,
    "fever_alerts": 1, "vaccinations": 2, "vaccinated_people": 1, "gatherings": 1, "testing_alerts": 1,
}
