import math

import pytest

from testing.domain.geo import haversine_km, travel_minutes
from testing.domain.pooling import (
    best_ratio,
    check_tube,
    dorfman_tests_per_person,
    duplicates_across,
    prevalence_from_pools,
    theoretical_best_k,
)


@pytest.mark.parametrize("ratio", [1, 5, 10, 20])
def test_allowed_ratios_accept_up_to_ratio_members(ratio):
    assert check_tube(ratio, [f"p{i}" for i in range(ratio)]) == []
    assert check_tube(ratio, ["p0"]) == []  # a pool may be short (last tube of the queue)


@pytest.mark.parametrize("ratio", [0, 2, 3, 8, 15, 21, 50, -1])
def test_other_ratios_are_refused_naming_the_field(ratio):
    problems = check_tube(ratio, ["p0"])
    assert [p.field for p in problems] == ["ratio"]


def test_more_members_than_ratio_is_refused():
    problems = check_tube(10, [f"p{i}" for i in range(11)])
    assert [p.field for p in problems] == ["members"]
    assert "10" in problems[0].reason and "11" in problems[0].reason


def test_empty_and_repeated_members_are_refused():
    assert [p.field for p in check_tube(5, [])] == ["members"]
    assert [p.field for p in check_tube(5, ["a", "a"])] == ["members"]


def test_one_tube_per_person_per_round_inside_a_batch():
    dups = duplicates_across([("T1", ["a", "b"]), ("T2", ["c", "a"]), ("T3", ["d"])])
    assert dups == {"a": ["T1", "T2"]}


def test_dorfman_formula():
    p, k = 0.01, 10
    assert dorfman_tests_per_person(p, k) == pytest.approx(0.1 + 1 - 0.99 ** 10)
    assert dorfman_tests_per_person(0.2, 1) == 1.0  # a single tube is one test
    assert dorfman_tests_per_person(0.0, 20) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        dorfman_tests_per_person(1.5, 5)


@pytest.mark.parametrize(
    "p, expected",
    [
        (3e-5, 20),  # 1/√p ≈ 183: capped at the dilution limit
        (1e-3, 20),  # ≈ 32: capped
        (1e-2, 10),  # ≈ 10
        (0.04, 5),  # ≈ 5
        (0.5, 1),  # pooling costs more than it saves
    ],
)
def test_best_ratio_among_the_allowed(p, expected):
    assert best_ratio(p) == expected
    # and it really is the minimum of the formula among 1/5/10/20
    assert all(dorfman_tests_per_person(p, expected) <= dorfman_tests_per_person(p, k) for k in (1, 5, 10, 20))


def test_theoretical_k_is_about_one_over_root_p_capped():
    assert theoretical_best_k(0.01) == 10
    assert theoretical_best_k(0.0025) == 20
    assert theoretical_best_k(1e-6) == 20
    assert theoretical_best_k(0.25) == 2


def test_prevalence_from_pool_results_inverts_the_pool_probability():
    p = 0.01
    pools_positive_share = 1 - (1 - p) ** 10
    est = prevalence_from_pools({10: (100_000, round(100_000 * pools_positive_share))})
    assert est == pytest.approx(p, rel=0.01)
    assert prevalence_from_pools({}) is None
    assert prevalence_from_pools({1: (200, 2)}) == pytest.approx(0.01)


def test_haversine_and_travel_time():
    # Shenzhen Futian to Nanshan, about 11 km
    km = haversine_km(22.5431, 114.0579, 22.5333, 113.9304)
    assert 12 < km < 14
    assert haversine_km(0, 0, 0, 1) == pytest.approx(111.2, rel=0.01)
    assert travel_minutes(0, 0, 0, 1, speed_kmh=60, handling_minutes=10) == pytest.approx(10 + 111.2, rel=0.01)
    assert math.isclose(travel_minutes(1, 1, 1, 1, speed_kmh=30), 0.0)


def test_the_batch_key_maker_gives_the_shared_person_key():
    from fangkong_common.identity import person_key
    from testing.service import _KeyMaker

    make = _KeyMaker("s3cret")
    for raw in ("44030519900101123x", " 4403 0519-9001 01123X ", "４４０３０５１９９００１０１１２３Ｘ"):
        assert make(raw, "resident_id") == person_key("resident_id", "44030519900101123X", "s3cret")
    key = person_key("passport", "E1234", "s3cret")
    assert make(key, "resident_id") == key  # a person key passes through
    assert make("E1234", "passport") == key
