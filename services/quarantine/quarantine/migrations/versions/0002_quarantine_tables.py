"""quarantine tables: policies, orders and their changes, scheduled tests, sites, placements,
transfers, check-ins, alerts, cases, test results

Revision ID: quarantine_0002
Revises: quarantine_0001
Create Date: 2026-11-29 01:59:33.767028

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from fangkong_common.migrations import create_pii_audit_table


# revision identifiers, used by Alembic.
revision: str = 'quarantine_0002'
down_revision: Union[str, Sequence[str], None] = 'quarantine_0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # the audit table every service has (fangkong_common.audit); nothing here reads PII today
    create_pii_audit_table()

    op.create_table('alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=True),
    sa.Column('person_key', sa.String(length=80), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('site_id', sa.String(length=64), nullable=True),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('on_date', sa.Date(), nullable=False),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('uq_alerts_person_kind_day', ['person_key', 'kind', 'on_date', 'order_id'], unique=True)

    op.create_table('cases',
    sa.Column('person_key', sa.String(length=80), nullable=False),
    sa.Column('origin_region_code', sa.String(length=6), nullable=False),
    sa.Column('treating_region_code', sa.String(length=6), nullable=True),
    sa.Column('site_id', sa.String(length=64), nullable=True),
    sa.Column('site_kind', sa.String(length=20), nullable=True),
    sa.Column('order_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('barcode', sa.String(length=100), nullable=False),
    sa.Column('positive_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('admitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('classification', sa.String(length=20), nullable=True),
    sa.Column('severity', sa.String(length=40), nullable=True),
    sa.Column('classified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('classified_by', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('person_key', name=op.f('pk_cases'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index('ix_cases_classification', ['classification'], unique=False)
        batch_op.create_index('ix_cases_origin', ['origin_region_code'], unique=False)

    op.create_table('orders',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('person_key', sa.String(length=80), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('grid', sa.String(length=100), nullable=True),
    sa.Column('cause', sa.String(length=120), nullable=False),
    sa.Column('category', sa.String(length=60), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('policy_id', sa.String(length=100), nullable=False),
    sa.Column('policy_version', sa.Integer(), nullable=False),
    sa.Column('facts', sa.JSON(), nullable=False),
    sa.Column('stages', sa.JSON(), nullable=False),
    sa.Column('current_stage', sa.Integer(), nullable=True),
    sa.Column('stage_end_date', sa.Date(), nullable=True),
    sa.Column('release_date', sa.Date(), nullable=False),
    sa.Column('site_id', sa.String(length=64), nullable=True),
    sa.Column('site_region_code', sa.String(length=6), nullable=True),
    sa.Column('awaiting_site', sa.Boolean(), nullable=False),
    sa.Column('source_event_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_person_key', ['person_key'], unique=False)
        batch_op.create_index('ix_orders_region_code', ['region_code'], unique=False)
        batch_op.create_index('ix_orders_site_id', ['site_id'], unique=False)
        batch_op.create_index('ix_orders_status_release', ['status', 'release_date'], unique=False)
        batch_op.create_index('ix_orders_status_stage_end', ['status', 'stage_end_date'], unique=False)
        batch_op.create_index('uq_orders_active_cause', ['person_key', 'cause'], unique=True, postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))

    op.create_table('policies',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('policy_id', sa.String(length=100), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('published_by', sa.String(length=200), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('replanned_orders', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policies'))
    )
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.create_index('uq_policies_policy_id_version', ['policy_id', 'version'], unique=True)

    op.create_table('sites',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('capacity', sa.Integer(), nullable=False),
    sa.Column('occupancy', sa.Integer(), nullable=False),
    sa.Column('supporting_regions', sa.JSON(), nullable=False),
    sa.Column('low_alerted', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sites'))
    )
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.create_index('ix_sites_kind_region', ['kind', 'region_code'], unique=False)

    op.create_table('test_results',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('person_key', sa.String(length=80), nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=True),
    sa.Column('barcode', sa.String(length=100), nullable=False),
    sa.Column('result', sa.String(length=20), nullable=False),
    sa.Column('resulted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_test_results'))
    )
    with op.batch_alter_table('test_results', schema=None) as batch_op:
        batch_op.create_index('uq_test_results_person_barcode', ['person_key', 'barcode'], unique=True)

    op.create_table('transfers',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('person_key', sa.String(length=80), nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('from_place', sa.String(length=200), nullable=False),
    sa.Column('to_place', sa.String(length=200), nullable=False),
    sa.Column('from_site_id', sa.String(length=64), nullable=True),
    sa.Column('to_site_id', sa.String(length=64), nullable=True),
    sa.Column('vehicle', sa.String(length=100), nullable=False),
    sa.Column('escort', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('arrived_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('requested_by', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfers'))
    )
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.create_index('ix_transfers_person_key', ['person_key'], unique=False)
        batch_op.create_index('ix_transfers_status', ['status'], unique=False)

    op.create_table('checkins',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('local_date', sa.Date(), nullable=False),
    sa.Column('temperature_c', sa.Float(), nullable=False),
    sa.Column('symptoms', sa.JSON(), nullable=False),
    sa.Column('recorded_by', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_checkins_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkins'))
    )
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.create_index('ix_checkins_order_day', ['order_id', 'local_date'], unique=False)

    op.create_table('order_changes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_changes_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_changes'))
    )
    with op.batch_alter_table('order_changes', schema=None) as batch_op:
        batch_op.create_index('ix_order_changes_order_id', ['order_id'], unique=False)

    op.create_table('placements',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.Column('person_key', sa.String(length=80), nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=True),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('placed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_placements_site_id_sites')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_placements'))
    )
    with op.batch_alter_table('placements', schema=None) as batch_op:
        batch_op.create_index('ix_placements_person_key', ['person_key'], unique=False)
        batch_op.create_index('ix_placements_site_open', ['site_id'], unique=False, postgresql_where=sa.text('released_at IS NULL'), sqlite_where=sa.text('released_at IS NULL'))

    op.create_table('scheduled_tests',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('order_id', sa.String(length=36), nullable=False),
    sa.Column('person_key', sa.String(length=80), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('stage_index', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('emitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_scheduled_tests_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scheduled_tests'))
    )
    with op.batch_alter_table('scheduled_tests', schema=None) as batch_op:
        batch_op.create_index('ix_scheduled_tests_due', ['due_date'], unique=False, postgresql_where=sa.text('emitted_at IS NULL'), sqlite_where=sa.text('emitted_at IS NULL'))
        batch_op.create_index('uq_scheduled_tests_order_day_reason', ['order_id', 'due_date', 'reason'], unique=True)



def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('scheduled_tests', schema=None) as batch_op:
        batch_op.drop_index('uq_scheduled_tests_order_day_reason')
        batch_op.drop_index('ix_scheduled_tests_due', postgresql_where=sa.text('emitted_at IS NULL'), sqlite_where=sa.text('emitted_at IS NULL'))

    op.drop_table('scheduled_tests')
    with op.batch_alter_table('placements', schema=None) as batch_op:
        batch_op.drop_index('ix_placements_site_open', postgresql_where=sa.text('released_at IS NULL'), sqlite_where=sa.text('released_at IS NULL'))
        batch_op.drop_index('ix_placements_person_key')

    op.drop_table('placements')
    with op.batch_alter_table('order_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_order_changes_order_id')

    op.drop_table('order_changes')
    with op.batch_alter_table('checkins', schema=None) as batch_op:
        batch_op.drop_index('ix_checkins_order_day')

    op.drop_table('checkins')
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_index('ix_transfers_status')
        batch_op.drop_index('ix_transfers_person_key')

    op.drop_table('transfers')
    with op.batch_alter_table('test_results', schema=None) as batch_op:
        batch_op.drop_index('uq_test_results_person_barcode')

    op.drop_table('test_results')
    with op.batch_alter_table('sites', schema=None) as batch_op:
        batch_op.drop_index('ix_sites_kind_region')

    op.drop_table('sites')
    with op.batch_alter_table('policies', schema=None) as batch_op:
        batch_op.drop_index('uq_policies_policy_id_version')

    op.drop_table('policies')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('uq_orders_active_cause', postgresql_where=sa.text("status = 'active'"), sqlite_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_orders_status_stage_end')
        batch_op.drop_index('ix_orders_status_release')
        batch_op.drop_index('ix_orders_site_id')
        batch_op.drop_index('ix_orders_region_code')
        batch_op.drop_index('ix_orders_person_key')

    op.drop_table('orders')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index('ix_cases_origin')
        batch_op.drop_index('ix_cases_classification')

    op.drop_table('cases')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('uq_alerts_person_kind_day')

    op.drop_table('alerts')
    with op.batch_alter_table('pii_audit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pii_audit_subject'))
        batch_op.drop_index(batch_op.f('ix_pii_audit_at'))
        batch_op.drop_index(batch_op.f('ix_pii_audit_actor'))

    op.drop_table('pii_audit')
