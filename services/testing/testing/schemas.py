"""Request and response models of the testing API (pydantic v2)."""

from __future__ import annotations

from datetime import date
from typing import Literal

from fangkong_common.clock import UtcDateTime
from fangkong_common.events.schemas import RegionCode
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from testing.domain.plan import parse_hhmm


class _Hours(BaseModel):
    opens_at: str = Field(default="00:00", pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$",
                          description="local time, HH:MM")
    closes_at: str = Field(default="24:00", pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$",
                           description="local time, HH:MM; before opens_at means past midnight")

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _valid_time(cls, value: str) -> str:
        parse_hhmm(value)
        return value


class SiteIn(_Hours):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    region_code: RegionCode
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    swabs_per_hour: int = Field(ge=0, le=100_000)
    opens_at: str = Field(default="08:00", pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$")
    closes_at: str = Field(default="20:00", pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$")
    default_ratio: Literal[1, 5, 10, 20] = Field(default=10, description="pool ratio this site mostly uses")
    travel_minutes: dict[str, float] = Field(default_factory=dict,
                                             description="lab id → measured road minutes (overrides coordinates)")


class LabIn(_Hours):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    region_code: RegionCode
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)
    tubes_per_day: int = Field(ge=0, le=10_000_000)
    turnaround_hours: float = Field(default=24, gt=0, le=168, description="target: 6 fever clinic, 12, 24 screening")
    reagent_stock: int = Field(ge=0, le=2_000_000_000, description="tests' worth of reagent (检测试剂)")
    run_hours: float = Field(default=0, ge=0, le=48, description="from a tube entering the machine to its result")
    travel_minutes: dict[str, float] = Field(default_factory=dict,
                                             description="site id → measured road minutes (overrides coordinates)")


class LabPatch(BaseModel):
    """What a lab reports as it changes: reagent received or used, machines added, hours."""

    model_config = ConfigDict(extra="forbid")

    reagent_stock: int | None = Field(default=None, ge=0, le=2_000_000_000)
    tubes_per_day: int | None = Field(default=None, ge=0, le=10_000_000)
    turnaround_hours: float | None = Field(default=None, gt=0, le=168)
    opens_at: str | None = Field(default=None, pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$")
    closes_at: str | None = Field(default=None, pattern=r"^([01][0-9]|2[0-4]):[0-5][0-9]$")

    @field_validator("opens_at", "closes_at")
    @classmethod
    def _valid_time(cls, value: str | None) -> str | None:
        # The pattern lets 24:14 through; as in SiteIn/LabIn a 422, not a 500 from the planner.
        if value is not None:
            parse_hhmm(value)
        return value


class SiteOut(BaseModel):
    id: str
    name: str
    region_code: str
    latitude: float
    longitude: float
    swabs_per_hour: int
    opens_at: str
    closes_at: str
    default_ratio: int


class LabOut(BaseModel):
    id: str
    name: str
    region_code: str
    latitude: float
    longitude: float
    tubes_per_day: int
    opens_at: str
    closes_at: str
    turnaround_hours: float
    reagent_stock: int
    run_hours: float


class Created(BaseModel):
    id: str


class TubeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    barcode: str = Field(min_length=1, max_length=64)
    # Checked by the pooling rules (1/5/10/20) so the error names the field with the rule.
    ratio: int
    members: list[str] = Field(max_length=100, description="ID numbers as collected, or person keys")
    id_type: str = Field(default="resident_id", max_length=40, description="of the ID numbers among members")
    site_id: str = Field(min_length=1, max_length=36)
    collected_at: AwareDatetime
    round: str | None = Field(default=None, max_length=60,
                              description="screening round; pools default to the local date, singles to their own")


class TubesIn(BaseModel):
    tubes: list[TubeIn] = Field(min_length=1)


class TubesOut(BaseModel):
    accepted: int
    unchanged: int
    barcodes: list[str]


class ResultIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    barcode: str = Field(min_length=1, max_length=64)
    result: Literal["positive", "negative", "invalid"]
    ct_value: float | None = Field(default=None, ge=0, le=50)
    lab_id: str = Field(min_length=1, max_length=36)
    tested_at: AwareDatetime


class ResultsIn(BaseModel):
    results: list[ResultIn] = Field(min_length=1)


class ResultsOut(BaseModel):
    applied: int
    unchanged: int
    retest_orders: int
    reswab_orders: int
    events: int


class OrderOut(BaseModel):
    id: str
    person_key: str
    region_code: str
    reason: str
    status: str
    source_barcode: str | None
    quarantine_order_id: str | None
    stage_index: int | None
    due_date: date | None
    fulfilled_barcode: str | None
    created_at: UtcDateTime
