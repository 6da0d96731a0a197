"""ARI polling: the CA's renewal window as last polled, and when to poll again

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 02:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ari_window_start', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ari_window_end', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ari_explanation_url', sa.String(length=500), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('ari_checked_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ari_next_poll_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_sslm_certificate_ari_next_poll_at'), ['ari_next_poll_at'],
                              unique=False)
    # Certificates issued before polling existed are asked once; those whose CA has no
    # renewalInfo then stop being polled.
    op.execute("UPDATE sslm_certificate SET ari_next_poll_at = CURRENT_TIMESTAMP "
               "WHERE status = 'active' AND auto_renew")


def downgrade() -> None:
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sslm_certificate_ari_next_poll_at'))
        batch_op.drop_column('ari_next_poll_at')
        batch_op.drop_column('ari_checked_at')
        batch_op.drop_column('ari_explanation_url')
        batch_op.drop_column('ari_window_end')
        batch_op.drop_column('ari_window_start')
