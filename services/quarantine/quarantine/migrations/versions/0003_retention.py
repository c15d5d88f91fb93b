"""transfers.pii_erased_at: when retention erased a closed transfer's addresses and escort

Revision ID: quarantine_0003
Revises: quarantine_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "quarantine_0003"
down_revision = "quarantine_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("transfers", sa.Column("pii_erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("transfers", "pii_erased_at")
