"""The platform's clock: every service's "now" comes from here.

A simulated outbreak of two weeks plays in minutes by moving this clock (an
offset from the wall clock, per process), so the events it causes carry the
simulated times and the intervals the dashboard computes from them are the
simulated ones. Time keeps flowing from wherever the clock was put. Token
expiry, the outbox's bookkeeping and database defaults stay on the wall clock:
they are about the machine, not the outbreak. Production turns control off
(``FANGKONG_CLOCK_CONTROL``), so there the clock is the wall clock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated

from pydantic import AfterValidator

# China has one time zone and no daylight saving; a "day" of the platform is a day in Beijing time.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

_offset = timedelta(0)
# A stopped clock: every "now" is this moment until the clock is moved again. A simulator
# that wants exact intervals stops it at each step's time (the events of a step then all
# carry that time, and the interval between two steps is exactly what it played).
_frozen: datetime | None = None


def now() -> datetime:
    """The current moment, aware, in UTC."""
    if _frozen is not None:
        return _frozen
    return datetime.now(UTC) + _offset


def today() -> date:
    """Today in Beijing time."""
    return now().astimezone(CHINA_TZ).date()


def offset() -> timedelta:
    return (_frozen - datetime.now(UTC)) if _frozen is not None else _offset


def frozen() -> bool:
    return _frozen is not None


def set_offset(value: timedelta) -> None:
    """Run the clock ``value`` away from the wall clock (0: real time)."""
    global _offset, _frozen
    _offset, _frozen = value, None


def move_to(moment: datetime, *, freeze: bool = False) -> None:
    """Put the clock at ``moment`` (aware); it runs on from there, or stays there with ``freeze``."""
    global _frozen
    if moment.tzinfo is None:
        raise ValueError("the clock needs an aware datetime (with a UTC offset)")
    set_offset(moment - datetime.now(UTC))
    if freeze:
        _frozen = moment.astimezone(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` aware, in UTC; a naive one (SQLite hands stored moments back naive) is UTC already."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# A moment in an answer: always with its offset (RFC 3339), whichever database it was read from.
UtcDateTime = Annotated[datetime, AfterValidator(as_utc)]
