"""Request and response bodies of the quarantine API (pydantic v2)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fangkong_common.auth import region_prefix
from fangkong_common.clock import UtcDateTime
from fangkong_common.events.schemas import CaseClass, PersonKey, RegionCode
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class StageOut(BaseModel):
    kind: str
    place: str
    start_date: date
    end_date: date
    test_days: list[date]
    first_day: int = 1
    days: int = 0


class OrderOut(BaseModel):
    id: str
    person_key: str
    region_code: str
    grid: str | None
    cause: str
    category: str
    status: str
    policy_id: str
    policy_version: int
    stages: list[StageOut]
    current_stage: int | None
    current: StageOut | None = None
    release_date: date
    site_id: str | None
    site_region_code: str | None
    awaiting_site: bool
    created_at: UtcDateTime | None = None
    ended_at: UtcDateTime | None = None
    changes: list[dict[str, Any]] | None = None


class OrderPage(BaseModel):
    items: list[OrderOut]
    total: int
    limit: int
    offset: int


class SiteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["hotel", "fangcang", "hospital", "port"]
    region_code: RegionCode
    capacity: int = Field(ge=0, le=1_000_000, description="rooms (hotel, port) or beds (方舱, hospital)")
    supporting_regions: list[RegionCode] = Field(default_factory=list,
                                                 description="cities this site takes people from (跨市支援)")

    @field_validator("supporting_regions")
    @classmethod
    def _codes(cls, codes: list[str]) -> list[str]:
        for code in codes:
            region_prefix(code)
        return list(dict.fromkeys(codes))


class SiteOut(BaseModel):
    id: str
    name: str
    kind: str
    region_code: str
    capacity: int
    occupancy: int
    free: int
    supporting_regions: list[str]
    capacity_low: bool


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_key: PersonKey
    order_id: str | None = None
    region_code: RegionCode | None = Field(default=None, description="needed when no order is given")
    from_place: str = Field(min_length=1, max_length=200)
    to_place: str = Field(min_length=1, max_length=200)
    from_site_id: str | None = None
    to_site_id: str | None = None
    vehicle: str = Field(min_length=1, max_length=100, description="车牌号")
    escort: str = Field(min_length=1, max_length=200, description="随车人员")


class TransferPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["dispatched", "arrived", "cancelled"]
    at: AwareDatetime | None = None
    vehicle: str | None = Field(default=None, min_length=1, max_length=100)
    escort: str | None = Field(default=None, min_length=1, max_length=200)


class TransferOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    person_key: str
    order_id: str | None
    region_code: str
    from_place: str
    to_place: str
    from_site_id: str | None
    to_site_id: str | None
    vehicle: str
    escort: str
    status: str
    requested_at: UtcDateTime
    dispatched_at: UtcDateTime | None
    arrived_at: UtcDateTime | None


class CheckinIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature_c: float = Field(ge=34.0, le=43.0)
    symptoms: list[str] = Field(default_factory=list, max_length=20)
    at: AwareDatetime | None = None


class CheckinOut(BaseModel):
    id: int
    order_id: str
    at: UtcDateTime
    temperature_c: float
    symptoms: list[str]
    alerts: list[str]
    test_due: bool


class ClassificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    classification: CaseClass
    severity: Literal["mild", "moderate", "severe", "critical"] | None = Field(
        default=None, description="轻型、普通型、重型、危重型")


class CaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    person_key: str
    origin_region_code: str
    treating_region_code: str | None
    site_id: str | None
    site_kind: str | None
    status: str
    positive_at: UtcDateTime
    admitted_at: UtcDateTime | None
    classification: str | None
    severity: str | None
    classified_at: UtcDateTime | None


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: str | None
    person_key: str
    region_code: str
    site_id: str | None
    kind: str
    on_date: date
    detail: str


class PolicyOut(BaseModel):
    policy_id: str
    version: int
    effective_from: date
    title: str
    basis: str
    source: Literal["package", "api"]
    categories: dict[str, Any]
    applied_at: UtcDateTime | None = None
    replanned_orders: int | None = None


class DailyRunOut(BaseModel):
    day: date
    policies_applied: int
    orders_replanned: int
    stages_moved: int
    placed: int
    released: int
    tests_due: int
    missed_checkins: int
    cases_admitted: int
