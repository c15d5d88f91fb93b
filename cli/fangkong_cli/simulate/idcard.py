"""Synthetic resident ID numbers (GB 11643-1999) for simulated people.

The rule itself (6-digit region, 8-digit birth date, 3-digit sequence, ISO 7064
MOD 11-2 check character) is fangkong_common.identity's, shared with the
registry that validates the numbers. Numbers here are a pure function of an
index, so a seeded run names the same people every time, and distinct indexes
give distinct numbers (up to 1,000 people per county and birth date).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from fangkong_common.identity import make_resident_id
from fangkong_common.identity import resident_id_check_character as check_character


def resident_id(region: str, born: date, sequence: int) -> str:
    if len(region) != 6 or not region.isdigit():
        raise ValueError(f"region must be 6 digits, got {region!r}")
    if not 0 <= sequence < 1000:
        raise ValueError(f"sequence must be 0..999, got {sequence}")
    return make_resident_id(region, born, sequence)


def is_valid(number: str) -> bool:
    """Length, digits, a real birth date and the check character (the region is not checked here)."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    return number[17] == check_character(number[:17])


class IdFactory:
    """Person ``i`` of a population spread over ``regions`` and birth years ``oldest``..``youngest``.

    Index → (region, birth date, sequence) is a bijection on 0..capacity-1: consecutive
    people live in different counties and are born on different days.
    """

    def __init__(self, regions: Sequence[str], *, first_birth: date, days: int, salt: int = 0) -> None:
        if not regions:
            raise ValueError("at least one region")
        self.regions = list(regions)
        self.first_birth = first_birth
        self.days = days
        self.salt = salt % 1000

    @property
    def capacity(self) -> int:
        return len(self.regions) * self.days * 1000

    def __call__(self, index: int) -> str:
        if not 0 <= index < self.capacity:
            raise ValueError(f"person index {index} out of range (capacity {self.capacity})")
        region = self.regions[index % len(self.regions)]
        rest = index // len(self.regions)
        born = self.first_birth + timedelta(days=rest % self.days)
        sequence = (rest // self.days + self.salt) % 1000
        return resident_id(region, born, sequence)
