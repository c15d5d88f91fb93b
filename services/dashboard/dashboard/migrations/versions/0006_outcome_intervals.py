"""outcome intervals: moments from events, contact links, measured intervals (issue 10)

Revision ID: dashboard_0006
Revises: dashboard_0005
"""

import sqlalchemy as sa
from alembic import op

revision = "dashboard_0006"
down_revision = "dashboard_0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dash_moment",
        sa.Column("subject", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=12), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=True),
        sa.Column("extra", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("subject", "kind", "at", name=op.f("pk_dash_moment")),
    )
    op.create_index("ix_dash_moment_kind_at", "dash_moment", ["kind", "at"])
    op.create_table(
        "dash_contact_link",
        sa.Column("case_key", sa.String(length=64), nullable=False),
        sa.Column("contact_key", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("case_key", "contact_key", name=op.f("pk_dash_contact_link")),
    )
    op.create_index(op.f("ix_dash_contact_link_contact_key"), "dash_contact_link", ["contact_key"])
    op.create_table(
        "dash_interval",
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("subject", sa.String(length=160), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_day", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("kind", "subject", name=op.f("pk_dash_interval")),
    )
    op.create_index("ix_dash_interval_kind_region_end", "dash_interval", ["kind", "region_code", "end_day"])
    op.create_index("ix_dash_interval_kind_region_start", "dash_interval", ["kind", "region_code", "start_at"])


def downgrade() -> None:
    op.drop_table("dash_interval")
    op.drop_table("dash_contact_link")
    op.drop_table("dash_moment")
