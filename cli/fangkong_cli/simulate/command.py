"""The typer command; the helper building the simulator replaces this body."""

from __future__ import annotations

import typer


def simulate_command() -> None:
    """Play an outbreak through the public HTTP APIs (not built yet)."""
    raise typer.Exit(code=2)
