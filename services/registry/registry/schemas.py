"""Request and response bodies of the registry API."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Generic, Literal, TypeVar

from fangkong_common.clock import UtcDateTime
from fangkong_common.events.schemas import RegionCode, ReturneeCategory, RiskLevel
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

T = TypeVar("T")
IdType = Literal["resident_id", "passport", "hk_macao_permit", "taiwan_permit", "foreign_permanent_resident", "other"]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9][0-9\- ]{5,19}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonIn(Strict):
    id_type: IdType = "resident_id"
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
    name: Name
    phone: Phone | None = None
    region_code: RegionCode
    grid: Annotated[str, StringConstraints(max_length=60)] | None = None
    address: Annotated[str, StringConstraints(max_length=300)] | None = None
    birth_date: date | None = None


class PersonPatch(Strict):
    name: Name | None = None
    phone: Phone | None = None
    region_code: RegionCode | None = None
    grid: Annotated[str, StringConstraints(max_length=60)] | None = None
    address: Annotated[str, StringConstraints(max_length=300)] | None = None
    birth_date: date | None = None
    reason: Annotated[str, StringConstraints(min_length=2, max_length=500)] = Field(
        description="why the record is corrected (kept in the audit trail)")


class RiskFlagOut(BaseModel):
    risk_area_id: str
    region_code: str
    name: str | None
    level: str
    window_start: date
    window_end: date | None
    stay_from: date
    stay_to: date
    travel_record_id: str | None


class PersonOut(BaseModel):
    id: str = Field(description="the person_key: how every service names this person")
    id_type: str
    id_number: str | None
    name: str | None
    phone: str | None
    region_code: str
    grid: str | None
    address: str | None
    birth_date: date | None
    sex: str | None
    category: str | None
    registered_via: str
    masked: bool = Field(description="true when ID number, phone and address are masked for your role")
    is_case: bool = False
    contact_degree: int | None = None
    risk_flags: list[RiskFlagOut] = Field(default_factory=list)
    possible_duplicates: list[str] = Field(default_factory=list, description="ids of records that may be the same person")


class PersonCreated(PersonOut):
    created: bool


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class StayIn(Strict):
    region_code: RegionCode | None = None
    country: CountryCode | None = None
    from_: date = Field(alias="from")
    to: date

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_place(self) -> "StayIn":
        if (self.region_code is None) == (self.country is None):
            raise ValueError("give exactly one of region_code and country")
        if self.to < self.from_:
            raise ValueError("'to' is before 'from'")
        return self


class TransportIn(Strict):
    kind: Literal["flight", "train", "ship", "coach", "car", "other"]
    number: Annotated[str, StringConstraints(max_length=40)] | None = None


class TravelIn(Strict):
    origin_kind: Literal["international", "domestic"]
    origin_country: CountryCode | None = None
    origin_region_code: RegionCode | None = None
    places: list[StayIn] = Field(default_factory=list, max_length=100)
    arrival_date: date
    port_of_entry: RegionCode | None = None
    transport: TransportIn | None = None
    served_quarantine_days: int = Field(default=0, ge=0, le=60)
    served_quarantine_place: Annotated[str, StringConstraints(max_length=200)] | None = None

    @model_validator(mode="after")
    def _origin(self) -> "TravelIn":
        if self.origin_kind == "international" and not self.origin_country:
            raise ValueError("origin_country is required for an international origin")
        if self.origin_kind == "domestic" and not self.origin_region_code:
            raise ValueError("origin_region_code is required for a domestic origin")
        for stay in self.places:
            if stay.from_ > self.arrival_date:
                raise ValueError("a stay starts after the arrival date")
        return self


class TravelOut(BaseModel):
    id: str
    person_id: str
    category: ReturneeCategory
    created: bool
    risk_flags: list[RiskFlagOut] = Field(default_factory=list)


class RiskAreaIn(Strict):
    region_code: RegionCode
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    level: RiskLevel
    effective_from: date
    effective_to: date | None = None
    lookback_days: int = Field(default=14, ge=0, le=60,
                               description="stays this many days before effective_from count too")

    @model_validator(mode="after")
    def _window(self) -> "RiskAreaIn":
        if self.effective_to is not None and self.effective_to < self.effective_from:
            raise ValueError("effective_to is before effective_from")
        # The look-back window is computed from effective_from: 0001-01-01 overflowed into a 500.
        for day in (self.effective_from, self.effective_to):
            if day is not None and not 2000 <= day.year <= 2100:
                raise ValueError(f"风险区日期须在2000至2100年之间 (dates of a risk area lie in 2000-2100, got {day})")
        return self


class RiskAreaOut(BaseModel):
    id: str
    region_code: str
    name: str | None
    level: str
    effective_from: date
    effective_to: date | None
    lookback_days: int
    active: bool
    flagged_count: int
    declared_at: UtcDateTime | None = None
    lifted_at: UtcDateTime | None = None


class CheckpointIn(Strict):
    name: Name
    region_code: RegionCode
    kind: Literal["road", "station", "airport", "port", "community", "venue", "other"] = "community"


class CheckpointOut(BaseModel):
    id: str
    name: str
    region_code: str
    kind: str


class PassIn(Strict):
    id_type: IdType = "resident_id"
    id_number: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)] | None = None
    person_id: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = Field(
        default=None, description="the person_key (what a health-code scan yields)")
    name: Name | None = None
    temperature_c: float = Field(ge=30, le=45)
    passed_at: AwareDatetime
    pass_id: Annotated[str, StringConstraints(max_length=80)] | None = Field(
        default=None, description="the client's id of this pass: a retried batch is stored once")

    @model_validator(mode="after")
    def _who(self) -> "PassIn":
        if (self.id_number is None) == (self.person_id is None):
            raise ValueError("give exactly one of id_number and person_id")
        return self


class PassesIn(Strict):
    passes: list[PassIn] = Field(min_length=1, max_length=5000)


class PassesOut(BaseModel):
    accepted: int
    duplicates: int
    fevers: int
    registered: int = Field(description="unknown people given a minimal registration")


class ContactIn(Strict):
    person: PersonIn | None = Field(default=None, description="the contact, registered if new")
    person_id: str | None = Field(default=None, description="or an already registered person")
    source_person_id: str = Field(description="whom they met: the case, or a contact for a secondary contact")
    exposure_at: AwareDatetime
    setting: Literal["household", "school", "workplace", "transport", "healthcare", "gathering", "community", "other"]
    reported_by: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None

    @model_validator(mode="after")
    def _who(self) -> "ContactIn":
        if (self.person is None) == (self.person_id is None):
            raise ValueError("give exactly one of person and person_id")
        return self


class ContactBatchIn(Strict):
    contacts: list[ContactIn] = Field(min_length=1, max_length=1000,
                                      description="applied in order, all or nothing: a later item may name "
                                                  "an earlier one as its source (次密接 of a 密接 in this batch)")


class ContactOut(BaseModel):
    id: str
    person_id: str
    source_person_id: str
    case_person_id: str
    degree: int
    exposure_at: UtcDateTime
    setting: str
    created: bool


class ContactBatchOut(BaseModel):
    contacts: list[ContactOut]
    created: int


class ContactNode(BaseModel):
    person_id: str
    name: str | None
    degree: int
    exposure_at: UtcDateTime
    setting: str
    contacts: list["ContactNode"] = Field(default_factory=list)


class ContactGraph(BaseModel):
    person_id: str
    is_case: bool
    exposed_to: list[ContactOut] = Field(description="whom this person met (why they are a contact)")
    contacts: list[ContactNode] = Field(description="whom they exposed, walked down the chain")


class VaccinationIn(Strict):
    person_id: str
    vaccine: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    dose_number: int = Field(ge=1, le=5)
    vaccinated_on: date


class VaccinationOut(BaseModel):
    person_id: str
    age_group: str
    vaccine: str
    dose_number: int
    vaccinated_on: date
    created: bool


AgeGroup = Literal["12-14", "15-17", "18+"]


class VaccinationTargetIn(Strict):
    region_code: RegionCode
    age_group: AgeGroup
    target_people: int = Field(ge=1, le=2_000_000_000)
    deadline: date


class AgeGroupProgress(BaseModel):
    age_group: str
    target_people: int | None
    deadline: date | None
    first_dose: int
    full_course: int
    ratio: float | None = Field(description="full course / target")
    days_left: int | None
    on_track: bool | None


class VaccinationProgress(BaseModel):
    region_code: str
    as_of: date
    groups: list[AgeGroupProgress]


class GatheringIn(Strict):
    kind: Literal["wedding", "funeral", "banquet", "meeting", "training", "performance", "sports", "other"]
    organiser: Name
    organiser_phone: Phone | None = None
    place: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    region_code: RegionCode
    held_on: date
    expected_attendees: int = Field(ge=1, le=10_000_000)


class GatheringDecision(Strict):
    approve: bool
    note: Annotated[str, StringConstraints(max_length=1000)] | None = None


class GatheringOut(BaseModel):
    id: str
    kind: str
    organiser: str
    place: str
    region_code: str
    held_on: date
    expected_attendees: int
    status: str
    decided_by: str | None
    decision_note: str | None


class ImportRowError(BaseModel):
    row: int
    column: str | None
    reason: str


class ImportReport(BaseModel):
    rows: int
    stored: int
    unchanged: int
    rejected: int
    errors: list[ImportRowError]


class AuditEntryOut(BaseModel):
    at: UtcDateTime
    actor: str
    role: str
    action: str
    subject: str
    fields: str
    reason: str | None
    path: str | None


class DuplicateOut(BaseModel):
    id: int
    person_key: str = Field(serialization_alias="person_id")
    other_person_key: str = Field(serialization_alias="other_person_id")
    evidence: str
    status: str


class DuplicateReview(Strict):
    status: Literal["same_person", "different"]
