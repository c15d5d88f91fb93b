"""The four services, by name: their settings, apps and migrations."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from fangkong_common.settings import CommonSettings

SERVICE_NAMES = ("registry", "quarantine", "testing", "dashboard")


@dataclass(frozen=True)
class ServiceEntry:
    name: str

    def _module(self, suffix: str):
        return importlib.import_module(f"{self.name}.{suffix}")

    def settings(self, **overrides) -> CommonSettings:
        return self._module("config").Settings(**overrides)

    def create_app(self, settings: CommonSettings) -> FastAPI:
        return self._module("main").create_app(settings)

    @property
    def migrations(self) -> Path:
        return self._module("main").MIGRATIONS


SERVICES = {name: ServiceEntry(name) for name in SERVICE_NAMES}
