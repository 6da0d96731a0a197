"""CA failover: ordered fallback lists, per-profile health, and which profile issued each version

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-05 04:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sslm_ca_fallback',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('certificate_id', sa.Integer(), nullable=True),
        sa.Column('owner_profile_id', sa.Integer(), nullable=True),
        sa.Column('fallback_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['fallback_id'], ['sslm_ca_profile.id'],
                                name=op.f('fk_sslm_ca_fallback_fallback_id_sslm_ca_profile')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sslm_ca_fallback')))
    with op.batch_alter_table('sslm_ca_fallback', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sslm_ca_fallback_certificate_id'), ['certificate_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sslm_ca_fallback_owner_profile_id'), ['owner_profile_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sslm_ca_fallback_fallback_id'), ['fallback_id'], unique=False)
    with op.batch_alter_table('sslm_ca_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unreachable_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('unreachable_seen_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('server_errors', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('account_refused', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempt_profile_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('failover_reason', sa.Text(), nullable=False, server_default=''))
    with op.batch_alter_table('sslm_certificate_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('profile_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('failover_reason', sa.Text(), nullable=False, server_default=''))
    # Every version so far came from its certificate's own profile.
    op.execute("UPDATE sslm_certificate_version SET profile_id = (SELECT c.profile_id FROM "
               "sslm_certificate c WHERE c.id = sslm_certificate_version.certificate_id)")


def downgrade() -> None:
    with op.batch_alter_table('sslm_certificate_version', schema=None) as batch_op:
        batch_op.drop_column('failover_reason')
        batch_op.drop_column('profile_id')
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.drop_column('failover_reason')
        batch_op.drop_column('attempt_profile_id')
    with op.batch_alter_table('sslm_ca_profile', schema=None) as batch_op:
        batch_op.drop_column('account_refused')
        batch_op.drop_column('server_errors')
        batch_op.drop_column('unreachable_seen_at')
        batch_op.drop_column('unreachable_since')
    with op.batch_alter_table('sslm_ca_fallback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sslm_ca_fallback_fallback_id'))
        batch_op.drop_index(batch_op.f('ix_sslm_ca_fallback_owner_profile_id'))
        batch_op.drop_index(batch_op.f('ix_sslm_ca_fallback_certificate_id'))
    op.drop_table('sslm_ca_fallback')
