"""Health check-ins: what raises an alert."""

from __future__ import annotations

from collections.abc import Sequence

FEVER_C = 37.3  # 发热: ≥37.3℃
CHECKIN_KINDS = ("centralized", "home")  # stages whose people report twice a day


def alert_kinds(temperature_c: float, symptoms: Sequence[str]) -> list[str]:
    """Why this check-in needs a test now: a fever, or reported symptoms."""
    kinds = []
    if temperature_c >= FEVER_C:
        kinds.append("fever")
    if any(s.strip() for s in symptoms):
        kinds.append("symptoms")
    return kinds


def missed(count: int, per_day: int) -> bool:
    return count < per_day
