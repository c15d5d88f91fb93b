"""vaccination targets by region and age group

Revision ID: dashboard_0004
Revises: dashboard_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "dashboard_0004"
down_revision = "dashboard_0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dash_vaccination_target",
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("age_group", sa.String(length=10), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("deadline", sa.Date(), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("region_code", "age_group", name=op.f("pk_dash_vaccination_target")),
    )


def downgrade() -> None:
    op.drop_table("dash_vaccination_target")
