"""Validation mode per certificate (CNAME or dns-persist-01), and what a CA's authorizations offer

Revision ID: 0012
Revises: 0009
Create Date: 2026-12-20 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('validation', sa.String(length=16), nullable=False,
                                      server_default='cname'))
    with op.batch_alter_table('sslm_ca_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('challenge_info', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sslm_ca_profile', schema=None) as batch_op:
        batch_op.drop_column('challenge_info')
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.drop_column('validation')
