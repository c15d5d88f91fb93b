"""Placement rules: capacity, kind, home city first, then the cities configured to support it."""

from __future__ import annotations

from quarantine.domain.checkins import alert_kinds
from quarantine.domain.placement import SiteSlot, candidates, choose, is_low, place_many
from quarantine.domain.transfers import can_advance


def sites():
    return [
        SiteSlot("home-hotel", "hotel", "420102", capacity=2, occupancy=0),
        SiteSlot("home-hospital", "hospital", "420103", capacity=1, occupancy=0),
        SiteSlot("home-fangcang", "fangcang", "420104", capacity=1, occupancy=0),
        SiteSlot("helper-hotel", "hotel", "420202", capacity=3, occupancy=0, supporting_regions=("420100",)),
        SiteSlot("stranger-hotel", "hotel", "420302", capacity=50, occupancy=0),
    ]


def test_fills_home_city_then_supporting_city_then_nothing() -> None:
    chosen = place_many(sites(), [("420111", ("hotel",))] * 6)
    assert [s.site_id if s else None for s in chosen] == [
        "home-hotel", "home-hotel", "helper-hotel", "helper-hotel", "helper-hotel", None]


def test_supporting_site_serves_only_the_cities_it_supports() -> None:
    # a person of 4203 gets the 4203 hotel; the 4202 helper supports 4201 only
    assert choose(sites(), "420302", ("hotel",)).site_id == "stranger-hotel"
    assert choose(sites(), "430102", ("hotel",)) is None


def test_positives_go_to_hospital_then_fangcang_never_hotel() -> None:
    chosen = place_many(sites(), [("420111", ("hospital", "fangcang"))] * 3)
    assert [s.site_id if s else None for s in chosen] == ["home-hospital", "home-fangcang", None]


def test_within_a_tier_the_emptiest_site_comes_first() -> None:
    pool = [SiteSlot("a", "hotel", "420102", 10, 8), SiteSlot("b", "hotel", "420103", 10, 2)]
    assert [s.site_id for s in candidates(pool, "420111", ("hotel",))] == ["b", "a"]


def test_capacity_low_is_under_ten_percent_free() -> None:
    assert not is_low(10, 9)  # 10 % free: not yet
    assert is_low(10, 10)
    assert is_low(100, 91)
    assert not is_low(100, 90)


def test_transfer_states_and_checkin_alerts() -> None:
    assert can_advance("requested", "dispatched") and can_advance("dispatched", "arrived")
    assert not can_advance("requested", "arrived") and not can_advance("arrived", "dispatched")
    assert alert_kinds(37.3, []) == ["fever"]
    assert alert_kinds(37.2, []) == []
    assert alert_kinds(36.5, ["咳嗽"]) == ["symptoms"]


def test_place_many_makes_the_same_choices_as_choose_one_by_one() -> None:
    import random

    rng = random.Random(7)
    regions = ["420102", "420111", "420302", "420502", "430102"]
    fleet = [SiteSlot(f"s{i:02d}", rng.choice(["hotel", "hospital", "fangcang"]),
                      rng.choice(["420103", "420202", "420303", "420505"]), rng.randint(0, 4), 0,
                      tuple(rng.sample(["420100", "420300"], rng.randint(0, 2)))) for i in range(30)]
    people = [(rng.choice(regions), rng.choice([("hotel",), ("hospital", "fangcang")])) for _ in range(120)]
    copy = [SiteSlot(s.site_id, s.kind, s.region_code, s.capacity, 0, s.supporting_regions) for s in fleet]
    fast = [s.site_id if s else None for s in place_many(fleet, people)]
    slow = []
    for region, kinds in people:
        site = choose(copy, region, kinds)
        if site is not None:
            site.occupancy += 1
        slow.append(site.site_id if site else None)
    assert fast == slow and any(fast) and None in fast
