"""Planning: facts + policy + dates -> stages with calendar dates and test dates.

Pure functions over Asia/Shanghai calendar days (the caller converts instants
with ``local_date``). A stage runs from ``start_date`` to ``end_date``
inclusive; the order is released on ``release_date`` = the day after the last
stage ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from quarantine.domain.policy import CategoryRule, Policy, StageRule

SHANGHAI = ZoneInfo("Asia/Shanghai")
DAY = timedelta(days=1)


def local_date(instant: datetime) -> date:
    """The Asia/Shanghai calendar day of an aware instant."""
    return instant.astimezone(SHANGHAI).date()


@dataclass(frozen=True)
class Facts:
    category: str
    order_date: date
    """The day the order opens: nothing is planned before it."""
    arrival_date: date | None = None
    exposure_date: date | None = None
    """Last exposure (contacts) or last day in the risk area (risk flags)."""
    served_days: int = 0
    """Days of quarantine already served elsewhere (credited where the policy says so)."""

    def day_one(self, rule: CategoryRule) -> date:
        if rule.count_from == "arrival" and self.arrival_date is not None:
            return self.arrival_date
        if rule.count_from == "exposure" and self.exposure_date is not None:
            return self.exposure_date + DAY  # "自最后一次暴露后N天": the exposure day is day 0
        return self.order_date


@dataclass(frozen=True)
class Stage:
    kind: str
    place: str
    start_date: date
    end_date: date
    test_days: tuple[date, ...] = ()
    first_day: int = 1
    """The policy's day number of start_date within the stage (> 1 when days were credited or elapsed,
    0 when a contact is isolated on the day of exposure, day 0)."""
    days: int = 0
    """The stage's full length in the policy."""

    def covers(self, day: date) -> bool:
        return self.start_date <= day <= self.end_date


@dataclass(frozen=True)
class Plan:
    stages: tuple[Stage, ...]
    credited_days: int = 0

    @property
    def release_date(self) -> date | None:
        return self.stages[-1].end_date + DAY if self.stages else None


def _lay_out(rules: Sequence[StageRule], cursor: date, order_date: date, credit: int,
             entry_test: bool) -> tuple[list[Stage], int]:
    """Stages for ``rules`` from ``cursor``; returns them and the credit used."""
    out: list[Stage] = []
    used = 0
    started_late = False
    for rule in rules:
        skip = 0
        if rule.credit_served and credit > 0:
            skip = min(credit, rule.days)
            credit -= skip
            used += skip
        remaining = rule.days - skip
        if remaining <= 0:
            started_late = True  # served in full elsewhere
            continue
        start, end = cursor, cursor + (remaining - 1) * DAY
        cursor = end + DAY
        # policy day n of this stage falls on start + (n - skip - 1)
        tests = {start + (n - skip - 1) * DAY for n in rule.test_days if n > skip}
        if skip:
            started_late = True
        if end < order_date:
            started_late = True  # elapsed before the order opened
            continue
        first_day = skip + 1
        if start < order_date:
            first_day += (order_date - start).days
            start = order_date
            started_late = True
        tests = {t for t in tests if t >= start}
        if entry_test and not out and started_late:
            tests.add(start)  # the test on taking over someone part-way through
        out.append(Stage(rule.kind, rule.place, start, end, tuple(sorted(tests)), first_day, rule.days))
    return out, used


def plan(policy: Policy, facts: Facts) -> Plan:
    """The stages ``policy`` prescribes for ``facts`` (empty: nothing to do)."""
    rule = policy.rule_for(facts.category)
    if rule is None or not rule.stages:
        return Plan(())
    day_one = facts.day_one(rule)
    stages, used = _lay_out(rule.stages, day_one, facts.order_date, facts.served_days, rule.entry_test)
    if rule.count_from == "exposure" and stages and stages[0].start_date > facts.order_date:
        # found on the day of exposure (day 0): isolated at once, the period still counts from day 1
        lead = (stages[0].start_date - facts.order_date).days
        first = stages[0]
        stages[0] = replace(first, start_date=facts.order_date, first_day=first.first_day - lead)
    return Plan(tuple(stages), used)


def stage_index_on(stages: Sequence[Stage], day: date) -> int | None:
    """Index of the stage running on ``day``; 0 before the first; None after the last."""
    if not stages:
        return None
    if day < stages[0].start_date:
        return 0
    for i, stage in enumerate(stages):
        if day <= stage.end_date:
            # a gap between stages cannot happen (they are contiguous), so this is the one
            return i
    return None


def replan(stages: Sequence[Stage], policy: Policy, facts: Facts, today: date) -> tuple[Stage, ...] | None:
    """The stages under ``policy`` from the current stage on, keeping what has been served.

    Completed stages stay as they were. The current stage is matched in the new
    rule by kind and place (then by kind); the days served in it so far count,
    so it ends earlier or later, and the new rule's following stages come after.
    Returns None when the new policy has no rule to apply (the order goes on as planned).
    """
    rule = policy.rule_for(facts.category)
    if rule is None or not rule.stages:
        return None
    if not stages or today <= stages[0].start_date:
        # not started yet: plan afresh from the facts, as a new order would be
        return plan(policy, replace(facts, order_date=max(facts.order_date, today))).stages
    index = stage_index_on(stages, today)
    if index is None:
        return None  # all served; release is due
    current = stages[index]
    j = next((k for k, r in enumerate(rule.stages) if (r.kind, r.place) == (current.kind, current.place)), None)
    if j is None:
        j = next((k for k, r in enumerate(rule.stages) if r.kind == current.kind), None)
    if j is None:
        return None
    new_rule = rule.stages[j]
    kept = list(stages[:index])
    served = current.first_day - 1 + (today - current.start_date).days  # policy days done before today
    remaining = new_rule.days - served
    past_tests = tuple(t for t in current.test_days if t < today)
    if remaining > 0:
        end = today + (remaining - 1) * DAY
        future = {current.start_date + (n - current.first_day) * DAY for n in new_rule.test_days}
        tests = tuple(sorted(set(past_tests) | {t for t in future if today <= t <= end}))
        kept.append(Stage(current.kind, current.place, current.start_date, end, tests, current.first_day,
                          new_rule.days))
    elif today > current.start_date:
        # already served the new, shorter duration: the stage ended yesterday
        kept.append(replace(current, end_date=today - DAY, test_days=past_tests, days=new_rule.days))
    following, _ = _lay_out(rule.stages[j + 1:], kept[-1].end_date + DAY if kept else today, today, 0, False)
    return tuple(kept + following)


def cut_at(stages: Sequence[Stage], day: date) -> tuple[Stage, ...]:
    """The stages as served when the order ends on ``day`` (a positive test): the
    current stage ends that day, later stages and later tests are dropped."""
    out: list[Stage] = []
    for stage in stages:
        if stage.start_date > day:
            break
        if stage.end_date >= day:
            out.append(replace(stage, end_date=day, test_days=tuple(t for t in stage.test_days if t <= day)))
            break
        out.append(stage)
    return tuple(out)
