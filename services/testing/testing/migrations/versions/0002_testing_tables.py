"""sites, labs, travel times, tubes and members, orders, alert states

Revision ID: testing_0002
Revises: testing_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "testing_0002"
down_revision = "testing_0001"
branch_labels = None
depends_on = None


def _place_columns() -> list[sa.Column]:
    return [
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "collection_sites",
        *_place_columns(),
        sa.Column("swabs_per_hour", sa.Integer(), nullable=False),
        sa.Column("opens_at", sa.String(5), nullable=False),
        sa.Column("closes_at", sa.String(5), nullable=False),
        sa.Column("default_ratio", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_collection_sites"),
    )
    op.create_index("ix_collection_sites_region_code", "collection_sites", ["region_code"])
    op.create_table(
        "labs",
        *_place_columns(),
        sa.Column("tubes_per_day", sa.Integer(), nullable=False),
        sa.Column("opens_at", sa.String(5), nullable=False),
        sa.Column("closes_at", sa.String(5), nullable=False),
        sa.Column("turnaround_hours", sa.Float(), nullable=False),
        sa.Column("reagent_stock", sa.Integer(), nullable=False),
        sa.Column("run_hours", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_labs"),
    )
    op.create_index("ix_labs_region_code", "labs", ["region_code"])
    op.create_table(
        "travel_times",
        sa.Column("site_id", sa.String(36), nullable=False),
        sa.Column("lab_id", sa.String(36), nullable=False),
        sa.Column("minutes", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("site_id", "lab_id", name="pk_travel_times"),
    )
    op.create_table(
        "tubes",
        sa.Column("barcode", sa.String(64), nullable=False),
        sa.Column("site_id", sa.String(36), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("ratio", sa.Integer(), nullable=False),
        sa.Column("members_count", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.String(80), nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("lab_id", sa.String(36), nullable=True),
        sa.Column("resulted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ct_value", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("barcode", name="pk_tubes"),
    )
    op.create_index("ix_tubes_site_id", "tubes", ["site_id"])
    op.create_index("ix_tubes_region_code", "tubes", ["region_code"])
    op.create_index("ix_tubes_collected_at", "tubes", ["collected_at"])
    op.create_index("ix_tubes_status_site", "tubes", ["status", "site_id"])
    op.create_table(
        "tube_members",
        sa.Column("barcode", sa.String(64), nullable=False),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("round_id", sa.String(80), nullable=False),
        sa.Column("void", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("barcode", "person_key", name="pk_tube_members"),
    )
    # One tube per person per screening round, among tubes that were not invalid.
    op.create_index("uq_tube_members_round_person", "tube_members", ["round_id", "person_key"], unique=True,
                    postgresql_where=sa.text("void = false"), sqlite_where=sa.text("void = 0"))
    op.create_index("ix_tube_members_person_key", "tube_members", ["person_key"])
    op.create_table(
        "test_orders",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("person_key", sa.String(64), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("reason", sa.String(20), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("source_barcode", sa.String(64), nullable=True),
        sa.Column("quarantine_order_id", sa.String(36), nullable=True),
        sa.Column("stage_index", sa.Integer(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("fulfilled_barcode", sa.String(64), nullable=True),
        sa.Column("dedup_key", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_test_orders"),
        sa.UniqueConstraint("dedup_key", name="uq_test_orders_dedup_key"),
    )
    op.create_index("ix_test_orders_person_key", "test_orders", ["person_key"])
    op.create_index("ix_test_orders_region_code", "test_orders", ["region_code"])
    op.create_index("ix_test_orders_source_barcode", "test_orders", ["source_barcode"])
    op.create_table(
        "capacity_alert_states",
        sa.Column("condition", sa.String(200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("condition", name="pk_capacity_alert_states"),
    )


def downgrade() -> None:
    for table in ("capacity_alert_states", "test_orders", "tube_members", "tubes", "travel_times", "labs",
                  "collection_sites"):
        op.drop_table(table)
