"""Masking of personal data for roles that may not see it in full."""

from __future__ import annotations


def mask_id_number(id_number: str | None) -> str | None:
    """Keep the region (first 6) and the last 4: ``110105********002X`` for a resident ID."""
    if not id_number:
        return id_number
    if len(id_number) <= 8:
        return id_number[:2] + "*" * (len(id_number) - 2)
    head = 6 if len(id_number) >= 15 else 2
    return id_number[:head] + "*" * (len(id_number) - head - 4) + id_number[-4:]


def mask_phone(phone: str | None) -> str | None:
    """``138****5678``."""
    if not phone:
        return phone
    if len(phone) < 7:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_name(name: str | None) -> str | None:
    """``张*`` / ``欧阳**``: the family name stays, for a grid worker calling out."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)
