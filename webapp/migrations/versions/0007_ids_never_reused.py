"""IDs never reused on SQLite: AUTOINCREMENT on every table whose ids are seen outside

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14

Without AUTOINCREMENT, SQLite gives a new row the highest id in the table plus one, so a deleted
certificate's id goes to the next certificate, and deploy hooks, exports, metrics and the audit
log then mix two certificates up. SQLite cannot add AUTOINCREMENT to a table: each one is
rebuilt (copied whole into a new table, then renamed), keeping every row. PostgreSQL's sequences
never hand out a number twice: nothing to do there.

The ids deleted before this migration left no trace in their table; where the audit log (or a
record that outlives its certificate) still names one, the table's counter starts past it.
"""
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# table -> the audit log's object_type for it ("" when it has none)
TABLES = {
    "sslm_admin": "admin",
    "sslm_ca_profile": "ca_profile",
    "sslm_tech_zone": "zone",
    "sslm_notification_channel": "notification_channel",
    "sslm_certificate": "certificate",
    "sslm_certificate_version": "",
    "sslm_audit_event": "",
}
# Other places a certificate id outlives its row (plain integer columns, no foreign key).
CERTIFICATE_ID_COLUMNS = (("sslm_dns_record", "certificate_id"),
                          ("sslm_notification_sent", "certificate_id"))


def _foreign_keys_off(bind) -> None:
    """Dropping the old copy of a table with foreign keys on would cascade into (or be refused
    for) the rows that refer to it: db.upgrade turns them off around the migrations; refuse to
    go on rather than lose rows when something else runs this migration with them on."""
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")  # takes effect outside a transaction only
    if bind.exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("migration 0007 rebuilds tables and needs SQLite's foreign keys off: "
                           "run it with `sslmanager db upgrade`")


def _rebuild(autoincrement: bool) -> None:
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    _foreign_keys_off(bind)
    _rebuild(True)
    problems = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if problems:
        raise RuntimeError(f"migration 0007: rows refer to missing rows after the rebuild: {problems[:5]}")
    for table, object_type in TABLES.items():
        seen = [f"SELECT max(id) FROM {table}"]
        if object_type:
            seen.append("SELECT max(CAST(object_id AS INTEGER)) FROM sslm_audit_event "
                        f"WHERE object_type = '{object_type}' AND object_id GLOB '[0-9]*' "
                        "AND object_id NOT GLOB '*[^0-9]*'")
        if table == "sslm_certificate":
            seen += [f"SELECT max({column}) FROM {other}" for other, column in CERTIFICATE_ID_COLUMNS]
        highest = max((bind.exec_driver_sql(query).scalar() or 0 for query in seen), default=0)
        if not highest:
            continue
        bind.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
        bind.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, highest))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    _foreign_keys_off(bind)
    _rebuild(False)
