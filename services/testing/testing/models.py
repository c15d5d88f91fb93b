"""Tables of the testing service. The outbox and inbox tables come from fangkong_common.

No raw ID number is ever stored: tube members and orders carry person keys only.
"""

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, Float, Index, Integer, String, Text, false, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common.db import naming_metadata


class Base(DeclarativeBase):
    metadata = naming_metadata()


class CollectionSite(Base):
    __tablename__ = "collection_sites"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    swabs_per_hour: Mapped[int] = mapped_column(Integer)
    opens_at: Mapped[str] = mapped_column(String(5))
    closes_at: Mapped[str] = mapped_column(String(5))
    default_ratio: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Lab(Base):
    __tablename__ = "labs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    tubes_per_day: Mapped[int] = mapped_column(Integer)
    opens_at: Mapped[str] = mapped_column(String(5))
    closes_at: Mapped[str] = mapped_column(String(5))
    turnaround_hours: Mapped[float] = mapped_column(Float)
    reagent_stock: Mapped[int] = mapped_column(Integer)
    run_hours: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TravelTime(Base):
    """A measured site → lab road time, which overrides the estimate from coordinates."""

    __tablename__ = "travel_times"

    site_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    lab_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    minutes: Mapped[float] = mapped_column(Float)


class Tube(Base):
    __tablename__ = "tubes"

    barcode: Mapped[str] = mapped_column(String(64), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(36), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    ratio: Mapped[int] = mapped_column(Integer)
    members_count: Mapped[int] = mapped_column(Integer)
    round_id: Mapped[str] = mapped_column(String(80))
    collected_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[str] = mapped_column(String(16), default="collected")  # collected|positive|negative|invalid
    lab_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    resulted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ct_value: Mapped[float | None] = mapped_column(Float, nullable=True)

    __table_args__ = (Index("ix_tubes_status_site", "status", "site_id"),)


class TubeMember(Base):
    __tablename__ = "tube_members"

    barcode: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    round_id: Mapped[str] = mapped_column(String(80))
    # An invalid tube frees its members to be swabbed again in the same round.
    void: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    __table_args__ = (
        Index("uq_tube_members_round_person", "round_id", "person_key", unique=True,
              postgresql_where=text("void = false"), sqlite_where=text("void = 0")),
        Index("ix_tube_members_person_key", "person_key"),
    )


class TestOrder(Base):
    __test__ = False
    __tablename__ = "test_orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    reason: Mapped[str] = mapped_column(String(20))  # quarantine|retest|reswab
    status: Mapped[str] = mapped_column(String(16))  # pending|collected
    source_barcode: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    quarantine_order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    stage_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    fulfilled_barcode: Mapped[str | None] = mapped_column(String(64), nullable=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CapacityAlertState(Base):
    """Which alert conditions are on, so a condition alerts once when it starts, not at every call."""

    __tablename__ = "capacity_alert_states"

    condition: Mapped[str] = mapped_column(String(200), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
