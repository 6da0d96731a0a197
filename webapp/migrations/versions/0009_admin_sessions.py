"""admin session epoch and disabled flag; failed sign-ins keep no typed names

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-28 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sslm_admin', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('disabled', sa.Boolean(), server_default=sa.false(), nullable=False))
    # Failed sign-ins stored the username as typed (often a mistyped password): drop them; from
    # now on only a keyed hash is kept. They only ever mattered for the next 15 minutes.
    op.execute(sa.text("DELETE FROM sslm_login_attempt"))


def downgrade() -> None:
    with op.batch_alter_table('sslm_admin', schema=None) as batch_op:
        batch_op.drop_column('disabled')
        batch_op.drop_column('session_epoch')
