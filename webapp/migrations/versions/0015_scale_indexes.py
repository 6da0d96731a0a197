"""partial indexes for the dashboard's week counts at 100,000 certificates

Revision ID: 0015
Revises: 0009
Create Date: 2026-12-05 04:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0012'
branch_labels = None
depends_on = None

# As in models/certificates.py (SERVING, AUTO_RENEWING): the queries repeat these conditions word for word.
SERVING = sa.text("status NOT IN ('revoked', 'expired')")
AUTO_RENEWING = sa.text("status = 'active' AND auto_renew = true")


def upgrade() -> None:
    op.create_index('ix_sslm_certificate_serving', 'sslm_certificate', ['not_after', 'auto_renew'],
                    postgresql_where=SERVING, sqlite_where=SERVING)
    op.create_index('ix_sslm_certificate_auto_renewing', 'sslm_certificate', ['renew_at'],
                    postgresql_where=AUTO_RENEWING, sqlite_where=AUTO_RENEWING)


def downgrade() -> None:
    op.drop_index('ix_sslm_certificate_auto_renewing', table_name='sslm_certificate')
    op.drop_index('ix_sslm_certificate_serving', table_name='sslm_certificate')
