"""running totals of the counters (levels to date read a few rows, whatever the history length)

Revision ID: dashboard_0003
Revises: dashboard_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "dashboard_0003"
down_revision = "dashboard_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dash_total",
        sa.Column("metric", sa.String(length=40), nullable=False),
        sa.Column("region_code", sa.String(length=6), nullable=False),
        sa.Column("dimension", sa.String(length=80), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("metric", "region_code", "dimension", name=op.f("pk_dash_total")),
    )
    op.execute("INSERT INTO dash_total (metric, region_code, dimension, value) "
               "SELECT metric, region_code, dimension, SUM(value) FROM dash_counter "
               "GROUP BY metric, region_code, dimension")


def downgrade() -> None:
    op.drop_table("dash_total")
