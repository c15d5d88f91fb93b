"""Tables of the quarantine service. The outbox and inbox tables come from fangkong_common.

People are known by person_key only (the registry keeps the mapping to ID
numbers): no name, ID number or phone is stored here.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common.db import naming_metadata

ACTIVE = "active"


class Base(DeclarativeBase):
    metadata = naming_metadata()


class PolicyVersion(Base):
    """Versions published through the API (the packaged YAML files are read from the package)."""

    __tablename__ = "policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    policy_id: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(Integer)
    effective_from: Mapped[date] = mapped_column(Date)
    title: Mapped[str] = mapped_column(String(300), default="")
    document: Mapped[dict] = mapped_column(JSON)
    published_by: Mapped[str] = mapped_column(String(200))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # set once active orders were re-planned under it (at publication, or on its effective date)
    applied_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    replanned_orders: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("uq_policies_policy_id_version", "policy_id", "version", unique=True),)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(80))
    region_code: Mapped[str] = mapped_column(String(6))
    grid: Mapped[str | None] = mapped_column(String(100), nullable=True)
    cause: Mapped[str] = mapped_column(String(120))
    category: Mapped[str] = mapped_column(String(60))
    status: Mapped[str] = mapped_column(String(20), default=ACTIVE)
    policy_id: Mapped[str] = mapped_column(String(100))
    policy_version: Mapped[int] = mapped_column(Integer)
    facts: Mapped[dict] = mapped_column(JSON)
    stages: Mapped[list] = mapped_column(JSON)
    current_stage: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stage_end_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    release_date: Mapped[date] = mapped_column(Date)
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    site_region_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    awaiting_site: Mapped[bool] = mapped_column(Boolean, default=False)
    source_event_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        # one active order per person and cause: the consumers' idempotency backstop
        Index("uq_orders_active_cause", "person_key", "cause", unique=True,
              postgresql_where=text("status = 'active'"), sqlite_where=text("status = 'active'")),
        Index("ix_orders_person_key", "person_key"),
        Index("ix_orders_status_release", "status", "release_date"),
        Index("ix_orders_status_stage_end", "status", "stage_end_date"),
        Index("ix_orders_site_id", "site_id"),
        Index("ix_orders_region_code", "region_code"),
    )


class OrderChange(Base):
    """What happened to an order and why: planned, re-planned under a new version, stage moves, release."""

    __tablename__ = "order_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(36), ForeignKey("orders.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    kind: Mapped[str] = mapped_column(String(40))
    detail: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_order_changes_order_id", "order_id"),)


class ScheduledTest(Base):
    """A test an order needs on a day; emitted_at remembers the quarantine.test_due sent for it."""

    __tablename__ = "scheduled_tests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(36), ForeignKey("orders.id"))
    person_key: Mapped[str] = mapped_column(String(80))
    region_code: Mapped[str] = mapped_column(String(6))
    due_date: Mapped[date] = mapped_column(Date)
    stage_index: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(40), default="plan")
    emitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("uq_scheduled_tests_order_day_reason", "order_id", "due_date", "reason", unique=True),
        Index("ix_scheduled_tests_due", "due_date", postgresql_where=text("emitted_at IS NULL"),
              sqlite_where=text("emitted_at IS NULL")),
    )


class Site(Base):
    __tablename__ = "sites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    region_code: Mapped[str] = mapped_column(String(6))
    capacity: Mapped[int] = mapped_column(Integer)
    occupancy: Mapped[int] = mapped_column(Integer, default=0)
    supporting_regions: Mapped[list] = mapped_column(JSON, default=list)
    # set when site.capacity_low was sent, cleared when 10 % are free again: one alert per crossing
    low_alerted: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_sites_kind_region", "kind", "region_code"),)


class Placement(Base):
    """A room or bed taken; released_at set when freed."""

    __tablename__ = "placements"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[str] = mapped_column(String(64), ForeignKey("sites.id"))
    person_key: Mapped[str] = mapped_column(String(80))
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    purpose: Mapped[str] = mapped_column(String(20))  # quarantine | treatment
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("ix_placements_site_open", "site_id", postgresql_where=text("released_at IS NULL"),
              sqlite_where=text("released_at IS NULL")),
        Index("ix_placements_person_key", "person_key"),
    )


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(80))
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    region_code: Mapped[str] = mapped_column(String(6))
    from_place: Mapped[str] = mapped_column(String(200))
    to_place: Mapped[str] = mapped_column(String(200))
    from_site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    to_site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    vehicle: Mapped[str] = mapped_column(String(100))
    escort: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="requested")
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    dispatched_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    arrived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    requested_by: Mapped[str] = mapped_column(String(200))
    # Set when retention erased the addresses and escort of a closed transfer (service.retention).
    pii_erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (Index("ix_transfers_person_key", "person_key"), Index("ix_transfers_status", "status"))


class Checkin(Base):
    __tablename__ = "checkins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str] = mapped_column(String(36), ForeignKey("orders.id"))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    local_date: Mapped[date] = mapped_column(Date)
    temperature_c: Mapped[float] = mapped_column(Float)
    symptoms: Mapped[list] = mapped_column(JSON, default=list)
    recorded_by: Mapped[str] = mapped_column(String(200))

    __table_args__ = (Index("ix_checkins_order_day", "order_id", "local_date"),)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    person_key: Mapped[str] = mapped_column(String(80))
    region_code: Mapped[str] = mapped_column(String(6))
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(40))  # fever, symptoms, missed_checkin, no_bed
    on_date: Mapped[date] = mapped_column(Date)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("uq_alerts_person_kind_day", "person_key", "kind", "on_date", "order_id", unique=True),)


class Case(Base):
    """A positive: admitted to a bed at once, then classified by the medical institution."""

    __tablename__ = "cases"

    person_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    origin_region_code: Mapped[str] = mapped_column(String(6))
    treating_region_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    site_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    site_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    status: Mapped[str] = mapped_column(String(20))  # admitted | awaiting_bed
    barcode: Mapped[str] = mapped_column(String(100))
    positive_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    admitted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    classification: Mapped[str | None] = mapped_column(String(20), nullable=True)
    severity: Mapped[str | None] = mapped_column(String(40), nullable=True)
    classified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    classified_by: Mapped[str | None] = mapped_column(String(200), nullable=True)

    __table_args__ = (Index("ix_cases_classification", "classification"),
                      Index("ix_cases_origin", "origin_region_code"))


class TestResult(Base):
    __test__ = False
    __tablename__ = "test_results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    person_key: Mapped[str] = mapped_column(String(80))
    order_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    barcode: Mapped[str] = mapped_column(String(100))
    result: Mapped[str] = mapped_column(String(20))
    resulted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("uq_test_results_person_barcode", "person_key", "barcode", unique=True),)
