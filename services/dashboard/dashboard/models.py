"""Tables of the dashboard service. The outbox and inbox tables come from fangkong_common.

Read models (filled only by consumers): ``dash_counter`` holds daily changes per
county/city code, metric and dimension; the per-entity tables hold just the state
needed so that a repeated fact (a second person.returned for the same trip, a
second swab on a due day) changes no count. Everything else is what people
file on the dashboard itself: units and their daily reports, rectifications,
webhooks and their deliveries.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Index, Integer, String, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fangkong_common.db import naming_metadata

BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = naming_metadata()


class Counter(Base):
    __tablename__ = "dash_counter"
    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    dimension: Mapped[str] = mapped_column(String(80), primary_key=True, default="")
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (Index("ix_dash_counter_metric_day", "metric", "day", "region_code"),)


class Total(Base):
    """Each counter summed over all its days, kept with the daily rows: a level "to date" is the
    total minus the days after it, so a KPI reads a few rows per county whatever the history length."""
    __tablename__ = "dash_total"
    metric: Mapped[str] = mapped_column(String(40), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    dimension: Mapped[str] = mapped_column(String(80), primary_key=True, default="")
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class Once(Base):
    """Keys of facts counted once (a risk flag per person and area, a dose per person ...)."""
    __tablename__ = "dash_once"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)


class Fact(Base):
    """What happened to a person on a day (swabbed, ordered, admitted for treatment):
    derived states are recomputed from these, so the order events arrive in does not matter."""
    __tablename__ = "dash_fact"
    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True, index=True)  # purge by day


class Returnee(Base):
    __tablename__ = "dash_returnee"
    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    arrival_date: Mapped[date] = mapped_column(Date, primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6))
    category: Mapped[str] = mapped_column(String(40))
    managed_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class Order(Base):
    __tablename__ = "dash_order"
    order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    region_code: Mapped[str] = mapped_column(String(6))
    ordered_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    first_kind: Mapped[str | None] = mapped_column(String(20), nullable=True)
    first_place: Mapped[str | None] = mapped_column(String(30), nullable=True)
    needs_site: Mapped[bool] = mapped_column(Boolean, default=False)
    admitted_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    dim: Mapped[str | None] = mapped_column(String(60), nullable=True)
    released_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class TestDue(Base):
    __test__ = False
    __tablename__ = "dash_test_due"
    order_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    due_date: Mapped[date] = mapped_column(Date, primary_key=True)
    person_key: Mapped[str] = mapped_column(String(64), index=True)
    region_code: Mapped[str] = mapped_column(String(6))
    tested_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class Positive(Base):
    __tablename__ = "dash_positive"
    person_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6))
    positive_on: Mapped[date] = mapped_column(Date)
    admitted_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    classification: Mapped[str | None] = mapped_column(String(20), nullable=True)
    classified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Tube(Base):
    __tablename__ = "dash_tube"
    barcode: Mapped[str] = mapped_column(String(80), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6))
    collected_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    resulted_on: Mapped[date | None] = mapped_column(Date, nullable=True)


class Site(Base):
    __tablename__ = "dash_site"
    site_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    site_kind: Mapped[str] = mapped_column(String(20))
    beds_total: Mapped[int] = mapped_column(Integer)
    beds_free: Mapped[int] = mapped_column(Integer)
    as_of: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VaccinationTarget(Base):
    """People to reach with a first dose, per region and age group, by a deadline (set by the command center)."""
    __tablename__ = "dash_vaccination_target"
    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    age_group: Mapped[str] = mapped_column(String(10), primary_key=True)
    target: Mapped[int] = mapped_column(BigInteger)
    deadline: Mapped[date] = mapped_column(Date)
    set_by: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Change(Base):
    """Counter changes in commit order: what the live feed streams (any replica can serve it)."""
    __tablename__ = "dash_change"
    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    region_code: Mapped[str] = mapped_column(String(6))
    day: Mapped[date] = mapped_column(Date)
    metric: Mapped[str] = mapped_column(String(40))
    dimension: Mapped[str] = mapped_column(String(80))
    delta: Mapped[int] = mapped_column(BigInteger)


class Unit(Base):
    __tablename__ = "dash_unit"
    unit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class UnitReport(Base):
    __tablename__ = "dash_unit_report"
    unit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    zero: Mapped[bool] = mapped_column(Boolean)
    figures: Mapped[str] = mapped_column(Text, default="{}")
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    submitted_by: Mapped[str] = mapped_column(String(200))
    late: Mapped[bool] = mapped_column(Boolean, default=False)


class Rectification(Base):
    __tablename__ = "dash_rectification"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    unit_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    unit_name: Mapped[str] = mapped_column(String(200))
    finding: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(200))
    deadline: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Webhook(Base):
    __tablename__ = "dash_webhook"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[str] = mapped_column(Text)  # JSON list
    secret: Mapped[str] = mapped_column(String(200))
    regions: Mapped[str] = mapped_column(Text)  # JSON list of region codes the owner may see; [] = all
    created_by: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Delivery(Base):
    __tablename__ = "dash_delivery"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(36), index=True)
    event_id: Mapped[str] = mapped_column(String(36))
    event_type: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    __table_args__ = (Index("ix_dash_delivery_due", "status", "next_attempt_at"),
                      Index("uq_dash_delivery_webhook_event", "webhook_id", "event_id", unique=True))


# --- outcome intervals (issue 10: 早发现、早报告、早隔离、早治疗) ------------------------------


class Moment(Base):
    """When something happened to a subject (a person key or a tube's barcode), from an event's
    occurred_at: a positive, a bed, a classification, a contact's order, a registration, a swab,
    a tube collected or resulted. Append-only, so intervals recomputed from them do not depend
    on the order events arrive in."""
    __tablename__ = "dash_moment"
    subject: Mapped[str] = mapped_column(String(80), primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    region_code: Mapped[str | None] = mapped_column(String(6), nullable=True)
    extra: Mapped[str | None] = mapped_column(String(64), nullable=True)  # a returnee's category
    __table_args__ = (Index("ix_dash_moment_kind_at", "kind", "at"),)


class ContactLink(Base):
    """A close contact (degree 1) and the case they met (contact.identified)."""
    __tablename__ = "dash_contact_link"
    case_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    contact_key: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Interval(Base):
    """One measured interval (result → bed of a person, a tube's collection → result ...), recomputed
    from the moments whenever one of its ends arrives; ``end_at`` empty while it is still open."""
    __tablename__ = "dash_interval"
    kind: Mapped[str] = mapped_column(String(30), primary_key=True)
    subject: Mapped[str] = mapped_column(String(160), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6))
    category: Mapped[str] = mapped_column(String(40), default="")
    start_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    end_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    end_day: Mapped[date | None] = mapped_column(Date, nullable=True)
    __table_args__ = (Index("ix_dash_interval_kind_region_end", "kind", "region_code", "end_day"),
                      Index("ix_dash_interval_kind_region_start", "kind", "region_code", "start_at"))
