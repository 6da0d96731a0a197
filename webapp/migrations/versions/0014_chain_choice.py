"""preferred chain per CA profile; which chain each version stores

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-05 04:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sslm_ca_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('preferred_chain', sa.String(length=255), server_default='', nullable=False))
    with op.batch_alter_table('sslm_certificate_version', schema=None) as batch_op:
        batch_op.add_column(sa.Column('chain_choice', sa.Text(), server_default='', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('sslm_certificate_version', schema=None) as batch_op:
        batch_op.drop_column('chain_choice')
    with op.batch_alter_table('sslm_ca_profile', schema=None) as batch_op:
        batch_op.drop_column('preferred_chain')
