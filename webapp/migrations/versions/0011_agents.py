"""agents on web servers and what each serves

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 04:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sslm_agent',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sslm_agent')),
        sa.UniqueConstraint('token_id', 'name', name=op.f('uq_sslm_agent_token_id')),
    )
    with op.batch_alter_table('sslm_agent', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sslm_agent_token_id'), ['token_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_sslm_agent_last_seen_at'), ['last_seen_at'], unique=False)
    op.create_table(
        'sslm_agent_install',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('agent_id', sa.Integer(), nullable=False),
        sa.Column('certificate_id', sa.Integer(), nullable=False),
        sa.Column('installed_version_id', sa.Integer(), nullable=True),
        sa.Column('installed_serial', sa.String(length=64), nullable=False),
        sa.Column('last_serial', sa.String(length=64), nullable=False),
        sa.Column('last_ok', sa.Boolean(), nullable=False),
        sa.Column('last_message', sa.Text(), nullable=False),
        sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['sslm_agent.id'], name=op.f('fk_sslm_agent_install_agent_id_sslm_agent'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['certificate_id'], ['sslm_certificate.id'],
                                name=op.f('fk_sslm_agent_install_certificate_id_sslm_certificate'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_sslm_agent_install')),
        sa.UniqueConstraint('agent_id', 'certificate_id', name=op.f('uq_sslm_agent_install_agent_id')),
    )
    with op.batch_alter_table('sslm_agent_install', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sslm_agent_install_certificate_id'), ['certificate_id'], unique=False)


def downgrade() -> None:
    op.drop_table('sslm_agent_install')
    op.drop_table('sslm_agent')
