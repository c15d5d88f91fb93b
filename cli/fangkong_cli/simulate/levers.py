"""What-if levers: ``beds=+50%``, ``labs=-20%``, ``pool-ratio=20``, ``supporting-cities=3``.

A lever changes one capacity of a scenario and nothing else, so a what-if run plays the
same seeded outbreak under that change. Relative values (+50%, -20%) scale the
scenario's own figure; absolute values set it (pool-ratio, supporting-cities).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fangkong_cli.simulate import names

POOL_RATIOS = (1, 5, 10, 20)


@dataclass(frozen=True)
class LeverSpec:
    name: str                 # as typed: beds, pool-ratio
    key: str                  # Options.levers / Options.absolute key: beds, pool_ratio
    zh: str
    en: str
    relative: bool            # +50% / -20% allowed
    absolute: tuple[int, int] | None = None   # allowed whole numbers (inclusive range), None: not allowed
    choices: tuple[int, ...] | None = None    # allowed absolute values when only some are (pool ratios)


SPECS: dict[str, LeverSpec] = {s.name: s for s in (
    LeverSpec("beds", "beds", "定点医院/方舱床位", "hospital & fangcang beds", relative=True),
    LeverSpec("rooms", "rooms", "隔离酒店房间", "quarantine hotel rooms", relative=True),
    LeverSpec("labs", "labs", "实验室日检测能力", "lab throughput", relative=True),
    LeverSpec("doctors", "doctors", "医疗机构每日分类能力", "cases classified per day", relative=True),
    LeverSpec("pool-ratio", "pool_ratio", "校园筛查混采比例（N合1）", "campus pool ratio (N-in-1)", relative=False,
              absolute=(1, 20), choices=POOL_RATIOS),
    LeverSpec("supporting-cities", "supporting_cities", "支援隔离的外市数", "cities taking quarantine overflow",
              relative=True, absolute=(0, len(names.SUPPORTING_CITIES))),
)}

_RELATIVE = re.compile(r"^([+-])(\d{1,4}(?:\.\d{1,2})?)%$")
_ABSOLUTE = re.compile(r"^\d{1,6}$")


class LeverError(ValueError):
    """A what-if that cannot be parsed; ``zh`` and ``en`` say why."""

    def __init__(self, zh: str, en: str) -> None:
        super().__init__(en)
        self.zh, self.en = zh, en

    def text(self, lang: str) -> str:
        return self.en if lang == "en" else self.zh


@dataclass(frozen=True)
class Lever:
    spec: LeverSpec
    factor: float | None = None   # relative: 1.5 for +50%
    value: int | None = None      # absolute

    @property
    def text(self) -> str:
        """Canonical form, e.g. ``beds=+50%``: the run's name."""
        if self.factor is not None:
            pct = (self.factor - 1) * 100
            return f"{self.spec.name}={'+' if pct >= 0 else '-'}{abs(pct):g}%"
        return f"{self.spec.name}={self.value}"

    def label(self, lang: str) -> str:
        what = self.spec.en if lang == "en" else self.spec.zh
        if self.factor is not None:
            pct = (self.factor - 1) * 100
            return f"{what} {'+' if pct >= 0 else '-'}{abs(pct):g}%"
        return f"{what} = {self.value}"


def parse_lever(text: str) -> Lever:
    """``name=value``; LeverError (zh and en) naming what is wrong."""
    name, sep, raw = text.strip().partition("=")
    name, raw = name.strip().lower().replace("_", "-"), raw.strip()
    known = ", ".join(SPECS)
    if not sep or not name or not raw:
        raise LeverError(f"应为 杠杆=取值（如 beds=+50%、pool-ratio=20），而不是 {text!r}",
                         f"expected LEVER=VALUE (e.g. beds=+50%, pool-ratio=20), not {text!r}")
    spec = SPECS.get(name)
    if spec is None:
        raise LeverError(f"未知杠杆 {name!r}，可选：{known}", f"unknown lever {name!r}; choose from {known}")
    relative, absolute = _RELATIVE.match(raw), _ABSOLUTE.match(raw)
    if relative:
        if not spec.relative:
            allowed = "、".join(map(str, spec.choices or ()))
            raise LeverError(f"{name} 只能取绝对值（{allowed}），不能是百分比 {raw!r}",
                             f"{name} takes an absolute value ({', '.join(map(str, spec.choices or ()))}), "
                             f"not a percentage {raw!r}")
        pct = float(relative.group(2)) * (1 if relative.group(1) == "+" else -1)
        # Capacities cannot go to nothing (a city without beds is not a what-if); the cities helping can.
        floor = -100 if spec.absolute is not None else -90
        if pct < floor or pct > 1000:
            raise LeverError(f"{name} 的变化须在 {floor}% 到 +1000% 之间，而不是 {raw}",
                             f"{name} must change by {floor}% to +1000%, not {raw}")
        if pct == 0:
            raise LeverError(f"{name}={raw} 不改变任何东西", f"{name}={raw} changes nothing")
        return Lever(spec, factor=1 + pct / 100)
    if absolute:
        value = int(raw)
        if spec.absolute is None:
            raise LeverError(f"{name} 只能按百分比变化（如 {name}=+50%），而不是 {raw!r}",
                             f"{name} changes by a percentage (e.g. {name}=+50%), not {raw!r}")
        low, high = spec.absolute
        if spec.choices is not None and value not in spec.choices:
            allowed = ", ".join(map(str, spec.choices))
            raise LeverError(f"{name} 只能是 {allowed} 之一，而不是 {value}",
                             f"{name} must be one of {allowed}, not {value}")
        if not low <= value <= high:
            raise LeverError(f"{name} 须在 {low} 到 {high} 之间，而不是 {value}",
                             f"{name} must be between {low} and {high}, not {value}")
        return Lever(spec, value=value)
    example = f"{name}=+50%" if spec.relative else f"{name}={spec.choices[-1] if spec.choices else 1}"
    raise LeverError(f"{name} 的取值 {raw!r} 无法识别：写成 +50%、-20%" + ("或整数" if spec.absolute else "")
                     + f"（如 {example}）",
                     f"cannot read {name}'s value {raw!r}: write +50%, -20%"
                     + (" or a whole number" if spec.absolute else "") + f" (e.g. {example})")


def parse_levers(texts: list[str], *, combined: bool = False) -> list[Lever]:
    levers = [parse_lever(t) for t in texts]
    seen: set[str] = set()
    for lever in levers:
        if lever.text in seen:
            raise LeverError(f"{lever.text} 给了两次", f"{lever.text} is given twice")
        seen.add(lever.text)
    if combined:
        names_ = [lever.spec.name for lever in levers]
        twice = sorted({n for n in names_ if names_.count(n) > 1})
        if twice:
            raise LeverError(f"--combined 要求每个杠杆只出现一次（{', '.join(twice)} 重复）",
                             f"--combined needs each lever once ({', '.join(twice)} repeated)")
        if len(levers) < 2:
            raise LeverError("--combined 至少需要两个 --what-if", "--combined needs at least two --what-if")
    return levers


def apply(levers: list[Lever]) -> tuple[dict[str, float], dict[str, int]]:
    """Options.levers (factors) and Options.absolute (set values) for one run."""
    factors: dict[str, float] = {}
    absolute: dict[str, int] = {}
    for lever in levers:
        if lever.factor is not None:
            factors[lever.spec.key] = lever.factor
        else:
            absolute[lever.spec.key] = lever.value  # type: ignore[assignment]
    return factors, absolute


# Which levers each scenario has (a lever a scenario lacks would make a run identical to the baseline).
APPLICABLE: dict[str, tuple[str, ...]] = {
    "school-outbreak": tuple(SPECS),
    "spring-festival": ("beds", "rooms", "labs", "doctors"),
    "mass-screening": ("beds", "labs", "pool-ratio"),
}


def check_applicable(scenario: str, levers: list[Lever]) -> None:
    allowed = APPLICABLE.get(scenario, ())
    for lever in levers:
        if lever.spec.name not in allowed:
            raise LeverError(f"场景 {scenario} 没有杠杆 {lever.spec.name}（可用：{', '.join(allowed)}）",
                             f"scenario {scenario} has no {lever.spec.name} lever (it has: {', '.join(allowed)})")
