import random
from datetime import UTC, datetime, timedelta

import pytest

from testing.domain.plan import (
    Cohort,
    PlanInput,
    PlanLab,
    PlanSite,
    is_open,
    lab_slot_capacity,
    parse_hhmm,
    solve_plan,
)

START = datetime(2026, 4, 4, 0, 0, tzinfo=UTC)


def check_invariants(plan: PlanInput, result) -> None:
    supplied = sum(c.tubes for c in plan.cohorts)
    assert result.total_tubes == supplied
    # every tube is resulted or in backlog
    assert result.processed_tubes + result.backlog_tubes == supplied
    # every routed tube is counted once
    assert sum(result.routed.values()) + sum(result.site_backlog.values()) == supplied
    for lab in plan.labs:
        proc = result.processed[lab.id]
        # no lab above capacity in any slot, nor above its reagent over the horizon
        assert all(p <= c for p, c in zip(proc, lab.capacity_per_slot, strict=True))
        assert sum(proc) <= lab.reagent_stock
        assert all(q >= 0 for q in result.queue[lab.id])
        assert result.queue[lab.id][-1] == result.lab_backlog[lab.id]
    for batch in result.batches:
        assert 0 <= batch.resulted_tubes <= batch.tubes
        if batch.last_result_at is not None:
            assert batch.last_result_at >= batch.arrives_at


def test_parse_and_opening_hours():
    assert parse_hhmm("08:30") == 510
    assert parse_hhmm("24:00") == 1440
    with pytest.raises(ValueError):
        parse_hhmm("25:00")
    assert is_open(600, 480, 1200) and not is_open(1300, 480, 1200)
    assert is_open(1380, 1320, 360) and is_open(60, 1320, 360) and not is_open(600, 1320, 360)
    assert is_open(0, 0, 1440)


def test_lab_capacity_spreads_the_day_over_opening_hours_without_drift():
    # 8:00–20:00 local (UTC+8), 1,200 tubes a day, half-hour slots over two days
    cap = lab_slot_capacity(1200, 480, 1200, start=START, slot_minutes=30, slots=96, utc_offset_minutes=480)
    assert sum(cap) == 2400
    assert cap[0] == 50  # 00:00 UTC is 08:00 local: open
    assert cap[24] == 0  # 12:00 UTC is 20:00 local: closed
    assert max(cap) == 50


def test_one_site_one_lab_enough_capacity_everything_resulted_fast():
    lab = PlanLab("L", 0.0, 0.0, tuple([100] * 24), reagent_stock=10_000)
    plan = PlanInput(START, 60, 24, [PlanSite("S", 0.0, 0.01)], [lab],
                     [Cohort("S", 0, START, 150)], speed_kmh=30, handling_minutes=10)
    result = solve_plan(plan)
    check_invariants(plan, result)
    assert result.routed == {("S", "L"): 150}
    # travel 1 slot, then 100 + 50 over two slots
    assert result.processed["L"][:4] == [0, 100, 50, 0]
    assert result.backlog_tubes == 0
    assert result.share_within[12] == 1.0
    (batch,) = result.batches
    assert batch.last_result_at == START + timedelta(hours=3)


def test_reagent_stock_bounds_the_lab_and_the_rest_is_backlog():
    lab = PlanLab("L", 0.0, 0.0, tuple([100] * 10), reagent_stock=120)
    plan = PlanInput(START, 60, 10, [PlanSite("S", 0.0, 0.0)], [lab], [Cohort("S", 0, START, 500)],
                     handling_minutes=0)
    result = solve_plan(plan)
    check_invariants(plan, result)
    assert result.processed_tubes == 120
    assert result.backlog_tubes == 380


def test_overflow_goes_to_the_second_nearest_lab():
    near = PlanLab("near", 0.0, 0.0, tuple([10] * 12), reagent_stock=1000)
    far = PlanLab("far", 0.0, 0.2, tuple([100] * 12), reagent_stock=1000)  # ~22 km: 2 slots at 30 km/h
    plan = PlanInput(START, 30, 12, [PlanSite("S", 0.0, 0.0)], [near, far], [Cohort("S", 0, START, 100)],
                     handling_minutes=0)
    result = solve_plan(plan)
    check_invariants(plan, result)
    assert result.routed[("S", "far")] > 0 and result.routed[("S", "near")] > 0
    assert result.backlog_tubes == 0


def test_explicit_travel_time_overrides_coordinates():
    a = PlanLab("A", 0.0, 0.0, tuple([1000] * 24), reagent_stock=10_000)
    b = PlanLab("B", 0.0, 1.0, tuple([1000] * 24), reagent_stock=10_000)
    plan = PlanInput(START, 60, 24, [PlanSite("S", 0.0, 0.0)], [a, b], [Cohort("S", 0, START, 10)],
                     travel_minutes={("S", "A"): 600, ("S", "B"): 30})
    result = solve_plan(plan)
    assert result.routed == {("S", "B"): 10}


def test_no_reachable_lab_is_backlog_not_infeasible():
    lab = PlanLab("L", 0.0, 50.0, tuple([1000] * 4), reagent_stock=10_000)  # thousands of km away
    plan = PlanInput(START, 60, 4, [PlanSite("S", 0.0, 0.0)], [lab], [Cohort("S", 0, START, 30)])
    result = solve_plan(plan)
    check_invariants(plan, result)
    assert result.site_backlog == {"S": 30}
    assert result.share_within[24] is None  # nothing resulted and the horizon is shorter than a day


def test_shares_count_late_results():
    # 1 tube per slot of capacity, 30 tubes at once: the last ones wait more than 12 h
    lab = PlanLab("L", 0.0, 0.0, tuple([1] * 48), reagent_stock=1000)
    plan = PlanInput(START, 60, 48, [PlanSite("S", 0.0, 0.0)], [lab], [Cohort("S", 0, START, 30)],
                     handling_minutes=0)
    result = solve_plan(plan)
    check_invariants(plan, result)
    # results at end of slots 0..29 → delays 1 h .. 30 h
    assert result.share_within[12] == pytest.approx(12 / 30, abs=1e-4)
    assert result.share_within[24] == pytest.approx(24 / 30, abs=1e-4)
    hours = result.backlog_by_hour("L")
    assert hours[0] == (START, 29) and hours[29][1] == 0


@pytest.mark.parametrize("seed", range(8))
def test_random_networks_keep_the_invariants(seed):
    rng = random.Random(seed)
    T = rng.choice([12, 24, 48])
    slot_minutes = rng.choice([30, 60])
    sites = [PlanSite(f"s{i}", 22.5 + rng.random() * 0.3, 114 + rng.random() * 0.3) for i in range(rng.randint(1, 30))]
    labs = []
    for j in range(rng.randint(1, 8)):
        caps = tuple(rng.choice([0, rng.randint(0, 200)]) for _ in range(T))
        labs.append(PlanLab(f"l{j}", 22.5 + rng.random() * 0.3, 114 + rng.random() * 0.3, caps,
                            reagent_stock=rng.randint(0, 3000), run_hours=rng.choice([0, 2])))
    cohorts = [Cohort(rng.choice(sites).id, rng.randrange(T), START - timedelta(hours=rng.randint(0, 10)),
                      rng.randint(1, 300)) for _ in range(rng.randint(1, 60))]
    plan = PlanInput(START, slot_minutes, T, sites, labs, cohorts, nearest_labs=rng.randint(1, 4))
    result = solve_plan(plan)
    check_invariants(plan, result)


def test_enough_reachable_capacity_leaves_no_backlog():
    rng = random.Random(7)
    sites = [PlanSite(f"s{i}", 22.5 + rng.random() * 0.05, 114 + rng.random() * 0.05) for i in range(40)]
    labs = [PlanLab(f"l{j}", 22.5 + rng.random() * 0.05, 114 + rng.random() * 0.05, tuple([50] * 24), 10_000)
            for j in range(5)]
    cohorts = [Cohort(s.id, 0, START, 25) for s in sites]  # 1,000 tubes; 5 labs × 50 × 22 slots = 5,500
    plan = PlanInput(START, 60, 24, sites, labs, cohorts, speed_kmh=60, handling_minutes=0, nearest_labs=5)
    result = solve_plan(plan)
    check_invariants(plan, result)
    assert result.backlog_tubes == 0
    # the min-cost flow uses every lab from the first slot on: 250 a slot after a 1-slot trip
    assert sum(result.processed[lab.id][1] for lab in labs) == 250


def test_the_oldest_tubes_at_a_site_go_first():
    lab = PlanLab("L", 0.0, 0.0, tuple([10] * 6), reagent_stock=1000)
    old = Cohort("S", 0, START - timedelta(hours=22, minutes=30), 10)
    new = Cohort("S", 0, START, 10)
    plan = PlanInput(START, 60, 6, [PlanSite("S", 0.0, 0.0)], [lab], [new, old], handling_minutes=0)
    result = solve_plan(plan)
    check_invariants(plan, result)
    # old ones resulted at +1 h (23.5 h after collection), new ones at +2 h
    assert result.share_within[24] == 1.0
    assert result.share_within[12] == 0.5
    (batch,) = result.batches
    assert batch.collected_from == old.collected_at and batch.collected_to == new.collected_at
    assert batch.last_result_at == START + timedelta(hours=2)
