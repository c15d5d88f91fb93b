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

# China has one time zone and no daylight saving; a "day" of the platform is a day in Beijing time.
CHINA_TZ = timezone(timedelta(hours=8), "CST")

_offset = timedelta(0)


def now() -> datetime:
    """The current moment, aware, in UTC."""
    return datetime.now(UTC) + _offset


def today() -> date:
    """Today in Beijing time."""
    return now().astimezone(CHINA_TZ).date()


def offset() -> timedelta:
    return _offset


def set_offset(value: timedelta) -> None:
    global _offset
    _offset = value


def move_to(moment: datetime) -> None:
    """Put the clock at ``moment`` (aware); it runs on from there."""
    if moment.tzinfo is None:
        raise ValueError("the clock needs an aware datetime (with a UTC offset)")
    set_offset(moment - datetime.now(UTC))
