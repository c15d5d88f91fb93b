"""Versioned payload models for every event in DESIGN.md's table.

Adding an optional field is a compatible change within a version; removing,
renaming or changing the meaning of a field is a new version (a new class with
``event_version = 2``), registered beside the old one so both stay readable.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from fangkong_common.events import topics
from fangkong_common.events.envelope import EventPayload
from fangkong_common.identity import PERSON_KEY_PATTERN

RegionCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
"""GB/T 2260 administrative division code: 2 digits province, 2 city, 2 county."""
PersonKey = Annotated[str, StringConstraints(pattern=PERSON_KEY_PATTERN)]


class ReturneeCategory(StrEnum):
    inbound_international = "inbound_international"
    """境外返回: straight from abroad."""
    inbound_port_completed_elsewhere = "inbound_port_completed_elsewhere"
    """From abroad, port quarantine finished in another province: top up to the full 21+7."""
    domestic_key_region = "domestic_key_region"
    """From a key border province or a province with a current medium/high risk area."""
    domestic_other = "domestic_other"
    """Any other out-of-province returnee."""
    local = "local"
    """Travel that stayed within the province: nothing to plan."""


class RiskLevel(StrEnum):
    medium = "medium"
    high = "high"


class StageKind(StrEnum):
    centralized = "centralized"
    home = "home"
    monitoring = "monitoring"
    hospital = "hospital"


class StagePlace(StrEnum):
    port = "port"
    municipal_site = "municipal_site"
    home = "home"
    designated_hospital = "designated_hospital"


class SiteKind(StrEnum):
    hotel = "hotel"
    fangcang = "fangcang"
    hospital = "hospital"
    port = "port"


class CaseClass(StrEnum):
    confirmed = "confirmed"
    asymptomatic = "asymptomatic"


PoolRatio = Literal[1, 5, 10, 20]


# --- registry -------------------------------------------------------------


class PersonReturned(EventPayload):
    event_type = topics.PERSON_RETURNED

    person_key: PersonKey
    region_code: RegionCode = Field(description="where the person lives now")
    grid: str | None = None
    category: ReturneeCategory
    origin_kind: Literal["international", "domestic"]
    origin_country: str | None = Field(default=None, description="ISO 3166 alpha-2, for international")
    origin_region_code: RegionCode | None = Field(default=None, description="for domestic")
    arrival_date: date
    port_of_entry: RegionCode | None = None
    served_quarantine_days: int = Field(default=0, ge=0, description="port quarantine already served elsewhere")
    served_quarantine_place: str | None = None
    travel_record_id: str | None = None


class PersonRiskFlagged(EventPayload):
    event_type = topics.PERSON_RISK_FLAGGED

    person_key: PersonKey
    region_code: RegionCode
    grid: str | None = None
    risk_area_id: str
    risk_area_region_code: RegionCode
    level: RiskLevel
    window_start: AwareDatetime
    window_end: AwareDatetime
    travel_record_id: str | None = None


class ContactIdentified(EventPayload):
    event_type = topics.CONTACT_IDENTIFIED

    person_key: PersonKey
    region_code: RegionCode
    grid: str | None = None
    degree: int = Field(ge=1, le=5, description="1 = close contact (密接), 2 = secondary (次密接), deeper if a policy asks")
    source_person_key: PersonKey = Field(description="who they met: the case (degree 1) or a contact (degree 2+)")
    case_person_key: PersonKey | None = Field(default=None, description="the case at the root of the chain")
    last_exposure_at: AwareDatetime
    setting: str | None = Field(default=None, description="household, workplace, school, transport ...")


class CheckpointFever(EventPayload):
    event_type = topics.CHECKPOINT_FEVER

    checkpoint_id: str
    region_code: RegionCode
    person_key: PersonKey | None = None
    temperature_c: float = Field(ge=30, le=45)
    observed_at: AwareDatetime


class VaccinationRecorded(EventPayload):
    """Not in DESIGN.md's first table: the dashboard counts doses against targets by age group."""

    event_type = topics.VACCINATION_RECORDED

    person_key: PersonKey
    region_code: RegionCode
    age_group: Literal["3-11", "12-14", "15-17", "18+"]
    vaccine: str
    dose_number: int = Field(ge=1, le=5)
    vaccinated_on: date


class GatheringFiled(EventPayload):
    """A filed gathering (备案) and its decision; the dashboard counts filings."""

    event_type = topics.GATHERING_FILED

    gathering_id: str
    region_code: RegionCode
    kind: str = Field(description="wedding, funeral, banquet, meeting ...")
    expected_attendees: int = Field(ge=1)
    held_on: date
    status: Literal["filed", "approved", "refused"]


# --- quarantine -----------------------------------------------------------


class PlannedStage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: StageKind
    place: StagePlace
    start_date: date
    end_date: date
    test_days: list[date] = Field(default_factory=list, description="dates of the nucleic tests in this stage")


class QuarantineOrdered(EventPayload):
    event_type = topics.QUARANTINE_ORDERED

    order_id: uuid.UUID
    person_key: PersonKey
    region_code: RegionCode
    reason: str = Field(description="returnee category, contact degree or positive")
    policy_id: str
    policy_version: int = Field(ge=1)
    stages: list[PlannedStage] = Field(min_length=1)


class QuarantineTestDue(EventPayload):
    event_type = topics.QUARANTINE_TEST_DUE

    order_id: uuid.UUID
    person_key: PersonKey
    region_code: RegionCode
    due_date: date
    stage_index: int = Field(ge=0)


class QuarantineReleased(EventPayload):
    event_type = topics.QUARANTINE_RELEASED

    order_id: uuid.UUID
    person_key: PersonKey
    region_code: RegionCode
    released_at: AwareDatetime
    outcome: Literal["completed", "transferred_to_hospital", "cancelled"] = "completed"


class QuarantineAdmitted(EventPayload):
    event_type = topics.QUARANTINE_ADMITTED

    person_key: PersonKey
    region_code: RegionCode = Field(description="where the site is")
    origin_region_code: RegionCode = Field(description="the region the person counts for")
    order_id: uuid.UUID | None = None
    site_id: str
    site_kind: SiteKind
    bed_id: str | None = None
    admitted_at: AwareDatetime


class CaseClassified(EventPayload):
    event_type = topics.CASE_CLASSIFIED

    person_key: PersonKey
    origin_region_code: RegionCode = Field(description="cases count for the city they came from")
    treating_region_code: RegionCode
    classification: CaseClass
    severity: str | None = None
    classified_at: AwareDatetime
    site_id: str | None = None


class SiteCapacityLow(EventPayload):
    event_type = topics.SITE_CAPACITY_LOW

    site_id: str
    region_code: RegionCode
    site_kind: SiteKind
    beds_total: int = Field(ge=0)
    beds_free: int = Field(ge=0)
    threshold: float = Field(ge=0, le=1, description="free share that triggered the alert")


# --- testing --------------------------------------------------------------


class TestCollected(EventPayload):
    __test__ = False  # not a pytest test class, despite the name
    event_type = topics.TEST_COLLECTED

    barcode: str
    site_id: str
    region_code: RegionCode
    ratio: PoolRatio = Field(description="1 = single tube (单采), 5/10/20-in-1 pools (混采)")
    member_keys: list[PersonKey] = Field(min_length=1, max_length=20)
    collected_at: AwareDatetime


class TestPoolPositive(EventPayload):
    __test__ = False  # not a pytest test class, despite the name
    event_type = topics.TEST_POOL_POSITIVE

    barcode: str
    lab_id: str
    region_code: RegionCode
    member_keys: list[PersonKey] = Field(min_length=2, max_length=20)
    collected_at: AwareDatetime | None = None
    resulted_at: AwareDatetime


class TestPositive(EventPayload):
    __test__ = False  # not a pytest test class, despite the name
    event_type = topics.TEST_POSITIVE

    person_key: PersonKey
    barcode: str
    lab_id: str
    region_code: RegionCode = Field(description="where the swab was taken")
    origin_region_code: RegionCode | None = None
    collected_at: AwareDatetime | None = None
    resulted_at: AwareDatetime
    ct_value: float | None = Field(default=None, ge=0, le=50)


class TestNegative(EventPayload):
    __test__ = False  # not a pytest test class, despite the name
    event_type = topics.TEST_NEGATIVE

    barcode: str
    lab_id: str
    region_code: RegionCode
    member_keys: list[PersonKey] = Field(min_length=1, max_length=20)
    collected_at: AwareDatetime | None = None
    resulted_at: AwareDatetime


class TestingCapacityAlert(EventPayload):
    __test__ = False  # not a pytest test class, despite the name
    event_type = topics.TESTING_CAPACITY_ALERT

    region_code: RegionCode
    kind: Literal["backlog", "reagent_low", "turnaround"]
    lab_id: str | None = None
    backlog_tubes: int = Field(default=0, ge=0)
    forecast_clear_at: datetime | None = None
    message: str


PAYLOAD_MODELS: dict[tuple[str, int], type[EventPayload]] = {
    (model.event_type, model.event_version): model
    for model in (
        PersonReturned,
        PersonRiskFlagged,
        ContactIdentified,
        CheckpointFever,
        VaccinationRecorded,
        GatheringFiled,
        QuarantineOrdered,
        QuarantineTestDue,
        QuarantineReleased,
        QuarantineAdmitted,
        CaseClassified,
        SiteCapacityLow,
        TestCollected,
        TestPoolPositive,
        TestPositive,
        TestNegative,
        TestingCapacityAlert,
    )
}


class UnknownEventError(LookupError):
    pass


def payload_model(event_type: str, version: int) -> type[EventPayload]:
    try:
        return PAYLOAD_MODELS[(event_type, version)]
    except KeyError:
        raise UnknownEventError(f"no payload model for {event_type} v{version}") from None
