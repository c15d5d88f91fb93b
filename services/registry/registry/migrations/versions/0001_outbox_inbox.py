"""outbox and inbox tables

Revision ID: registry_0001
Revises:
"""

from fangkong_common.migrations import create_outbox_and_inbox, drop_outbox_and_inbox

revision = "registry_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_and_inbox()


def downgrade() -> None:
    drop_outbox_and_inbox()
