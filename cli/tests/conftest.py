"""Fixtures for the fangkong command tests."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner


@pytest.fixture(autouse=True)
def _clean_fangkong_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FANGKONG_* variable (secrets, data dir, per-service database URLs) leaks in from the shell."""
    for name in list(os.environ):
        if name.startswith("FANGKONG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("COLUMNS", "200")  # keep error panels on one line each


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()
