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
    pos += n_hold
    f_proc = flows[pos:pos + n_labs * T].reshape(n_labs, T) if n_labs else np.zeros((0, T), dtype=np.int64)
    pos += n_labs * T
    f_end = flows[pos:pos + n_labs]
    fifo = _fifo(plan, site_nodes, cohorts_at, transport_site, transport_lab, transport_arrival, f_transport,
                 f_site_backlog, f_proc)
    routed, site_backlog, batches, share_within, queue = fifo
    processed = {lab.id: f_proc[j].astype(int).tolist() for j, lab in enumerate(plan.labs)}
    lab_backlog = {lab.id: int(f_end[j]) for j, lab in enumerate(plan.labs)}

    return PlanResult(
        start=plan.start, slot_minutes=plan.slot_minutes, slots=T, total_tubes=total, routed=dict(routed),
        processed=processed, queue=queue, lab_backlog=lab_backlog, site_backlog=dict(site_backlog),
        batches=batches, share_within=share_within, build_seconds=t1 - t0, solve_seconds=t2 - t1,
        arcs=len(tail), nodes=sink + 1,
    )


def _fifo(plan: PlanInput, site_nodes, cohorts_at, transport_site, transport_lab, transport_arrival, f_transport,
          f_site_backlog, f_proc):
    """First in, first out over the optimal flows, in numpy.

    At a site the oldest tubes take the earliest transport; at a lab tubes are
    processed in order of arrival (then of collection). Tubes are laid on one
    global line per stage (cumulative sums), so every split is a searchsorted.
    """
    T, slot_minutes = plan.slots, plan.slot_minutes
    n_labs = len(plan.labs)
    # cohorts on one line: ordered by node, then by collection time (minutes from the start)
    c_node, c_time, c_tubes = [], [], []
    for node, key in enumerate(site_nodes):
        for c in cohorts_at[key]:
            c_node.append(node)
            c_time.append((c.collected_at - plan.start).total_seconds() / 60.0)
            c_tubes.append(c.tubes)
    c_node = np.asarray(c_node, dtype=np.int64)
    c_time = np.asarray(c_time, dtype=np.float64)
    c_tubes = np.asarray(c_tubes, dtype=np.int64)
    order = np.lexsort((c_time, c_node))
    c_node, c_time, c_tubes = c_node[order], c_time[order], c_tubes[order]
    c_cum = np.cumsum(c_tubes)

    # what leaves each node on the same line: transports by arrival, then the stranded rest last
    used = np.nonzero(f_transport)[0]
    o_node = np.concatenate([transport_site[used], np.nonzero(f_site_backlog)[0]]).astype(np.int64)
    o_lab = np.concatenate([transport_lab[used], np.full(int((f_site_backlog > 0).sum()), -1)]).astype(np.int64)
    o_arrival = np.concatenate([transport_arrival[used], np.full(int((f_site_backlog > 0).sum()), T)]).astype(np.int64)
    o_tubes = np.concatenate([f_transport[used], f_site_backlog[f_site_backlog > 0]]).astype(np.int64)
    order = np.lexsort((o_lab, o_arrival, o_node))
    o_node, o_lab, o_arrival, o_tubes = o_node[order], o_lab[order], o_arrival[order], o_tubes[order]
    o_cum = np.cumsum(o_tubes)

    # pieces: the segments between the union of both lines' boundaries
    bounds = np.union1d(c_cum, o_cum)
    starts = np.concatenate([np.zeros(1, dtype=bounds.dtype), bounds[:-1]]) if len(bounds) else bounds
    p_tubes = bounds - starts
    keep = p_tubes > 0
    bounds, p_tubes = bounds[keep], p_tubes[keep]
    p_cohort = np.searchsorted(c_cum, bounds, side="left")
    p_out = np.searchsorted(o_cum, bounds, side="left")
    p_time = c_time[p_cohort]
    p_lab = o_lab[p_out]
    p_arrival = o_arrival[p_out]

    run_minutes = np.array([lab.run_hours * 60.0 for lab in plan.labs] + [0.0])
    horizon_minutes = T * slot_minutes
    # lab line: pieces at labs ordered by lab, arrival, collection
    at_lab = p_lab >= 0
    l_idx = np.nonzero(at_lab)[0]
    order = np.lexsort((p_time[l_idx], p_arrival[l_idx], p_lab[l_idx]))
    l_idx = l_idx[order]
    l_lab = p_lab[l_idx]
    l_tubes = p_tubes[l_idx]
    # position of each piece within its lab's queue
    lab_total = np.bincount(l_lab, weights=l_tubes, minlength=n_labs).astype(np.int64)
    lab_offset = np.concatenate([[0], np.cumsum(lab_total)[:-1]])
    l_end = np.cumsum(l_tubes) - lab_offset[l_lab]
    l_start = l_end - l_tubes
    cum_proc = np.concatenate([np.zeros((n_labs, 1), dtype=np.int64), np.cumsum(f_proc, axis=1)], axis=1)  # L×(T+1)
    done = cum_proc[l_lab, T]
    l_resulted = np.clip(done - l_start, 0, l_tubes)
    # slot of the last resulted tube of each piece: first t with cum_proc[t+1] ≥ last position
    last_pos = np.minimum(l_end, done)
    width = int(cum_proc[:, T].max()) + 1 if n_labs else 1
    flat = (cum_proc[:, 1:] + np.arange(n_labs)[:, None] * width).reshape(-1)
    l_last_slot = np.searchsorted(flat, last_pos + l_lab * width, side="left") - l_lab * T
    l_last_slot = np.where(l_resulted > 0, l_last_slot, -1)

    # shares within 12 h and 24 h of collection
    share_within: dict[int, float | None] = {}
    l_time = p_time[l_idx]
    l_run = run_minutes[l_lab]
    unresolved_time = np.concatenate([l_time, p_time[~at_lab]])
    unresolved_tubes = np.concatenate([l_tubes - l_resulted, p_tubes[~at_lab]])
    for hours in (12, 24):
        limit = hours * 60.0
        # resulted at start + (t+1)·slot + run ≤ collected + limit  ⇔  t ≤ t_lim
        t_lim = np.floor((l_time + limit - l_run) / slot_minutes + 1e-9).astype(np.int64) - 1
        t_lim = np.clip(t_lim, -1, T - 1)
        good = np.clip(cum_proc[l_lab, t_lim + 1] - l_start, 0, l_resulted)
        known = int(l_resulted.sum()) + int(unresolved_tubes[unresolved_time + limit <= horizon_minutes].sum())
        share_within[hours] = round(int(good.sum()) / known, 4) if known else None

    # batches: one per transport with flow
    n_out = len(o_tubes)
    b_resulted = np.zeros(n_out, dtype=np.int64)
    np.add.at(b_resulted, p_out[l_idx], l_resulted)
    b_last = np.full(n_out, -1, dtype=np.int64)
    np.maximum.at(b_last, p_out[l_idx], l_last_slot)
    b_from = np.full(n_out, np.inf)
    b_to = np.full(n_out, -np.inf)
    np.minimum.at(b_from, p_out, p_time)
    np.maximum.at(b_to, p_out, p_time)

    site_of_node = np.array([i for i, _ in site_nodes], dtype=np.int64)
    routed: dict[tuple[str, str], int] = defaultdict(int)
    site_backlog: dict[str, int] = defaultdict(int)
    batches = _Batches(plan, site_of_node[o_node], o_lab, o_arrival, o_tubes, b_from, b_to, b_resulted, b_last,
                       run_minutes)
    site_ids = [s.id for s in plan.sites]
    lab_ids = [lab.id for lab in plan.labs]
    pairs = defaultdict(int)
    for site_i, lab_j, n in zip(site_of_node[o_node].tolist(), o_lab.tolist(), o_tubes.tolist()):
        pairs[(site_i, lab_j)] += n
    for (site_i, lab_j), n in pairs.items():
        if lab_j >= 0:
            routed[(site_ids[site_i], lab_ids[lab_j])] += n
        else:
            site_backlog[site_ids[site_i]] += n

    # queue at each lab at the end of each slot: arrived so far − processed so far
    arrivals = np.zeros((n_labs, T), dtype=np.int64)
    np.add.at(arrivals, (l_lab, p_arrival[l_idx]), l_tubes)
    queue_levels = np.cumsum(arrivals, axis=1) - cum_proc[:, 1:]
    queue = {lab.id: queue_levels[j].astype(int).tolist() for j, lab in enumerate(plan.labs)}
    return dict(routed), dict(site_backlog), batches, share_within, queue


class _Batches(list):
    """The batches of a plan, built as ``Batch`` objects on first use (a large plan has
    hundreds of thousands and most callers want only totals or the first few)."""

    def __init__(self, plan: PlanInput, site, lab, arrival, tubes, t_from, t_to, resulted, last_slot, run_minutes):
        super().__init__()
        self._args = (plan, site, lab, arrival, tubes, t_from, t_to, resulted, last_slot, run_minutes)
        self._built = False

    def _build(self) -> None:
        if self._built:
            return
        self._built = True
        plan, site, lab, arrival, tubes, t_from, t_to, resulted, last_slot, run_minutes = self._args
        start, minutes = plan.start, plan.slot_minutes
        for i in np.nonzero(lab >= 0)[0].tolist():
            j = int(lab[i])
            last = int(last_slot[i])
            super().append(Batch(
                plan.sites[int(site[i])].id, plan.labs[j].id, start + timedelta(minutes=float(t_from[i])),
                start + timedelta(minutes=float(t_to[i])), int(tubes[i]),
                start + timedelta(minutes=int(arrival[i]) * minutes), int(resulted[i]),
                start + timedelta(minutes=(last + 1) * minutes + float(run_minutes[j])) if last >= 0 else None))

    def __iter__(self):
        self._build()
        return super().__iter__()

    def __len__(self) -> int:
        self._build()
        return super().__len__()

    def __getitem__(self, item):
        self._build()
        return super().__getitem__(item)
