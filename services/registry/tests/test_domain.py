"""The registry's pure rules: ID numbers, returnee categories, contact degrees."""

from __future__ import annotations

from datetime import date

import pytest

from fangkong_common.events.schemas import ReturneeCategory

from registry.domain import rules
from registry.domain.idcard import IdNumberError, check_character, make_resident_id, parse_resident_id


@pytest.mark.parametrize("number", ["11010519491231002X", "440524188001010014", "11010119800101001X".replace("X", check_character("11010119800101001"))])
def test_valid_resident_ids_parse(number: str) -> None:
    parsed = parse_resident_id(number)
    assert parsed.region_code == number[:6]
    assert parsed.birth_date == date(int(number[6:10]), int(number[10:12]), int(number[12:14]))


def test_the_published_example_decodes_birth_date_and_sex() -> None:
    parsed = parse_resident_id("11010519491231002X")  # GB 11643's own example
    assert parsed.birth_date == date(1949, 12, 31)
    assert parsed.sex == "female"


@pytest.mark.parametrize(("number", "part"), [
    ("11010519491231002", "length"),
    ("11010519491231002X1", "length"),
    ("1101051949123100AX", "characters"),
    ("11010519491231002Y", "characters"),
    ("99010519491231002X", "region"),
    ("110105194902300021", "birth_date"),     # 30 February
    ("110105190002290025", "birth_date"),     # 1900 was not a leap year
    ("110105209912310020", "birth_date"),     # in the future
    ("110105194912310021", "check_digit"),
])
def test_a_wrong_resident_id_says_which_part_is_wrong(number: str, part: str) -> None:
    with pytest.raises(IdNumberError) as caught:
        parse_resident_id(number, today=date(2022, 4, 1))
    assert caught.value.part == part


def test_a_leap_day_birth_is_valid() -> None:
    assert parse_resident_id(make_resident_id("440305", date(2000, 2, 29), 12)).birth_date == date(2000, 2, 29)


def test_every_check_character_is_reachable_and_x_is_ten() -> None:
    seen = {check_character(f"44030519900101{n:03d}") for n in range(200)}
    assert seen == set("0123456789X")


def facts(home="440305", kind="domestic", origin=None, port=None, served=0, stays=()):
    return rules.TravelFacts(home_region_code=home, origin_kind=kind, origin_region_code=origin, port_of_entry=port,
                             served_quarantine_days=served, stays=tuple(stays))


def stay(code, start=date(2022, 3, 1), end=date(2022, 3, 5)):
    return rules.Stay(code, None, start, end)


@pytest.mark.parametrize(("case", "expected"), [
    (facts(kind="international", port="440300"), ReturneeCategory.inbound_international),
    (facts(kind="international", port="440300", served=14), ReturneeCategory.inbound_international),  # own port
    (facts(kind="international", port="310000", served=14), ReturneeCategory.inbound_port_completed_elsewhere),
    (facts(kind="international", port="310000", served=0), ReturneeCategory.inbound_international),
    (facts(origin="230100"), ReturneeCategory.domestic_key_region),           # Harbin: a border province
    (facts(origin="530100"), ReturneeCategory.domestic_key_region),           # Kunming
    (facts(origin="110105"), ReturneeCategory.domestic_other),                # Beijing, no risk area
    (facts(origin="440100"), ReturneeCategory.local),                         # Guangzhou, same province
    (facts(origin="440100", stays=[stay("650100")]), ReturneeCategory.domestic_key_region),  # via Urumqi
    (facts(origin="320500", stays=[stay("320500")]), ReturneeCategory.domestic_other),
])
def test_returnee_classification_table(case, expected) -> None:
    assert rules.classify_returnee(case) == expected


def test_a_province_with_a_current_risk_area_is_a_key_region() -> None:
    suzhou = facts(origin="320500")
    assert rules.classify_returnee(suzhou, risk_provinces={"32"}) == ReturneeCategory.domestic_key_region
    assert rules.classify_returnee(suzhou, risk_provinces={"31"}) == ReturneeCategory.domestic_other


@pytest.mark.parametrize(("area", "stay_code", "covers"), [
    ("440305", "440305", True), ("440305", "440300", True), ("440300", "440305", True),
    ("440000", "440305", True), ("440305", "440306", False), ("440305", "310000", False),
])
def test_area_covers_stays_recorded_at_any_level(area, stay_code, covers) -> None:
    assert rules.area_covers(area, stay_code) is covers


def test_stays_overlap_the_window_inclusively() -> None:
    start, end = rules.risk_window(date(2022, 3, 15), None, 14)
    assert start == date(2022, 3, 1)
    assert rules.stays_overlap([stay("440305", date(2022, 2, 20), date(2022, 3, 1))], "440305", start, end)
    assert rules.stays_overlap([stay("440305", date(2022, 2, 20), date(2022, 2, 28))], "440305", start, end) is None
    closed_start, closed_end = rules.risk_window(date(2022, 3, 15), date(2022, 3, 20), 0)
    assert rules.stays_overlap([stay("440305", date(2022, 3, 21), date(2022, 3, 22))], "440305",
                               closed_start, closed_end) is None


@pytest.mark.parametrize(("source_degree", "is_case", "expected"), [
    (None, True, 1), (1, False, 2), (2, False, 3), (None, False, None), (1, True, 1),
])
def test_contact_degree(source_degree, is_case, expected) -> None:
    assert rules.contact_degree(source_degree, is_case) == expected


@pytest.mark.parametrize(("born", "on", "group"), [
    (date(2010, 5, 1), date(2022, 4, 30), "3-11"), (date(2010, 5, 1), date(2022, 5, 1), "12-14"),
    (date(2007, 1, 1), date(2022, 1, 1), "15-17"), (date(2004, 2, 29), date(2022, 2, 28), "15-17"),
    (date(2004, 2, 29), date(2022, 3, 1), "18+"),
])
def test_vaccination_age_groups(born, on, group) -> None:
    assert rules.vaccination_age_group(born, on) == group


def test_fever_line_is_37_3() -> None:
    assert rules.is_fever(37.3) and not rules.is_fever(37.2)
