"""Use cases: the lab capacity plan, the forecast and its alerts."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from fangkong_common import outbox
from fangkong_common.auth import Principal
from fangkong_common.events.envelope import Envelope
from fangkong_common.events.schemas import TestingCapacityAlert
from testing.config import Settings
from testing.domain import pooling
from testing.domain.plan import (
    Cohort,
    PlanInput,
    PlanLab,
    PlanResult,
    PlanSite,
    lab_slot_capacity,
    parse_hhmm,
    slot_open_flags,
    solve_plan,
    spread_per_slot,
)
from testing.models import CapacityAlertState, CollectionSite, Lab, TravelTime, Tube
from testing.service.common import SOURCE, aware, chunks, lock_for_writes, utc_now
from testing.service.sites import require_scope


async def _scoped_places(session: AsyncSession, principal: Principal, region: str | None):
    if region is not None:
        require_scope(principal, region)
    site_q = select(CollectionSite).where(principal.scope_clause(CollectionSite.region_code))
    lab_q = select(Lab).where(principal.scope_clause(Lab.region_code))
    if region is not None:
        from fangkong_common.auth import region_prefix

        prefix = region_prefix(region)
        site_q = site_q.where(CollectionSite.region_code.startswith(prefix))
        lab_q = lab_q.where(Lab.region_code.startswith(prefix))
    sites = list(await session.scalars(site_q.order_by(CollectionSite.id)))
    labs = list(await session.scalars(lab_q.order_by(Lab.id)))
    return sites, labs


async def build_plan(session: AsyncSession, principal: Principal, settings: Settings, *, horizon_hours: int,
                     region: str | None, include_planned_collection: bool, slot_minutes: int | None = None,
                     now: datetime | None = None) -> tuple[PlanResult, dict, list[CollectionSite], list[Lab]]:
    sites, labs = await _scoped_places(session, principal, region)
    slot_minutes = slot_minutes or settings.plan_slot_minutes
    now = now or utc_now()
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=now.minute % slot_minutes)
    slots = max(1, horizon_hours * 60 // slot_minutes)
    offset = int(settings.local_utc_offset_hours * 60)

    cohorts: list[Cohort] = []
    pending = planned = 0
    site_ids = [s.id for s in sites]
    # Tubes swabbed and not yet resulted wait at their site from now on.
    # Grouped by hour of collection in the database: a city's backlog is a million tubes.
    if session.get_bind().dialect.name == "postgresql":
        hour_of = func.date_trunc("hour", Tube.collected_at)
    else:
        hour_of = func.strftime("%Y-%m-%d %H:00:00", Tube.collected_at)
    for part in chunks(site_ids):
        rows = await session.execute(
            select(Tube.site_id, hour_of, func.count()).where(
                Tube.status == "collected", Tube.site_id.in_(part)).group_by(Tube.site_id, hour_of))
        hourly: dict[tuple[str, datetime], int] = defaultdict(int)
        for site_id, hour, count in rows.all():
            if isinstance(hour, str):
                hour = datetime.fromisoformat(hour)
            hourly[(site_id, aware(hour).astimezone(UTC))] += count
        for (site_id, hour), count in hourly.items():
            slot = 0 if hour <= start else min(slots - 1, int((hour - start).total_seconds() // 60 // slot_minutes))
            cohorts.append(Cohort(site_id, slot, hour, count))
            pending += count
    if include_planned_collection:
        for site in sites:
            flags = slot_open_flags(start, slot_minutes, slots, parse_hhmm(site.opens_at), parse_hhmm(site.closes_at),
                                    offset)
            per_slot = spread_per_slot(site.swabs_per_hour * slot_minutes / 60 / site.default_ratio, flags)
            for t, n in enumerate(per_slot):
                if n:
                    cohorts.append(Cohort(site.id, t, start + timedelta(minutes=t * slot_minutes + slot_minutes / 2), n))
                    planned += n
    plan_labs = [
        PlanLab(lab.id, lab.latitude, lab.longitude,
                tuple(lab_slot_capacity(lab.tubes_per_day, parse_hhmm(lab.opens_at), parse_hhmm(lab.closes_at),
                                        start=start, slot_minutes=slot_minutes, slots=slots,
                                        utc_offset_minutes=offset)),
                reagent_stock=lab.reagent_stock, run_hours=lab.run_hours)
        for lab in labs
    ]
    travel: dict[tuple[str, str], float] = {}
    if sites and labs:
        lab_set = {lab.id for lab in labs}
        for part in chunks(site_ids):
            for row in await session.scalars(select(TravelTime).where(TravelTime.site_id.in_(part))):
                if row.lab_id in lab_set:
                    travel[(row.site_id, row.lab_id)] = row.minutes
    plan = PlanInput(start=start, slot_minutes=slot_minutes, slots=slots,
                     sites=[PlanSite(s.id, s.latitude, s.longitude) for s in sites], labs=plan_labs,
                     cohorts=cohorts, speed_kmh=settings.travel_speed_kmh,
                     handling_minutes=settings.travel_handling_minutes, nearest_labs=settings.plan_nearest_labs,
                     travel_minutes=travel)
    result = solve_plan(plan)
    return result, {"pending_tubes": pending, "planned_tubes": planned,
                    "capacity": {lab.id: sum(pl.capacity_per_slot) for lab, pl in zip(labs, plan_labs)}}, sites, labs


def _reagent_days(lab: Lab, routed_to_lab: int, horizon_hours: float) -> float | None:
    """Days the stock lasts at the planned rate: what the plan sends, at most what the machines do."""
    rate = min(lab.tubes_per_day, routed_to_lab * 24 / horizon_hours) if horizon_hours else 0
    if rate <= 0:
        return None
    return round(lab.reagent_stock / rate, 2)


def plan_response(result: PlanResult, extra: dict, labs: list[Lab], horizon_hours: int, batches_limit: int) -> dict:
    routed_to: dict[str, int] = defaultdict(int)
    routed_from: dict[str, int] = defaultdict(int)
    for (site_id, lab_id), n in result.routed.items():
        routed_to[lab_id] += n
        routed_from[site_id] += n
    lab_rows = []
    for lab in labs:
        lab_rows.append({
            "lab_id": lab.id, "name": lab.name, "region_code": lab.region_code,
            "capacity_tubes": extra["capacity"][lab.id], "routed_tubes": routed_to.get(lab.id, 0),
            "processed_tubes": sum(result.processed[lab.id]), "reagent_stock": lab.reagent_stock,
            "reagent_days_at_planned_rate": _reagent_days(lab, routed_to.get(lab.id, 0), horizon_hours),
            "backlog_end": result.lab_backlog[lab.id],
            "backlog_by_hour": [{"hour": h.isoformat(), "tubes": n} for h, n in result.backlog_by_hour(lab.id)],
        })
    batches = sorted(result.batches, key=lambda b: (b.collected_from, b.site_id, b.lab_id))[:batches_limit]
    return {
        "start": result.start.isoformat(), "slot_minutes": result.slot_minutes, "horizon_hours": horizon_hours,
        "total_tubes": result.total_tubes, "pending_tubes": extra["pending_tubes"],
        "planned_tubes": extra["planned_tubes"], "resulted_tubes": result.processed_tubes,
        "backlog_tubes": result.backlog_tubes,
        "share_resulted_within_12h": result.share_within[12], "share_resulted_within_24h": result.share_within[24],
        "routes": [{"site_id": s, "lab_id": lab, "tubes": n} for (s, lab), n in sorted(result.routed.items())],
        "sites": [{"site_id": s, "routed_tubes": routed_from.get(s, 0), "backlog_tubes": result.site_backlog.get(s, 0)}
                  for s in sorted(set(routed_from) | set(result.site_backlog))],
        "labs": lab_rows,
        "batches": [{"site_id": b.site_id, "lab_id": b.lab_id, "collected_from": b.collected_from.isoformat(),
                     "collected_to": b.collected_to.isoformat(), "tubes": b.tubes,
                     "arrives_at": b.arrives_at.isoformat(),
                     "expected_result_at": b.last_result_at.isoformat() if b.last_result_at else None,
                     "backlog_tubes": b.backlog_tubes} for b in batches],
        "batches_total": len(result.batches),
        "solver": {"nodes": result.nodes, "arcs": result.arcs, "build_seconds": round(result.build_seconds, 4),
                   "solve_seconds": round(result.solve_seconds, 4)},
    }


async def observed_positivity(session: AsyncSession, sites: list[CollectionSite], days: int) -> dict:
    since = utc_now() - timedelta(days=days)
    by_ratio: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    people = tubes = 0
    site_ids = [s.id for s in sites]
    for part in chunks(site_ids):
        rows = await session.execute(
            select(Tube.members_count, Tube.status, func.count()).where(
                Tube.site_id.in_(part), Tube.status.in_(("positive", "negative")), Tube.resulted_at >= since)
            .group_by(Tube.members_count, Tube.status))
        for members, status, count in rows.all():
            by_ratio[members][0] += count
            by_ratio[members][1] += count if status == "positive" else 0
            people += members * count
            tubes += count
    p = pooling.prevalence_from_pools({k: (v[0], v[1]) for k, v in by_ratio.items()})
    return {"prevalence": p, "tubes_resulted": tubes, "people_resulted": people,
            "people_per_tube": round(people / tubes, 2) if tubes else None}


async def forecast(session: AsyncSession, principal: Principal, settings: Settings, *, days: int,
                   region: str | None) -> dict:
    await lock_for_writes(session)  # it may write alert states (SQLite: lock before reading)
    result, extra, sites, labs = await build_plan(session, principal, settings, horizon_hours=days * 24, region=region,
                                                  include_planned_collection=True, slot_minutes=60)
    alert_region = region or (principal.regions[0] if principal.regions else None) or \
        (sites[0].region_code if sites else labs[0].region_code if labs else "000000")
    # Collection against throughput, day by day (fluid view of the plan).
    per_day_capacity = [0] * days
    per_day_processed = [0] * days
    for lab in labs:
        for t, n in enumerate(result.processed[lab.id]):
            per_day_processed[min(days - 1, t // 24)] += n
    capacity_by_lab = {}
    offset = int(settings.local_utc_offset_hours * 60)
    for lab in labs:
        caps = lab_slot_capacity(lab.tubes_per_day, parse_hhmm(lab.opens_at), parse_hhmm(lab.closes_at),
                                 start=result.start, slot_minutes=60, slots=days * 24, utc_offset_minutes=offset)
        capacity_by_lab[lab.id] = caps
        for t, n in enumerate(caps):
            per_day_capacity[min(days - 1, t // 24)] += n
    swabs_per_day = 0
    tubes_per_day_collected = 0.0
    open_hours = []
    for site in sites:
        open_minutes = (parse_hhmm(site.closes_at) - parse_hhmm(site.opens_at)) % 1440 or 1440
        swabs_per_day += site.swabs_per_hour * open_minutes / 60
        tubes_per_day_collected += site.swabs_per_hour * open_minutes / 60 / site.default_ratio
        open_hours.append(open_minutes / 60)
    pending = extra["pending_tubes"]
    daily = []
    backlog = pending
    for d in range(days):
        backlog = max(0, backlog + round(tubes_per_day_collected) - per_day_processed[d])
        daily.append({"day": (result.start + timedelta(days=d)).date().isoformat(),
                      "collected_tubes": round(tubes_per_day_collected), "lab_capacity_tubes": per_day_capacity[d],
                      "resulted_tubes": per_day_processed[d], "backlog_end_of_day": backlog})
    lab_capacity_per_day = sum(lab.tubes_per_day for lab in labs)

    observed = await observed_positivity(session, sites, settings.positivity_window_days)
    advice: list[dict] = []
    current_ratio = (swabs_per_day / tubes_per_day_collected) if tubes_per_day_collected else settings.default_pool_ratio
    p = observed["prevalence"]
    needed_now = 0.0
    if p is not None and swabs_per_day:
        current_k = min(pooling.ALLOWED_RATIOS, key=lambda k: abs(k - current_ratio))
        best = pooling.best_ratio(p)
        needed_now = swabs_per_day * pooling.dorfman_tests_per_person(p, current_k)
        needed_best = swabs_per_day * pooling.dorfman_tests_per_person(p, best)
        if best > current_k:
            advice.append({
                "kind": "raise_pool_ratio", "from_ratio": current_k, "to_ratio": best, "prevalence": round(p, 6),
                "tests_per_person": {str(f.ratio): f.tests_per_person for f in pooling.dorfman_table(p)},
                "tubes_per_day_now": round(needed_now), "tubes_per_day_after": round(needed_best),
                "message": f"按观测阳性率 {p:.4%}，把混采比例由 {current_k} 混 1 提高到 {best} 混 1："
                           f"每人期望检测次数 {pooling.dorfman_tests_per_person(p, current_k):.3f} → "
                           f"{pooling.dorfman_tests_per_person(p, best):.3f}，每日需检测 {round(needed_now)} → "
                           f"{round(needed_best)} 管（含阳性混管的单管复核）。",
            })
            needed_after = needed_best
        else:
            needed_after = needed_now
    else:
        needed_after = tubes_per_day_collected
    effective_capacity = min(lab_capacity_per_day, sum(
        min(lab.tubes_per_day, lab.reagent_stock / days) for lab in labs)) if labs else 0
    shortage = math.ceil(max(needed_after, tubes_per_day_collected if p is None else needed_after)
                         - effective_capacity)
    if shortage > 0:
        advice.append({"kind": "cross_region_support", "tubes_per_day": shortage,
                       "message": f"本地检测能力每日约 {round(effective_capacity)} 管，需求约 {round(needed_after)} 管："
                                  f"请求其他地区检测机构每日支援 {shortage} 管（跨区域支援）。"})
    share24 = result.share_within[24]
    if shortage <= 0 and share24 is not None and share24 < settings.alert_share_24h and open_hours:
        mean_open = sum(open_hours) / len(open_hours)
        advice.append({"kind": "spread_sampling", "open_hours_per_day": round(mean_open, 1),
                       "suggested_open_hours_per_day": min(24.0, round(mean_open * 1.5, 1)),
                       "message": f"全天检测能力够用，但采样集中在每天约 {mean_open:.1f} 小时内，"
                                  f"24 小时内出结果的比例只有 {share24:.0%}：请把采样分散到更多时段"
                                  f"（建议每天 {min(24.0, mean_open * 1.5):.1f} 小时）。"})
    routed_to: dict[str, int] = defaultdict(int)
    for (_s, lab_id), n in result.routed.items():
        routed_to[lab_id] += n
    reagent_rows = []
    for lab in labs:
        days_left = _reagent_days(lab, routed_to.get(lab.id, 0), days * 24)
        reagent_rows.append({"lab_id": lab.id, "reagent_stock": lab.reagent_stock, "days_covered": days_left})
        if days_left is not None and days_left < settings.alert_reagent_days:
            advice.append({"kind": "reagent", "lab_id": lab.id, "days_covered": days_left,
                           "message": f"{lab.name} 的检测试剂按计划用量只够 {days_left} 天，请补充。"})

    backlog_end = result.backlog_tubes
    conditions: dict[str, TestingCapacityAlert | None] = {}
    conditions[f"backlog:{alert_region}"] = TestingCapacityAlert(
        region_code=alert_region, kind="backlog", backlog_tubes=backlog_end,
        message=f"预计 {days} 天后仍有 {backlog_end} 管积压未检（阈值 {settings.alert_backlog_tubes}）。",
    ) if backlog_end > settings.alert_backlog_tubes else None
    conditions[f"turnaround:{alert_region}"] = TestingCapacityAlert(
        region_code=alert_region, kind="turnaround", backlog_tubes=backlog_end,
        message=f"预计 24 小时内出结果的比例 {share24:.0%}，低于 {settings.alert_share_24h:.0%}。",
    ) if share24 is not None and share24 < settings.alert_share_24h else None
    for lab, row in zip(labs, reagent_rows, strict=True):
        low = row["days_covered"] is not None and row["days_covered"] < settings.alert_reagent_days
        conditions[f"reagent_low:{lab.id}"] = TestingCapacityAlert(
            region_code=lab.region_code, kind="reagent_low", lab_id=lab.id,
            message=f"{lab.name} 试剂仅够 {row['days_covered']} 天（按计划用量）。",
        ) if low else None
    emitted = await _raise_alerts(session, conditions)
    return {
        "start": result.start.isoformat(), "days": days, "region_code": alert_region,
        "daily": daily, "collection_tubes_per_day": round(tubes_per_day_collected),
        "swabs_per_day": round(swabs_per_day), "lab_capacity_tubes_per_day": lab_capacity_per_day,
        "pending_tubes": pending, "backlog_tubes_at_end": backlog_end,
        "share_resulted_within_12h": result.share_within[12], "share_resulted_within_24h": share24,
        "observed": observed, "reagent": reagent_rows, "advice": advice,
        "alerts_emitted": emitted,
    }


async def _raise_alerts(session: AsyncSession, conditions: dict[str, TestingCapacityAlert | None]) -> list[str]:
    """Emit an alert when its condition turns on; stay quiet while it stays on; re-arm when it clears."""
    await lock_for_writes(session)
    statement = select(CapacityAlertState).where(CapacityAlertState.condition.in_(list(conditions)))
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    states = {s.condition: s for s in await session.scalars(statement)}
    now = utc_now()
    emitted = []
    for condition, alert in conditions.items():
        state = states.get(condition)
        active = alert is not None
        if state is None:
            if not active:
                continue
            state = CapacityAlertState(condition=condition, active=False, changed_at=now)
            session.add(state)
        if active and not state.active:
            outbox.add(session, Envelope.wrap(alert, source=SOURCE, key=alert.region_code))
            emitted.append(condition)
        if state.active != active:
            state.active = active
            state.changed_at = now
            state.detail = alert.message if alert else None
    # A concurrent first insert of the same condition fails the transaction instead of alerting twice.
    await session.flush()
    return emitted
