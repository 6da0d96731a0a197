"""The database seen from SSL Manager: its session, and Alembic migrations run in-process."""
from __future__ import annotations

import os

from flask import current_app
from sqlalchemy.orm import scoped_session

from .models import Base

MIGRATIONS = os.path.join(os.path.dirname(__file__), "migrations")
# Indexes a migration makes only where the database can (0018: pg_trgm's, on PostgreSQL): not
# in the models, so a comparison of models and database leaves them out.
OPTIONAL_INDEXES = frozenset({"ix_sslm_certificate_search_trgm"})


def session() -> scoped_session:
    """The Flask-SQLAlchemy session our models use (the host's when embedded)."""
    return current_app.extensions["sslmanager"].db.session


# Alembic is imported inside the functions: most processes (a `cert process`, a page) only need
# to compare revisions once, and its import costs a tenth of a second.

def _alembic_config():
    # start-up: Alembic loads only when a revision is compared (see above)
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def head_revision() -> str:
    """The newest migration shipped with this version."""
    # start-up: Alembic loads only when a revision is compared (see above)
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(_alembic_config()).get_current_head() or ""


def current_revision(engine=None) -> str:
    """The migration the database (or `engine`'s) is at ("" when it has none)."""
    # start-up: Alembic loads only when a revision is compared (see above)
    from alembic.runtime.migration import MigrationContext
    engine = engine if engine is not None else current_app.extensions["sslmanager"].engine
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": "sslm_alembic_version"})
        return ctx.get_current_revision() or ""


def upgrade(revision: str = "head", engine=None) -> None:
    """Apply migrations up to `revision`, on the app's database or on `engine` (the target of
    `db copy`)."""
    # start-up: Alembic loads only when a revision is compared (see above)
    from alembic import command
    cfg = _alembic_config()
    ours = engine is None
    engine = engine if engine is not None else current_app.extensions["sslmanager"].engine
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite alters a table by copying it and dropping the old one; with foreign keys
            # on, that drop would cascade into the rows referring to it. The pragma only takes
            # effect outside a transaction: set it before the migrations' one begins.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, revision)
        finally:
            if sqlite:  # back on before the connection returns to the pool
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()
    if ours:
        current_app.extensions["sslmanager"].schema_current = current_revision() == head_revision()


def revision(message: str) -> None:
    """Autogenerate a migration from the models (for developers)."""
    # start-up: Alembic loads only when a revision is compared (see above)
    from alembic import command
    cfg = _alembic_config()
    with current_app.extensions["sslmanager"].engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)


def schema_is_current() -> bool:
    """True once the database is at the head migration (cached after the first yes)."""
    state = current_app.extensions["sslmanager"]
    if not state.schema_current:
        state.schema_current = current_revision() == head_revision()
    return state.schema_current


def refresh_statistics(engine=None) -> bool:
    """SQLite: ANALYZE our tables, so that its planner knows their sizes. Without statistics it
    prefers any equality (status = 'active', a third of the table) over the dashboard's and the
    scheduler's partial-index ranges: at 100,000 certificates the dashboard took 1.5-2.7 s and a
    no-op tick 0.4-0.7 s, and 0.2-0.3 s and 0.1-0.2 s once analysed. Full ANALYZE of 100,000
    certificates takes about 0.2 s; the scheduler runs it hourly. Only the sslm_ tables: an
    embedding host's own are its business. PostgreSQL's autovacuum does this by itself: False."""
    engine = engine if engine is not None else current_app.extensions["sslmanager"].engine
    if engine.dialect.name != "sqlite":
        return False
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            conn.exec_driver_sql(f'ANALYZE "{table.name}"')
        conn.commit()
    return True
