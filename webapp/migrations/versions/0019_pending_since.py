"""when a certificate last entered Pending, as a column the dashboard can count by index

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 07:30:00

The dashboard's "Pending for more than a day" looked up each pending certificate's latest
"pending: waiting…" timeline line: 5,000 pending certificates cost 10,000 index lookups per
view. The time now lives on the row; existing rows get it from that same line (or their
creation when there is none).
"""
from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pending_since', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_sslm_certificate_status_pending', ['status', 'pending_since'], unique=False)
    op.execute("""
        UPDATE sslm_certificate SET pending_since = COALESCE(
            (SELECT max(t.at) FROM sslm_timeline_event t
              WHERE t.certificate_id = sslm_certificate.id AND t.message LIKE 'pending: waiting%'),
            created_at)
        WHERE status = 'pending'""")


def downgrade() -> None:
    with op.batch_alter_table('sslm_certificate', schema=None) as batch_op:
        batch_op.drop_index('ix_sslm_certificate_status_pending')
        batch_op.drop_column('pending_since')
