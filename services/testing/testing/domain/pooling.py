"""Pooling rules (混采) and the Dorfman arithmetic behind the choice of pool size.

A tube holds 1 (单采) or 5, 10, 20 swabs (混采); the dilution limit caps a pool
at 20. A positive pool costs one more test per member (each is re-swabbed
alone), so with prevalence p and pool size k the expected tests per person are
1/k + 1 − (1−p)^k (Dorfman 1943).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ALLOWED_RATIOS: tuple[int, ...] = (1, 5, 10, 20)
MAX_RATIO = 20


@dataclass(frozen=True)
class RuleViolation:
    field: str  # the tube field at fault
    reason: str
    type: str = "value_error"


def check_tube(ratio: int, members: Sequence[str]) -> list[RuleViolation]:
    """What is wrong with one tube on its own (ratio and members)."""
    problems: list[RuleViolation] = []
    if ratio not in ALLOWED_RATIOS:
        problems.append(RuleViolation("ratio", f"混采比例只能是 1、5、10 或 20，收到 {ratio}"))
        return problems
    if not members:
        problems.append(RuleViolation("members", "试管至少要有一个受检者"))
    elif len(members) > ratio:
        problems.append(RuleViolation("members", f"{ratio} 混 1 的试管最多 {ratio} 人，收到 {len(members)} 人"))
    if len(set(members)) != len(members):
        problems.append(RuleViolation("members", "同一试管内有重复的受检者"))
    return problems


def duplicates_across(tubes: Iterable[tuple[str, Iterable[str]]]) -> dict[str, list[str]]:
    """person → barcodes, for every person found in more than one of ``tubes`` (one round)."""
    seen: dict[str, list[str]] = {}
    for barcode, members in tubes:
        for member in set(members):
            seen.setdefault(member, []).append(barcode)
    return {person: barcodes for person, barcodes in seen.items() if len(barcodes) > 1}


def dorfman_tests_per_person(p: float, k: int) -> float:
    """Expected tests per person with pools of ``k`` at prevalence ``p``.

    A single tube (k = 1) is one test: nothing to retest.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"prevalence must be within [0, 1], got {p}")
    if k < 1:
        raise ValueError(f"pool size must be at least 1, got {k}")
    if k == 1:
        return 1.0
    return 1.0 / k + 1.0 - (1.0 - p) ** k


def theoretical_best_k(p: float) -> int:
    """About 1/√p, capped at the dilution limit (20)."""
    if p <= 0:
        return MAX_RATIO
    return max(1, min(MAX_RATIO, round(1.0 / math.sqrt(p))))


def best_ratio(p: float, allowed: Sequence[int] = ALLOWED_RATIOS) -> int:
    """The allowed ratio with the fewest expected tests per person (ties: the smaller pool)."""
    return min(allowed, key=lambda k: (dorfman_tests_per_person(p, k), k))


@dataclass(frozen=True)
class RatioFigure:
    ratio: int
    tests_per_person: float
    tests_per_1000: float


def dorfman_table(p: float, allowed: Sequence[int] = ALLOWED_RATIOS) -> list[RatioFigure]:
    return [RatioFigure(k, round(dorfman_tests_per_person(p, k), 4), round(1000 * dorfman_tests_per_person(p, k), 1))
            for k in allowed]


def prevalence_from_pools(pools_by_ratio: dict[int, tuple[int, int]]) -> float | None:
    """Per-person prevalence estimated from results: ratio → (tubes resulted, tubes positive).

    A pool of k is negative with probability (1−p)^k, so each ratio gives
    p = 1 − (1 − positive share)^(1/k); the estimates are weighted by people tested.
    """
    weighted = 0.0
    people = 0
    for ratio, (resulted, positive) in pools_by_ratio.items():
        if resulted <= 0:
            continue
        share = min(positive / resulted, 1.0)
        estimate = 1.0 - (1.0 - share) ** (1.0 / ratio)
        weighted += estimate * resulted * ratio
        people += resulted * ratio
    if people == 0:
        return None
    return weighted / people
