"""index person facts by day (the purge finds the newest day and deletes the oldest)

Revision ID: dashboard_0005
Revises: dashboard_0004
"""

from alembic import op

revision = "dashboard_0005"
down_revision = "dashboard_0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dash_fact_day", "dash_fact", ["day"])


def downgrade() -> None:
    op.drop_index("ix_dash_fact_day", table_name="dash_fact")
