"""Alembic environment: run with the connection SSL Manager hands over (see webapp/db.py)."""
from alembic import context

from webapp.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table="sslm_alembic_version",  # apart from a host app's own alembic_version
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copy
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
