"""Resident identity card numbers (GB 11643-1999): 6-digit region, 8-digit birth
date, 3-digit sequence (odd for men), ISO 7064 MOD 11-2 check character."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from fangkong_common import clock
from fangkong_common.identity import make_resident_id
from fangkong_common.identity import resident_id_check_character as check_character

__all__ = ["IdNumberError", "ResidentId", "check_character", "make_resident_id", "parse_resident_id"]


class IdNumberError(ValueError):
    """What is wrong with an ID number; ``part`` names the part (length, region, birth_date, check_digit...)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(message)
        self.part = part


@dataclass(frozen=True)
class ResidentId:
    number: str
    region_code: str
    birth_date: date
    sex: str  # "male" | "female"


def parse_resident_id(number: str, *, today: date | None = None) -> ResidentId:
    """Validate fully and decode; raises IdNumberError saying which part is wrong."""
    if len(number) == 15 and number.isascii() and number.isdigit():
        # First-generation cards (before 1999) had 15 digits; all of them expired by 2013.
        raise IdNumberError("length", "15位旧身份证号码已停用，请填写18位号码 (a 15-digit first-generation "
                                      "number: give the 18-digit number of the current card)")
    if len(number) != 18:
        raise IdNumberError("length", f"居民身份证号码应为18位，实际{len(number)}位 (a resident ID has 18 characters, got {len(number)})")
    body, last = number[:17], number[17]
    if not body.isascii() or not body.isdigit():
        raise IdNumberError("characters", "前17位必须是数字 (the first 17 characters must be digits)")
    if not (last.isascii() and (last.isdigit() or last == "X")):
        raise IdNumberError("characters", "第18位必须是数字或X (the last character must be a digit or X)")
    region = body[:6]
    if region[:2] not in PROVINCE_CODES:
        raise IdNumberError("region", f"地区码{region}不是有效的省级代码 (region {region}: no such province)")
    try:
        born = date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise IdNumberError("birth_date", f"出生日期{body[6:14]}不存在 (birth date {body[6:14]} does not exist)") from None
    # The platform's day (Beijing, and the simulation clock), not the server's local date: at 00:30
    # in Beijing a UTC server still has yesterday, and refused a baby born today.
    today = today or clock.today()
    if born > today or born.year < 1870:
        raise IdNumberError("birth_date", f"出生日期{born.isoformat()}不合理 (birth date {born.isoformat()} is out of range)")
    expected = check_character(body)
    if last != expected:
        raise IdNumberError("check_digit", f"校验码应为{expected}，实际为{last} (check character should be {expected}, got {last})")
    return ResidentId(number=number, region_code=region, birth_date=born,
                      sex="male" if int(body[16]) % 2 else "female")


# GB/T 2260 province-level codes (including Taiwan 71, Hong Kong 81, Macao 82).
PROVINCE_CODES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65",
    "71", "81", "82",
})
