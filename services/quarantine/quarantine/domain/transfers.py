"""Closed-loop transfers (点对点闭环): requested -> dispatched -> arrived."""

from __future__ import annotations

TRANSFER_STATES = ("requested", "dispatched", "arrived", "cancelled")
_NEXT: dict[str, frozenset[str]] = {
    "requested": frozenset({"dispatched", "cancelled"}),
    "dispatched": frozenset({"arrived"}),
    "arrived": frozenset(),
    "cancelled": frozenset(),
}


def can_advance(current: str, target: str) -> bool:
    return target in _NEXT.get(current, frozenset())


def allowed_next(current: str) -> list[str]:
    return sorted(_NEXT.get(current, frozenset()))
