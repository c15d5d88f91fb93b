"""Tables of the registry service. The outbox, inbox and PII audit tables come from fangkong_common.

The registry is the only service that keeps ID numbers; every other service
knows people by ``person_key``.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common.db import naming_metadata

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = naming_metadata()


class Person(Base):
    __tablename__ = "persons"

    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    id_type: Mapped[str] = mapped_column(String(30))
    id_number: Mapped[str] = mapped_column(String(40))
    name: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(30))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    grid: Mapped[str | None] = mapped_column(String(60))
    address: Mapped[str | None] = mapped_column(String(300))
    birth_date: Mapped[date | None] = mapped_column(Date)
    sex: Mapped[str | None] = mapped_column(String(10))
    category: Mapped[str | None] = mapped_column(String(40), index=True)  # latest returnee category
    registered_via: Mapped[str] = mapped_column(String(20), default="api")  # api, import, checkpoint, contact
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Set when retention erased the personal data of a closed record (registry.service.retention).
    pii_erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("ix_persons_region_grid", "region_code", "grid"),
        Index("ix_persons_dedupe", "name", "birth_date", "phone"),
    )


class PersonChange(Base):
    """Corrections (PATCH), audited: who changed what, from what, why."""

    __tablename__ = "person_changes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    changes: Mapped[dict] = mapped_column(JSON)  # field -> [old, new]
    reason: Mapped[str | None] = mapped_column(Text)


class PossibleDuplicate(Base):
    __tablename__ = "possible_duplicates"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    other_person_key: Mapped[str] = mapped_column(String(64))
    evidence: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="open")  # open, same_person, different
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (UniqueConstraint("person_key", "other_person_key"),)


class TravelRecord(Base):
    __tablename__ = "travel_records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    origin_kind: Mapped[str] = mapped_column(String(20))
    origin_country: Mapped[str | None] = mapped_column(String(2))
    origin_region_code: Mapped[str | None] = mapped_column(String(6))
    arrival_date: Mapped[date] = mapped_column(Date)
    port_of_entry: Mapped[str | None] = mapped_column(String(6))
    transport_kind: Mapped[str | None] = mapped_column(String(30))
    transport_number: Mapped[str | None] = mapped_column(String(40))
    served_quarantine_days: Mapped[int] = mapped_column(Integer, default=0)
    served_quarantine_place: Mapped[str | None] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40))
    # The same returnee reported twice (an import run again, a retry) is one record.
    natural_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TravelStay(Base):
    """One place of a travel record (dates inclusive). Risk-area matching runs on this table."""

    __tablename__ = "travel_stays"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    travel_record_id: Mapped[str] = mapped_column(String(36), ForeignKey("travel_records.id"), index=True)
    person_key: Mapped[str] = mapped_column(String(64))
    region_code: Mapped[str | None] = mapped_column(String(6))
    country: Mapped[str | None] = mapped_column(String(2))
    date_from: Mapped[date] = mapped_column(Date)
    date_to: Mapped[date] = mapped_column(Date)

    # The declaration query is a range scan on region code, then a date filter.
    __table_args__ = (Index("ix_travel_stays_region_dates", "region_code", "date_to", "date_from"),)


class RiskArea(Base):
    __tablename__ = "risk_areas"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(10))
    effective_from: Mapped[date] = mapped_column(Date)
    effective_to: Mapped[date | None] = mapped_column(Date)
    lookback_days: Mapped[int] = mapped_column(Integer, default=14)
    declared_by: Mapped[str] = mapped_column(String(200))
    declared_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    lifted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    flagged_count: Mapped[int] = mapped_column(Integer, default=0)


class RiskFlag(Base):
    __tablename__ = "risk_flags"

    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    risk_area_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    travel_record_id: Mapped[str | None] = mapped_column(String(36))
    stay_from: Mapped[date] = mapped_column(Date)
    stay_to: Mapped[date] = mapped_column(Date)
    flagged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Checkpoint(Base):
    __tablename__ = "checkpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    kind: Mapped[str] = mapped_column(String(30))  # road, station, airport, community, ...
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CheckpointPass(Base):
    __tablename__ = "checkpoint_passes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[str] = mapped_column(String(36), index=True)
    person_key: Mapped[str | None] = mapped_column(String(64), index=True)
    temperature_c: Mapped[float] = mapped_column(Float)
    passed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    fever: Mapped[bool] = mapped_column(Boolean, default=False)
    # A client retrying a batch sends the same pass ids: stored once.
    client_pass_id: Mapped[str | None] = mapped_column(String(80), unique=True)


class Case(Base):
    """People the registry learned are positive (test.positive), and their classification."""

    __tablename__ = "cases"

    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    positive_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    barcode: Mapped[str | None] = mapped_column(String(60))
    classification: Mapped[str | None] = mapped_column(String(20))
    classified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ContactLink(Base):
    """One exposure: ``person_key`` met ``source_person_key``; the degree follows from the source."""

    __tablename__ = "contact_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    source_person_key: Mapped[str] = mapped_column(String(64), index=True)
    case_person_key: Mapped[str] = mapped_column(String(64), index=True)
    degree: Mapped[int] = mapped_column(Integer)
    exposure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    setting: Mapped[str] = mapped_column(String(40))
    reported_by: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (UniqueConstraint("person_key", "source_person_key"),)


class Vaccination(Base):
    __tablename__ = "vaccinations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    age_group: Mapped[str] = mapped_column(String(10))
    vaccine: Mapped[str] = mapped_column(String(100))
    dose_number: Mapped[int] = mapped_column(Integer)
    vaccinated_on: Mapped[date] = mapped_column(Date)

    __table_args__ = (UniqueConstraint("person_key", "dose_number"),)


class VaccinationTarget(Base):
    __tablename__ = "vaccination_targets"

    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    age_group: Mapped[str] = mapped_column(String(10), primary_key=True)
    target_people: Mapped[int] = mapped_column(Integer)
    deadline: Mapped[date] = mapped_column(Date)


class Gathering(Base):
    __tablename__ = "gatherings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    organiser: Mapped[str] = mapped_column(String(100))
    organiser_phone: Mapped[str | None] = mapped_column(String(30))
    place: Mapped[str] = mapped_column(String(300))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    held_on: Mapped[date] = mapped_column(Date)
    expected_attendees: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="filed")  # filed, approved, refused
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decision_note: Mapped[str | None] = mapped_column(Text)
    filed_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
