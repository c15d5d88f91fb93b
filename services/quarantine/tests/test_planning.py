"""Planning table: exact dates for every shipped category, top-ups, partial days, month/year ends,
re-planning under a new version, and the cut when a person turns positive."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from quarantine.domain.planning import Facts, cut_at, local_date, plan, replan, stage_index_on
from quarantine.domain.policy import PolicyBook, PolicyError, load_packaged, parse_policy, parse_yaml

D = date.fromisoformat
V1 = load_packaged()[0]


def rows(stages):
    return [(s.kind, s.place, str(s.start_date), str(s.end_date), [str(t) for t in s.test_days]) for s in stages]


def facts(category, order, *, arrival=None, exposure=None, served=0):
    return Facts(category=category, order_date=D(order), arrival_date=D(arrival) if arrival else None,
                 exposure_date=D(exposure) if exposure else None, served_days=served)


PLAN_TABLE = [
    pytest.param(facts("inbound_international", "2026-01-10", arrival="2026-01-10"), [
        ("centralized", "port", "2026-01-10", "2026-01-23", []),
        ("centralized", "municipal_site", "2026-01-24", "2026-01-30", ["2026-01-24", "2026-01-30"]),
        ("home", "home", "2026-01-31", "2026-02-06", []),
    ], "2026-02-07", id="inbound 14 port + 7 municipal (tests days 1,7) + 7 home"),
    pytest.param(facts("inbound_international", "2026-01-25", arrival="2026-01-25"), [
        ("centralized", "port", "2026-01-25", "2026-02-07", []),
        ("centralized", "municipal_site", "2026-02-08", "2026-02-14", ["2026-02-08", "2026-02-14"]),
        ("home", "home", "2026-02-15", "2026-02-21", []),
    ], "2026-02-22", id="inbound across a month end"),
    pytest.param(facts("inbound_international", "2028-02-20", arrival="2028-02-20"), [
        ("centralized", "port", "2028-02-20", "2028-03-04", []),
        ("centralized", "municipal_site", "2028-03-05", "2028-03-11", ["2028-03-05", "2028-03-11"]),
        ("home", "home", "2028-03-12", "2028-03-18", []),
    ], "2028-03-19", id="inbound across 29 February"),
    pytest.param(facts("inbound_international", "2026-12-20", arrival="2026-12-20"), [
        ("centralized", "port", "2026-12-20", "2027-01-02", []),
        ("centralized", "municipal_site", "2027-01-03", "2027-01-09", ["2027-01-03", "2027-01-09"]),
        ("home", "home", "2027-01-10", "2027-01-16", []),
    ], "2027-01-17", id="inbound across a year end"),
    pytest.param(facts("inbound_port_completed_elsewhere", "2026-03-01", arrival="2026-03-01", served=14), [
        ("centralized", "municipal_site", "2026-03-01", "2026-03-07", ["2026-03-01", "2026-03-07"]),
        ("home", "home", "2026-03-08", "2026-03-14", []),
    ], "2026-03-15", id="top-up after 14 port days elsewhere"),
    pytest.param(facts("inbound_port_completed_elsewhere", "2026-03-01", arrival="2026-03-01", served=10), [
        ("centralized", "port", "2026-03-01", "2026-03-04", ["2026-03-01"]),
        ("centralized", "municipal_site", "2026-03-05", "2026-03-11", ["2026-03-05", "2026-03-11"]),
        ("home", "home", "2026-03-12", "2026-03-18", []),
    ], "2026-03-19", id="top-up after 10 of 14 port days: 4 left, entry test"),
    pytest.param(facts("inbound_port_completed_elsewhere", "2026-03-01", arrival="2026-03-01", served=17), [
        ("centralized", "municipal_site", "2026-03-01", "2026-03-04", ["2026-03-01", "2026-03-04"]),
        ("home", "home", "2026-03-05", "2026-03-11", []),
    ], "2026-03-12", id="top-up after 17 days: municipal day 4..7, its day-7 test kept"),
    pytest.param(facts("inbound_port_completed_elsewhere", "2026-03-01", arrival="2026-03-01", served=30), [
        ("home", "home", "2026-03-01", "2026-03-07", ["2026-03-01"]),
    ], "2026-03-08", id="21 centralized days served: home only (no credit there), still the arrival test"),
    pytest.param(facts("domestic_key_region", "2026-04-30", arrival="2026-04-28"), [
        ("monitoring", "home", "2026-04-30", "2026-05-11", ["2026-04-30"]),
    ], "2026-05-12", id="key region reported 2 days late: 12 days left, test on taking over"),
    pytest.param(facts("domestic_other", "2026-05-31", arrival="2026-05-30"), [
        ("monitoring", "home", "2026-05-31", "2026-05-31", ["2026-05-31"]),
    ], "2026-06-01", id="other domestic: one test"),
    pytest.param(facts("contact_degree_1", "2026-06-27", exposure="2026-06-25"), [
        ("centralized", "municipal_site", "2026-06-27", "2026-07-09",
         ["2026-06-27", "2026-06-29", "2026-07-02", "2026-07-09"]),
        ("monitoring", "home", "2026-07-10", "2026-07-16", ["2026-07-11", "2026-07-16"]),
    ], "2026-07-17", id="close contact: 14 from exposure (days 1,4,7,14) + 7 home (days 2,7)"),
    pytest.param(facts("contact_degree_1", "2026-06-25", exposure="2026-06-25"), [
        ("centralized", "municipal_site", "2026-06-25", "2026-07-09",
         ["2026-06-26", "2026-06-29", "2026-07-02", "2026-07-09"]),
        ("monitoring", "home", "2026-07-10", "2026-07-16", ["2026-07-11", "2026-07-16"]),
    ], "2026-07-17", id="close contact found on the exposure day: isolated from day 0"),
    pytest.param(facts("contact_degree_2", "2026-02-28", exposure="2026-02-27"), [
        ("centralized", "municipal_site", "2026-02-28", "2026-03-06", ["2026-02-28", "2026-03-03", "2026-03-06"]),
    ], "2026-03-07", id="secondary contact: 7 centralized (days 1,4,7) across February's end"),
    pytest.param(facts("contact_degree_1", "2026-06-20", exposure="2026-06-01"), [
        ("monitoring", "home", "2026-06-20", "2026-06-22", ["2026-06-20", "2026-06-22"]),
    ], "2026-06-23", id="contact found after the centralized period elapsed"),
    pytest.param(facts("risk_flagged_high", "2026-09-03", exposure="2026-08-31"), [
        ("monitoring", "home", "2026-09-03", "2026-09-14", ["2026-09-03"]),
    ], "2026-09-15", id="risk flag: 14 days from leaving the area, level falls back to risk_flagged"),
]


@pytest.mark.parametrize(("case", "expected", "release"), PLAN_TABLE)
def test_plan_table(case: Facts, expected, release: str) -> None:
    result = plan(V1, case)
    assert rows(result.stages) == expected
    assert str(result.release_date) == release


def test_credit_and_day_numbers() -> None:
    result = plan(V1, facts("inbound_port_completed_elsewhere", "2026-03-01", arrival="2026-03-01", served=17))
    assert result.credited_days == 17
    assert [(s.first_day, s.days) for s in result.stages] == [(4, 7), (1, 7)]


@pytest.mark.parametrize("category", ["local", "contact_degree_3", "nonsense"])
def test_no_rule_means_no_stages(category: str) -> None:
    result = plan(V1, facts(category, "2026-01-01"))
    assert result.stages == () and result.release_date is None


def test_local_date_is_the_shanghai_calendar_day() -> None:
    assert local_date(datetime(2026, 1, 9, 17, 30, tzinfo=UTC)) == D("2026-01-10")
    assert local_date(datetime(2026, 1, 9, 15, 59, tzinfo=UTC)) == D("2026-01-09")


def test_stage_index_on() -> None:
    stages = plan(V1, facts("inbound_international", "2026-01-10", arrival="2026-01-10")).stages
    assert stage_index_on(stages, D("2026-01-09")) == 0
    assert stage_index_on(stages, D("2026-01-23")) == 0
    assert stage_index_on(stages, D("2026-01-24")) == 1
    assert stage_index_on(stages, D("2026-02-06")) == 2
    assert stage_index_on(stages, D("2026-02-07")) is None


NINTH_LIKE = {
    "policy_id": "control-measures", "version": 2, "effective_from": "2026-06-28", "title": "v2",
    "basis": "test",
    "categories": {
        "contact_degree_1": {"count_from": "exposure", "entry_test": True, "stages": [
            {"kind": "centralized", "place": "municipal_site", "days": 7, "test_days": [1, 7]},
            {"kind": "monitoring", "place": "home", "days": 3, "test_days": [3]},
        ]},
        "inbound_international": {"count_from": "arrival", "stages": [
            {"kind": "centralized", "place": "port", "days": 14, "credit_served": True},
            {"kind": "centralized", "place": "municipal_site", "days": 7, "test_days": [1, 7]},
            {"kind": "home", "place": "home", "days": 14},
        ]},
    },
}
V2 = parse_policy(NINTH_LIKE)


def test_replan_shortens_the_current_stage_counting_days_served() -> None:
    case = facts("contact_degree_1", "2026-06-26", exposure="2026-06-25")
    old = plan(V1, case).stages
    assert rows(old)[0][2:4] == ("2026-06-26", "2026-07-09")
    new = replan(old, V2, case, D("2026-06-30"))
    assert rows(new) == [
        ("centralized", "municipal_site", "2026-06-26", "2026-07-02", ["2026-06-26", "2026-06-29", "2026-07-02"]),
        ("monitoring", "home", "2026-07-03", "2026-07-05", ["2026-07-05"]),
    ]


def test_replan_when_the_new_duration_is_already_served() -> None:
    case = facts("contact_degree_1", "2026-06-26", exposure="2026-06-25")
    new = replan(plan(V1, case).stages, V2, case, D("2026-07-05"))
    assert rows(new) == [
        ("centralized", "municipal_site", "2026-06-26", "2026-07-04", ["2026-06-26", "2026-06-29", "2026-07-02"]),
        ("monitoring", "home", "2026-07-05", "2026-07-07", ["2026-07-07"]),
    ]


def test_replan_counts_day_zero_for_a_contact_isolated_on_the_exposure_day() -> None:
    case = facts("contact_degree_1", "2026-06-25", exposure="2026-06-25")
    old = plan(V1, case).stages
    assert old[0].first_day == 0
    new = replan(old, V2, case, D("2026-06-29"))  # day 4 under way: 3 days done, 4 to go under a 7-day rule
    assert rows(new) == [  # today's test follows the new rule (no day-4 test in it)
        ("centralized", "municipal_site", "2026-06-25", "2026-07-02", ["2026-06-26", "2026-07-02"]),
        ("monitoring", "home", "2026-07-03", "2026-07-05", ["2026-07-05"]),
    ]


def test_replan_keeps_completed_stages_and_extends_the_current_one() -> None:
    case = facts("inbound_international", "2026-01-10", arrival="2026-01-10")
    old = plan(V1, case).stages
    new = replan(old, V2, case, D("2026-02-03"))
    assert new[:2] == old[:2]
    assert rows(new[2:]) == [("home", "home", "2026-01-31", "2026-02-13", [])]


def test_replan_before_the_start_plans_afresh_and_without_a_rule_changes_nothing() -> None:
    case = facts("inbound_international", "2026-08-08", arrival="2026-08-10")
    old = plan(V1, case).stages
    assert str(old[0].start_date) == "2026-08-10"
    new = replan(old, V2, case, D("2026-08-09"))
    assert str(new[-1].end_date) == "2026-09-13"  # 14 + 7 + 14 = 35 days from 08-10
    assert replan(old, V2, facts("domestic_other", "2026-08-08"), D("2026-08-09")) is None


def test_cut_at_a_positive_ends_the_current_stage_that_day() -> None:
    stages = plan(V1, facts("inbound_international", "2026-01-10", arrival="2026-01-10")).stages
    assert rows(cut_at(stages, D("2026-01-26"))) == [
        ("centralized", "port", "2026-01-10", "2026-01-23", []),
        ("centralized", "municipal_site", "2026-01-24", "2026-01-26", ["2026-01-24"]),
    ]


def test_packaged_policy_names_the_protocol_edition_and_covers_every_category() -> None:
    assert V1.policy_id == "control-measures" and V1.version == 1
    assert "《新型冠状病毒肺炎防控方案（第八版）》" in V1.basis
    assert set(V1.categories) >= {"inbound_international", "inbound_port_completed_elsewhere",
                                  "domestic_key_region", "domestic_other", "risk_flagged",
                                  "contact_degree_1", "contact_degree_2"}


def test_policy_book_picks_the_version_in_force() -> None:
    book = PolicyBook([V1, V2])
    assert book.in_force(D("2026-06-27")).version == 1
    assert book.in_force(D("2026-06-28")).version == 2
    assert book.in_force(D("2020-01-01")) is None
    assert book.get("control-measures", 2) is V2


def test_bad_policy_documents_name_each_field() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy({"policy_id": "p", "version": 0, "effective_from": "2026-13-01", "categories": {
            "martians": {"stages": []},
            "contact_degree_1": {"stages": [{"kind": "jail", "place": "home", "days": 3, "test_days": [4]}]},
        }})
    locs = {loc for loc, _ in caught.value.errors}
    assert locs == {"version", "effective_from", "categories.martians", "categories.contact_degree_1.stages.0.kind",
                    "categories.contact_degree_1.stages.0.test_days"}
    with pytest.raises(PolicyError):
        parse_yaml("policy_id: [unclosed")
