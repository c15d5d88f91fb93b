"""The capacity plan: tubes from collection sites to labs, as a time-expanded min-cost flow.

Nodes: one per (site, slot) holding tubes collected there, one per (lab, slot)
(its queue), one reagent node per lab, a backlog node and the sink.

Arcs (cost = slots of delay, so the optimum minimises total collection→result time):
- transport (site, t) → (lab, t + travel), for the site's nearest labs and any
  lab given an explicit travel time;
- holding (lab, t) → (lab, t + 1), cost 1: tubes waiting in the lab's queue;
- processing (lab, t) → reagent(lab), capacity = what the machines do in slot t
  (0 while the lab is closed), bounded by the reagent stock too;
- reagent(lab) → sink, capacity = reagent stock: the stock bounds the whole horizon;
- (lab, last slot) → backlog and (site, t) → backlog at a high cost, so the
  problem is always feasible: what cannot be tested within the horizon is
  backlog, never an infeasible plan.

FIFO is applied afterwards to the flows to say when each batch is resulted.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
from ortools.graph.python import min_cost_flow

from testing.domain.geo import EARTH_RADIUS_KM


class PlanError(RuntimeError):
    pass


def parse_hhmm(value: str) -> int:
    """'08:30' → 510 minutes after midnight; '24:00' is the end of the day."""
    hours, _, minutes = value.partition(":")
    total = int(hours) * 60 + int(minutes or 0)
    if not 0 <= total <= 24 * 60 or not 0 <= int(minutes or 0) < 60:
        raise ValueError(f"not a time of day: {value!r}")
    return total


def is_open(minute_of_day: int, opens: int, closes: int) -> bool:
    """Open from ``opens`` (inclusive) to ``closes`` (exclusive); a window may run past midnight."""
    if opens == closes:
        return True  # 00:00–00:00 or 00:00–24:00 style: always open
    if opens < closes:
        return opens <= minute_of_day < closes
    return minute_of_day >= opens or minute_of_day < closes


def open_minutes_per_day(opens: int, closes: int) -> int:
    if opens == closes:
        return 24 * 60
    return (closes - opens) % (24 * 60) or 24 * 60


def spread_per_slot(rate_per_open_slot: float, open_flags: Sequence[bool]) -> list[int]:
    """Whole tubes per slot whose running sum tracks ``rate × open slots so far`` (no drift from rounding)."""
    out: list[int] = []
    done = 0
    j = 0
    for flag in open_flags:
        if not flag:
            out.append(0)
            continue
        j += 1
        target = math.floor(rate_per_open_slot * j + 1e-9)
        out.append(target - done)
        done = target
    return out


def slot_open_flags(start: datetime, slot_minutes: int, slots: int, opens: int, closes: int,
                    utc_offset_minutes: int) -> list[bool]:
    """Whether a site or lab is open at the start of each slot (hours are local time)."""
    base = (start.hour * 60 + start.minute + utc_offset_minutes) % (24 * 60)
    return [is_open((base + t * slot_minutes) % (24 * 60), opens, closes) for t in range(slots)]


def lab_slot_capacity(tubes_per_day: int, opens: int, closes: int, *, start: datetime, slot_minutes: int,
                      slots: int, utc_offset_minutes: int) -> list[int]:
    """Tubes a lab's machines result per slot: its daily throughput spread over its opening hours."""
    flags = slot_open_flags(start, slot_minutes, slots, opens, closes, utc_offset_minutes)
    rate = tubes_per_day * slot_minutes / open_minutes_per_day(opens, closes)
    return spread_per_slot(rate, flags)


@dataclass(frozen=True)
class PlanSite:
    id: str
    latitude: float
    longitude: float


@dataclass(frozen=True)
class PlanLab:
    id: str
    latitude: float
    longitude: float
    capacity_per_slot: tuple[int, ...]  # machines: tubes per slot, 0 while closed
    reagent_stock: int  # tests' worth of reagent: bounds the whole horizon
    run_hours: float = 0.0  # from a tube's processing slot to its result


@dataclass(frozen=True)
class Cohort:
    """Tubes waiting at a site from slot ``slot`` on, collected at ``collected_at``."""

    site_id: str
    slot: int
    collected_at: datetime
    tubes: int


@dataclass(frozen=True)
class PlanInput:
    start: datetime
    slot_minutes: int
    slots: int
    sites: Sequence[PlanSite]
    labs: Sequence[PlanLab]
    cohorts: Sequence[Cohort]
    speed_kmh: float = 30.0
    handling_minutes: float = 15.0
    nearest_labs: int = 8
    # (site id, lab id) → minutes: a measured road time overrides the great-circle estimate.
    travel_minutes: Mapping[tuple[str, str], float] = field(default_factory=dict)


@dataclass
class Batch:
    """Tubes collected at one site in one slot and sent to one lab."""

    site_id: str
    lab_id: str
    collected_from: datetime
    collected_to: datetime
    tubes: int
    arrives_at: datetime
    resulted_tubes: int = 0
    last_result_at: datetime | None = None  # when the last resulted tube of the batch is known

    @property
    def backlog_tubes(self) -> int:
        return self.tubes - self.resulted_tubes


@dataclass
class PlanResult:
    start: datetime
    slot_minutes: int
    slots: int
    total_tubes: int
    routed: dict[tuple[str, str], int]  # (site, lab) → tubes sent
    processed: dict[str, list[int]]  # lab → tubes resulted per slot
    queue: dict[str, list[int]]  # lab → tubes waiting at the end of each slot
    lab_backlog: dict[str, int]  # lab → tubes still queued at the end of the horizon
    site_backlog: dict[str, int]  # site → tubes no lab could take within the horizon
    batches: list[Batch]
    share_within: dict[int, float | None]  # hours → share of tubes resulted within that many hours
    build_seconds: float
    solve_seconds: float
    arcs: int
    nodes: int

    @property
    def backlog_tubes(self) -> int:
        return sum(self.lab_backlog.values()) + sum(self.site_backlog.values())

    @property
    def processed_tubes(self) -> int:
        return sum(sum(v) for v in self.processed.values())

    def backlog_by_hour(self, lab_id: str) -> list[tuple[datetime, int]]:
        """Tubes waiting at the lab at the end of each hour of the horizon."""
        per_hour = max(1, 60 // self.slot_minutes)
        q = self.queue[lab_id]
        out = []
        for end in range(per_hour - 1, self.slots, per_hour):
            hour_start = self.start + timedelta(minutes=(end + 1) * self.slot_minutes - 60)
            out.append((hour_start, q[end]))
        return out


def _travel_slot_matrix(plan: PlanInput) -> np.ndarray:
    """Slots from each site to each lab (rounded up): great-circle at the set speed, explicit times win."""
    s_lat = np.radians([s.latitude for s in plan.sites])[:, None]
    s_lon = np.radians([s.longitude for s in plan.sites])[:, None]
    l_lat = np.radians([lab.latitude for lab in plan.labs])[None, :]
    l_lon = np.radians([lab.longitude for lab in plan.labs])[None, :]
    a = np.sin((l_lat - s_lat) / 2) ** 2 + np.cos(s_lat) * np.cos(l_lat) * np.sin((l_lon - s_lon) / 2) ** 2
    km = 2 * EARTH_RADIUS_KM * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    minutes = plan.handling_minutes + 60.0 * km / plan.speed_kmh
    if plan.travel_minutes:
        site_index = {s.id: i for i, s in enumerate(plan.sites)}
        lab_index = {lab.id: j for j, lab in enumerate(plan.labs)}
        for (site_id, lab_id), value in plan.travel_minutes.items():
            i, j = site_index.get(site_id), lab_index.get(lab_id)
            if i is not None and j is not None:
                minutes[i, j] = value
    return np.ceil(minutes / plan.slot_minutes - 1e-9).astype(np.int64)


def solve_plan(plan: PlanInput) -> PlanResult:
    t0 = time.perf_counter()
    T = plan.slots
    n_sites, n_labs = len(plan.sites), len(plan.labs)
    site_index = {s.id: i for i, s in enumerate(plan.sites)}
    for lab in plan.labs:
        if len(lab.capacity_per_slot) != T:
            raise PlanError(f"lab {lab.id}: capacity for {len(lab.capacity_per_slot)} slots, plan has {T}")

    # Site-slot nodes only where tubes wait.
    cohorts_at: dict[tuple[int, int], list[Cohort]] = defaultdict(list)
    for c in plan.cohorts:
        if c.tubes <= 0:
            continue
        if c.site_id not in site_index:
            raise PlanError(f"tubes for unknown site {c.site_id}")
        if not 0 <= c.slot < T:
            raise PlanError(f"cohort slot {c.slot} outside the horizon of {T} slots")
        cohorts_at[(site_index[c.site_id], c.slot)].append(c)
    site_nodes = sorted(cohorts_at)
    supply = np.array([sum(c.tubes for c in cohorts_at[key]) for key in site_nodes], dtype=np.int64)
    total = int(supply.sum())
    S = len(site_nodes)
    lab_base = S
    reagent_base = lab_base + n_labs * T
    backlog = reagent_base + n_labs
    sink = backlog + 1
    big = 4 * T + 10  # tubes left at a lab at the end: worse than any delay inside the horizon
    unbounded = max(total, 1)

    tails: list[np.ndarray] = []
    heads: list[np.ndarray] = []
    caps: list[np.ndarray] = []
    costs: list[np.ndarray] = []

    def add(t, h, c, w) -> int:
        t = np.asarray(t, dtype=np.int32)
        tails.append(t)
        heads.append(np.asarray(h, dtype=np.int32))
        caps.append(np.broadcast_to(np.asarray(c, dtype=np.int64), t.shape))
        costs.append(np.broadcast_to(np.asarray(w, dtype=np.int64), t.shape))
        return len(t)

    # transport arcs
    transport_site = transport_lab = transport_arrival = np.zeros(0, dtype=np.int64)
    if S and n_labs:
        travel = _travel_slot_matrix(plan)
        k = min(plan.nearest_labs, n_labs)
        candidates = np.argpartition(travel, k - 1, axis=1)[:, :k] if k < n_labs else \
            np.tile(np.arange(n_labs), (n_sites, 1))
        cand_sets = [set(row.tolist()) for row in candidates]
        if plan.travel_minutes:
            lab_index = {lab.id: j for j, lab in enumerate(plan.labs)}
            for site_id, lab_id in plan.travel_minutes:
                if site_id in site_index and lab_id in lab_index:
                    cand_sets[site_index[site_id]].add(lab_index[lab_id])
        node_site = np.array([i for i, _ in site_nodes], dtype=np.int64)
        node_slot = np.array([t for _, t in site_nodes], dtype=np.int64)
        width = max(len(c) for c in cand_sets)
        cand = np.full((n_sites, width), -1, dtype=np.int64)
        for i, labs_i in enumerate(cand_sets):
            row = sorted(labs_i)
            cand[i, : len(row)] = row
        labs_per_node = cand[node_site]  # S × width
        node_idx = np.repeat(np.arange(S), width)
        lab_flat = labs_per_node.reshape(-1)
        ok = lab_flat >= 0
        node_idx, lab_flat = node_idx[ok], lab_flat[ok]
        arrival = node_slot[node_idx] + travel[node_site[node_idx], lab_flat]
        ok = arrival < T
        node_idx, lab_flat, arrival = node_idx[ok], lab_flat[ok], arrival[ok]
        transport_site, transport_lab, transport_arrival = node_idx, lab_flat, arrival
        add(node_idx, lab_base + lab_flat * T + arrival, supply[node_idx],
            arrival - node_slot[node_idx])
    n_transport = len(transport_site)

    # site → backlog only where no lab can be reached within the horizon; elsewhere the
    # lab's end-of-horizon arc already keeps the problem feasible (fewer arcs, faster solve).
    stranded = np.nonzero(np.bincount(transport_site, minlength=S) == 0)[0] if S else np.zeros(0, dtype=np.int64)
    n_stranded = add(stranded, np.full(len(stranded), backlog), supply[stranded], big + 2 * T)

    # holding, processing, end-of-horizon arcs per lab
    lab_ids = np.repeat(np.arange(n_labs), T)
    slot_ids = np.tile(np.arange(T), n_labs)
    lab_nodes = lab_base + lab_ids * T + slot_ids
    hold_mask = slot_ids < T - 1
    n_hold = add(lab_nodes[hold_mask], lab_nodes[hold_mask] + 1, unbounded, 1)
    proc_caps = np.array([min(c, lab.reagent_stock) for lab in plan.labs for c in lab.capacity_per_slot],
                         dtype=np.int64) if n_labs else np.zeros(0, dtype=np.int64)
    proc_caps = np.maximum(proc_caps, 0)
    add(lab_nodes, reagent_base + lab_ids, proc_caps, 0)
    add(lab_base + np.arange(n_labs) * T + (T - 1), np.full(n_labs, backlog), unbounded, big)
    add(reagent_base + np.arange(n_labs), np.full(n_labs, sink),
        np.array([max(lab.reagent_stock, 0) for lab in plan.labs], dtype=np.int64), 0)
    add([backlog], [sink], unbounded, 0)

    tail = np.concatenate(tails)
    head = np.concatenate(heads)
    smcf = min_cost_flow.SimpleMinCostFlow()
    arc_ids = smcf.add_arcs_with_capacity_and_unit_cost(tail, head, np.concatenate(caps), np.concatenate(costs))
    supplies = np.zeros(sink + 1, dtype=np.int64)
    supplies[:S] = supply
    supplies[sink] = -total
    smcf.set_nodes_supplies(np.arange(sink + 1, dtype=np.int32), supplies)
    t1 = time.perf_counter()
    status = smcf.solve()
    t2 = time.perf_counter()
    if status != smcf.OPTIMAL:
        raise PlanError(f"min-cost flow ended with status {status}")
    flows = smcf.flows(arc_ids)

    # unpack flows
    pos = 0
    f_transport = flows[pos:pos + n_transport]; pos += n_transport
    f_site_backlog = np.zeros(S, dtype=np.int64)
    f_site_backlog[stranded] = flows[pos:pos + n_stranded]; pos += n_stranded
    f_hold = flows[pos:pos + n_hold]; pos += n_hold
    f_proc = flows[pos:pos + n_labs * T].reshape(n_labs, T) if n_labs else np.zeros((0, T), dtype=np.int64)
    pos += n_labs * T
    f_end = flows[pos:pos + n_labs]

    slot = timedelta(minutes=plan.slot_minutes)
    routed: dict[tuple[str, str], int] = defaultdict(int)
    site_backlog: dict[str, int] = defaultdict(int)
    # lab → [(arrival slot, collected_at, batch index, tubes)]
    arrivals: dict[int, list[tuple[int, datetime, int, int]]] = defaultdict(list)
    batches: list[Batch] = []
    outflows: dict[int, list[tuple[int, int, int]]] = defaultdict(list)  # node → (arrival, lab, tubes)
    for idx in np.nonzero(f_transport)[0]:
        outflows[int(transport_site[idx])].append(
            (int(transport_arrival[idx]), int(transport_lab[idx]), int(f_transport[idx])))
    unresolved: list[tuple[datetime, int]] = []  # (collected_at, tubes) never resulted in the horizon
    for node, (site_i, t) in enumerate(site_nodes):
        site_id = plan.sites[site_i].id
        # FIFO at the site: the oldest tubes take the earliest-arriving transport.
        pool = sorted(((c.collected_at, c.tubes) for c in cohorts_at[(site_i, t)]), key=lambda x: x[0])
        ci, left = 0, pool[0][1]
        for arrival, lab_j, tubes in sorted(outflows.get(node, ())):
            routed[(site_id, plan.labs[lab_j].id)] += tubes
            batch = Batch(site_id, plan.labs[lab_j].id, pool[ci][0], pool[ci][0], tubes,
                          plan.start + arrival * slot)
            bi = len(batches)
            batches.append(batch)
            while tubes > 0:
                take = min(tubes, left)
                arrivals[lab_j].append((arrival, pool[ci][0], bi, take))
                batch.collected_to = pool[ci][0]
                tubes -= take
                left -= take
                if left == 0 and ci + 1 < len(pool):
                    ci += 1
                    left = pool[ci][1]
        stuck = int(f_site_backlog[node])
        if stuck:
            site_backlog[site_id] += stuck
            remaining = stuck
            for collected_at, tubes in reversed(pool):  # the newest stay behind
                take = min(tubes, remaining)
                unresolved.append((collected_at, take))
                remaining -= take
                if remaining == 0:
                    break

    # FIFO at each lab against the processing flows.
    delays: list[tuple[datetime, datetime, int]] = []  # (collected_at, result_at, tubes)
    processed: dict[str, list[int]] = {}
    queue: dict[str, list[int]] = {}
    lab_backlog: dict[str, int] = {}
    for j, lab in enumerate(plan.labs):
        proc = f_proc[j].astype(int).tolist() if n_labs else []
        processed[lab.id] = proc
        items = sorted(arrivals.get(j, ()), key=lambda a: (a[0], a[1]))
        q_levels = []
        head_i, head_left = 0, (items[0][3] if items else 0)
        arrived = done = 0
        ai = 0
        run = timedelta(hours=lab.run_hours)
        for t in range(T):
            while ai < len(items) and items[ai][0] <= t:
                arrived += items[ai][3]
                ai += 1
            capacity = proc[t]
            done += capacity
            result_at = plan.start + (t + 1) * slot + run
            while capacity > 0 and head_i < len(items):
                take = min(capacity, head_left)
                _, collected_at, bi, _ = items[head_i]
                batches[bi].resulted_tubes += take
                batches[bi].last_result_at = result_at
                delays.append((collected_at, result_at, take))
                capacity -= take
                head_left -= take
                if head_left == 0:
                    head_i += 1
                    head_left = items[head_i][3] if head_i < len(items) else 0
            q_levels.append(arrived - done)
        queue[lab.id] = q_levels
        lab_backlog[lab.id] = int(f_end[j]) if n_labs else 0
        # Tubes left in the queue at the end: unresolved within the horizon.
        while head_i < len(items):
            unresolved.append((items[head_i][1], head_left))
            head_i += 1
            head_left = items[head_i][3] if head_i < len(items) else 0

    horizon_end = plan.start + T * slot
    share_within: dict[int, float | None] = {}
    for hours in (12, 24):
        limit = timedelta(hours=hours)
        good = sum(n for c, r, n in delays if r - c <= limit)
        known = sum(n for c, r, n in delays) + sum(n for c, n in unresolved if c + limit <= horizon_end)
        share_within[hours] = round(good / known, 4) if known else None

    return PlanResult(
        start=plan.start, slot_minutes=plan.slot_minutes, slots=T, total_tubes=total, routed=dict(routed),
        processed=processed, queue=queue, lab_backlog=lab_backlog, site_backlog=dict(site_backlog),
        batches=batches, share_within=share_within, build_seconds=t1 - t0, solve_seconds=t2 - t1,
        arcs=len(tail), nodes=sink + 1,
    )
