"""a trigram index for the certificate search, on PostgreSQL where pg_trgm can be had

Revision ID: 0018
Revises: 0011
Create Date: 2026-12-05 07:00:00

The list's search is a substring match (LIKE '%shop12%'): a B-tree cannot answer it, so at
100,000 certificates each search read the whole table twice (the count and the page). pg_trgm's
GIN index answers it from the index. The extension ships with PostgreSQL (Debian's package,
every managed service) and is "trusted" since PostgreSQL 13, so a database owner may create it;
where it cannot be created the search still works, by reading the table, and a warning says so.
SQLite has no such index: its search reads the table (fine below ~20,000 certificates).
"""
import logging

from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0011'
branch_labels = None
depends_on = None

INDEX = 'ix_sslm_certificate_search_trgm'   # webapp.db.OPTIONAL_INDEXES names it
log = logging.getLogger("alembic.runtime.migration")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    if not bind.execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).scalar():
        try:
            with bind.begin_nested():   # a refusal must not abort the migration's transaction
                bind.execute(sa.text("CREATE EXTENSION pg_trgm"))
        except sa.exc.DBAPIError as exc:
            log.warning("pg_trgm could not be created (%s): certificate searches will read the whole "
                        "table. A superuser can add it later: CREATE EXTENSION pg_trgm; CREATE INDEX %s "
                        "ON sslm_certificate USING gin (search_text gin_trgm_ops);",
                        str(exc.orig).strip().splitlines()[0], INDEX)
            return
    op.execute(f"CREATE INDEX IF NOT EXISTS {INDEX} ON sslm_certificate USING gin (search_text gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f"DROP INDEX IF EXISTS {INDEX}")
