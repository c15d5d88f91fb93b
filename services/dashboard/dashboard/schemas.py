"""Request and response bodies (pydantic v2)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from fangkong_common.events import topics

RegionCode = Field(pattern=r"^[0-9]{6}$", description="GB/T 2260 code")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UnitIn(Strict):
    unit_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    name: str = Field(min_length=1, max_length=200)
    region_code: str = RegionCode
    kind: Literal["street", "village", "community", "company", "school", "site", "other"] = "street"


class UnitReportIn(Strict):
    unit_id: str = Field(min_length=1, max_length=64)
    date: date
    zero: bool = Field(description="true: an explicit zero report (零报告), nothing to report today")
    figures: dict[str, int] = Field(default_factory=dict, description="counts only, e.g. {'fever': 2}")
    note: str | None = Field(default=None, max_length=2000)

    @field_validator("figures")
    @classmethod
    def _counts(cls, figures: dict[str, int]) -> dict[str, int]:
        for name, value in figures.items():
            if not name or len(name) > 60:
                raise ValueError("figure names are 1-60 characters")
            if value < 0:
                raise ValueError(f"figure {name} must not be negative")
        return figures

    @model_validator(mode="after")
    def _zero_means_zero(self) -> "UnitReportIn":
        if self.zero and any(self.figures.values()):
            raise ValueError("a zero report carries no non-zero figure")
        if not self.zero and not any(self.figures.values()):
            raise ValueError("a daily report with nothing to report is a zero report: set zero=true")
        return self


Status = Literal["open", "in_progress", "done"]


class RectificationIn(Strict):
    region_code: str = RegionCode
    unit_id: str | None = Field(default=None, max_length=64)
    unit_name: str | None = Field(default=None, max_length=200)
    finding: str = Field(min_length=1, max_length=4000)
    owner: str = Field(min_length=1, max_length=200)
    deadline: date
    status: Status = "open"
    note: str | None = Field(default=None, max_length=4000)


class RectificationPatch(Strict):
    status: Status | None = None
    owner: str | None = Field(default=None, min_length=1, max_length=200)
    deadline: date | None = None
    note: str | None = Field(default=None, max_length=4000)
    finding: str | None = Field(default=None, min_length=1, max_length=4000)


class WebhookIn(Strict):
    url: HttpUrl
    event_types: list[str] = Field(min_length=1)
    secret: str = Field(min_length=16, max_length=200, description="shared secret for X-Fangkong-Signature")

    @field_validator("event_types")
    @classmethod
    def _known(cls, event_types: list[str]) -> list[str]:
        unknown = sorted(set(event_types) - set(topics.ALL_TOPICS))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {list(topics.ALL_TOPICS)}")
        return sorted(set(event_types))


class LoginIn(Strict):
    role: Literal["commander", "viewer"] = "commander"
    region_code: str = RegionCode


class VaccinationTargetIn(Strict):
    region_code: str = RegionCode
    age_group: Literal["3-11", "12-14", "15-17", "18+"]
    target: int = Field(ge=0, le=2_000_000_000, description="people to reach with a first dose")
    deadline: date
