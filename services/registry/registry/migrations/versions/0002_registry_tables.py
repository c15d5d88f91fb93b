"""registry tables

Revision ID: registry_0002
Revises: registry_0001

"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from fangkong_common.migrations import create_pii_audit_table

# revision identifiers, used by Alembic.
revision: str = 'registry_0002'
down_revision: Union[str, Sequence[str], None] = 'registry_0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('cases',
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('positive_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('barcode', sa.String(length=60), nullable=True),
    sa.Column('classification', sa.String(length=20), nullable=True),
    sa.Column('classified_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('person_key', name=op.f('pk_cases'))
    )
    op.create_table('checkpoint_passes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('checkpoint_id', sa.String(length=36), nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=True),
    sa.Column('temperature_c', sa.Float(), nullable=False),
    sa.Column('passed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('fever', sa.Boolean(), nullable=False),
    sa.Column('client_pass_id', sa.String(length=80), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoint_passes')),
    sa.UniqueConstraint('client_pass_id', name=op.f('uq_checkpoint_passes_client_pass_id'))
    )
    with op.batch_alter_table('checkpoint_passes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoint_passes_checkpoint_id'), ['checkpoint_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_checkpoint_passes_person_key'), ['person_key'], unique=False)

    op.create_table('checkpoints',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoints'))
    )
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_checkpoints_region_code'), ['region_code'], unique=False)

    op.create_table('contact_links',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('source_person_key', sa.String(length=64), nullable=False),
    sa.Column('case_person_key', sa.String(length=64), nullable=False),
    sa.Column('degree', sa.Integer(), nullable=False),
    sa.Column('exposure_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('setting', sa.String(length=40), nullable=False),
    sa.Column('reported_by', sa.String(length=200), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_links')),
    sa.UniqueConstraint('person_key', 'source_person_key', name=op.f('uq_contact_links_person_key'))
    )
    with op.batch_alter_table('contact_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_links_case_person_key'), ['case_person_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_contact_links_person_key'), ['person_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_contact_links_source_person_key'), ['source_person_key'], unique=False)

    op.create_table('gatherings',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('organiser', sa.String(length=100), nullable=False),
    sa.Column('organiser_phone', sa.String(length=30), nullable=True),
    sa.Column('place', sa.String(length=300), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('held_on', sa.Date(), nullable=False),
    sa.Column('expected_attendees', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('decision_note', sa.Text(), nullable=True),
    sa.Column('filed_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gatherings'))
    )
    with op.batch_alter_table('gatherings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_gatherings_region_code'), ['region_code'], unique=False)

    op.create_table('person_changes',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('role', sa.String(length=40), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('changes', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_changes'))
    )
    with op.batch_alter_table('person_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_changes_person_key'), ['person_key'], unique=False)

    op.create_table('persons',
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('id_type', sa.String(length=30), nullable=False),
    sa.Column('id_number', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('phone', sa.String(length=30), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('grid', sa.String(length=60), nullable=True),
    sa.Column('address', sa.String(length=300), nullable=True),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('sex', sa.String(length=10), nullable=True),
    sa.Column('category', sa.String(length=40), nullable=True),
    sa.Column('registered_via', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('person_key', name=op.f('pk_persons'))
    )
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_persons_category'), ['category'], unique=False)
        batch_op.create_index('ix_persons_dedupe', ['name', 'birth_date', 'phone'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_region_code'), ['region_code'], unique=False)
        batch_op.create_index('ix_persons_region_grid', ['region_code', 'grid'], unique=False)

    op.create_table('possible_duplicates',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('other_person_key', sa.String(length=64), nullable=False),
    sa.Column('evidence', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_possible_duplicates')),
    sa.UniqueConstraint('person_key', 'other_person_key', name=op.f('uq_possible_duplicates_person_key'))
    )
    with op.batch_alter_table('possible_duplicates', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_possible_duplicates_person_key'), ['person_key'], unique=False)

    op.create_table('risk_areas',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('effective_to', sa.Date(), nullable=True),
    sa.Column('lookback_days', sa.Integer(), nullable=False),
    sa.Column('declared_by', sa.String(length=200), nullable=False),
    sa.Column('declared_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('flagged_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_areas'))
    )
    with op.batch_alter_table('risk_areas', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_areas_region_code'), ['region_code'], unique=False)

    op.create_table('risk_flags',
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('risk_area_id', sa.String(length=36), nullable=False),
    sa.Column('travel_record_id', sa.String(length=36), nullable=True),
    sa.Column('stay_from', sa.Date(), nullable=False),
    sa.Column('stay_to', sa.Date(), nullable=False),
    sa.Column('flagged_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('person_key', 'risk_area_id', name=op.f('pk_risk_flags'))
    )
    op.create_table('travel_records',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('origin_kind', sa.String(length=20), nullable=False),
    sa.Column('origin_country', sa.String(length=2), nullable=True),
    sa.Column('origin_region_code', sa.String(length=6), nullable=True),
    sa.Column('arrival_date', sa.Date(), nullable=False),
    sa.Column('port_of_entry', sa.String(length=6), nullable=True),
    sa.Column('transport_kind', sa.String(length=30), nullable=True),
    sa.Column('transport_number', sa.String(length=40), nullable=True),
    sa.Column('served_quarantine_days', sa.Integer(), nullable=False),
    sa.Column('served_quarantine_place', sa.String(length=200), nullable=True),
    sa.Column('category', sa.String(length=40), nullable=False),
    sa.Column('natural_key', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_travel_records')),
    sa.UniqueConstraint('natural_key', name=op.f('uq_travel_records_natural_key'))
    )
    with op.batch_alter_table('travel_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_travel_records_person_key'), ['person_key'], unique=False)

    op.create_table('vaccination_targets',
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('age_group', sa.String(length=10), nullable=False),
    sa.Column('target_people', sa.Integer(), nullable=False),
    sa.Column('deadline', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('region_code', 'age_group', name=op.f('pk_vaccination_targets'))
    )
    op.create_table('vaccinations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('age_group', sa.String(length=10), nullable=False),
    sa.Column('vaccine', sa.String(length=100), nullable=False),
    sa.Column('dose_number', sa.Integer(), nullable=False),
    sa.Column('vaccinated_on', sa.Date(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vaccinations')),
    sa.UniqueConstraint('person_key', 'dose_number', name=op.f('uq_vaccinations_person_key'))
    )
    with op.batch_alter_table('vaccinations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vaccinations_person_key'), ['person_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_vaccinations_region_code'), ['region_code'], unique=False)

    op.create_table('travel_stays',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('travel_record_id', sa.String(length=36), nullable=False),
    sa.Column('person_key', sa.String(length=64), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('date_from', sa.Date(), nullable=False),
    sa.Column('date_to', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['travel_record_id'], ['travel_records.id'], name=op.f('fk_travel_stays_travel_record_id_travel_records')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_travel_stays'))
    )
    with op.batch_alter_table('travel_stays', schema=None) as batch_op:
        batch_op.create_index('ix_travel_stays_region_dates', ['region_code', 'date_to', 'date_from'], unique=False)
        batch_op.create_index(batch_op.f('ix_travel_stays_travel_record_id'), ['travel_record_id'], unique=False)

    create_pii_audit_table()


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('pii_audit')
    with op.batch_alter_table('travel_stays', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_travel_stays_travel_record_id'))
        batch_op.drop_index('ix_travel_stays_region_dates')

    op.drop_table('travel_stays')
    with op.batch_alter_table('vaccinations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vaccinations_region_code'))
        batch_op.drop_index(batch_op.f('ix_vaccinations_person_key'))

    op.drop_table('vaccinations')
    op.drop_table('vaccination_targets')
    with op.batch_alter_table('travel_records', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_travel_records_person_key'))

    op.drop_table('travel_records')
    op.drop_table('risk_flags')
    with op.batch_alter_table('risk_areas', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_risk_areas_region_code'))

    op.drop_table('risk_areas')
    with op.batch_alter_table('possible_duplicates', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_possible_duplicates_person_key'))

    op.drop_table('possible_duplicates')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index('ix_persons_region_grid')
        batch_op.drop_index(batch_op.f('ix_persons_region_code'))
        batch_op.drop_index('ix_persons_dedupe')
        batch_op.drop_index(batch_op.f('ix_persons_category'))

    op.drop_table('persons')
    with op.batch_alter_table('person_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_changes_person_key'))

    op.drop_table('person_changes')
    with op.batch_alter_table('gatherings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_gatherings_region_code'))

    op.drop_table('gatherings')
    with op.batch_alter_table('contact_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_contact_links_source_person_key'))
        batch_op.drop_index(batch_op.f('ix_contact_links_person_key'))
        batch_op.drop_index(batch_op.f('ix_contact_links_case_person_key'))

    op.drop_table('contact_links')
    with op.batch_alter_table('checkpoints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoints_region_code'))

    op.drop_table('checkpoints')
    with op.batch_alter_table('checkpoint_passes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_checkpoint_passes_person_key'))
        batch_op.drop_index(batch_op.f('ix_checkpoint_passes_checkpoint_id'))

    op.drop_table('checkpoint_passes')
    op.drop_table('cases')
