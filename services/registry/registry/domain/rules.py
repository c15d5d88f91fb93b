"""The registry's rules from the speeches, as pure functions (no IO)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from fangkong_common.auth import region_prefix
from fangkong_common.events.schemas import ReturneeCategory

# 37.3 °C: the fever line at every checkpoint (卡点测温).
FEVER_THRESHOLD_C = 37.3
# "聚集性活动…控制在100人以下并报备": a needed gathering stays at or under 100 and is filed.
GATHERING_LIMIT = 100
GATHERING_RULE = "聚集性活动参加人数不得超过100人，且须向指挥部报备 (gatherings: at most 100 people, filed with the command center)"

# Land-border provinces (陆地边境省份): Inner Mongolia, Liaoning, Jilin,
# Heilongjiang, Guangxi, Yunnan, Tibet, Gansu, Xinjiang.
BORDER_PROVINCES = frozenset({"15", "21", "22", "23", "45", "53", "54", "62", "65"})


def province(region_code: str) -> str:
    return region_code[:2]


@dataclass(frozen=True)
class Stay:
    region_code: str | None
    country: str | None
    date_from: date
    date_to: date


@dataclass(frozen=True)
class TravelFacts:
    home_region_code: str
    origin_kind: str  # "international" | "domestic"
    origin_region_code: str | None
    port_of_entry: str | None
    served_quarantine_days: int
    stays: tuple[Stay, ...]


def classify_returnee(
    facts: TravelFacts,
    *,
    risk_provinces: Collection[str] = frozenset(),
    border_provinces: Collection[str] = BORDER_PROVINCES,
) -> ReturneeCategory:
    """Which of the policy's categories a returnee falls in.

    ``risk_provinces``: provinces (2-digit prefixes) that have a current
    medium/high risk area on the arrival date.
    """
    home = province(facts.home_region_code)
    if facts.origin_kind == "international":
        port_elsewhere = facts.port_of_entry is not None and province(facts.port_of_entry) != home
        if facts.served_quarantine_days > 0 and port_elsewhere:
            return ReturneeCategory.inbound_port_completed_elsewhere
        return ReturneeCategory.inbound_international
    visited = {province(s.region_code) for s in facts.stays if s.region_code}
    if facts.origin_region_code:
        visited.add(province(facts.origin_region_code))
    outside = visited - {home}
    if not outside:
        return ReturneeCategory.local
    if outside & (set(border_provinces) | set(risk_provinces)):
        return ReturneeCategory.domestic_key_region
    return ReturneeCategory.domestic_other


def risk_window(effective_from: date, effective_to: date | None, lookback_days: int) -> tuple[date, date | None]:
    """Stays that count: from ``lookback_days`` before the area was declared until it is lifted.

    Someone who left the area in the days before it was declared may carry the
    virus: the speeches' "及时锁定重点对象" means finding them too.
    """
    return effective_from - timedelta(days=lookback_days), effective_to


def area_covers(area_code: str, stay_code: str) -> bool:
    """A stay recorded at any level overlaps an area when one region contains the other
    (a stay in 440300 Shenzhen overlaps a risk area in 440305 Nanshan, and vice versa)."""
    return region_contains(area_code, stay_code) or region_contains(stay_code, area_code)


def region_contains(outer: str, inner: str) -> bool:
    return inner.startswith(region_prefix(outer))


def enclosing_codes(code: str) -> list[str]:
    """The province and city codes above ``code`` (those a coarser stay record may carry)."""
    return sorted({code[:2] + "0000", code[:4] + "00"} - {code})


def age_on(birth_date: date, day: date) -> int:
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def vaccination_age_group(birth_date: date, day: date) -> str:
    age = age_on(birth_date, day)
    if age >= 18:
        return "18+"
    if age >= 15:
        return "15-17"
    if age >= 12:
        return "12-14"
    return "3-11"


def contact_degree(source_degree: int | None, source_is_case: bool) -> int | None:
    """密接 = 1 for someone who met a case; a contact of a degree-n contact is n+1.
    None when the source is neither a case nor a known contact."""
    if source_is_case:
        return 1
    if source_degree is None:
        return None
    return source_degree + 1


def is_fever(temperature_c: float) -> bool:
    return temperature_c >= FEVER_THRESHOLD_C


def stays_overlap(stays: Iterable[Stay], area_code: str, window_start: date, window_end: date | None) -> Stay | None:
    """The first stay that touches the area within the window (used for a single new travel record)."""
    for stay in stays:
        if stay.region_code is None or not area_covers(area_code, stay.region_code):
            continue
        if stay.date_to >= window_start and (window_end is None or stay.date_from <= window_end):
            return stay
    return None
