"""`sslmanager db copy`: the whole database, as one consistent snapshot, into another database
(SQLite → PostgreSQL when an instance outgrows one machine, PostgreSQL → SQLite to go back).

The target gets our schema from our own migrations, then every table's rows in foreign-key
order with their ids, then counters that continue past those ids. Secrets move as the
ciphertext they are stored as: the rows are read and written through copies of the tables whose
encrypted columns are plain text, so nothing is decrypted and the data key never enters either
database. Row counts and a checksum per table, read back from the target, prove the copy.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from flask import current_app

from .. import db, instance
from ..errors import ConfigError, Conflict
from ..models import Base, Encrypted

BATCH = 1000


@dataclass
class TableCopy:
    name: str
    rows: int
    checksum: str


@dataclass
class CopyResult:
    target: str  # the URL, password hidden
    tables: list[TableCopy]

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables)


def raw_tables() -> list[sa.Table]:
    """Our tables in foreign-key order (parents first), with each encrypted column typed as the
    plain text it is stored as: read and written through these, a secret stays ciphertext."""
    meta = sa.MetaData()
    tables = []
    for table in Base.metadata.sorted_tables:
        columns = [sa.Column(c.name, _raw_type(c), primary_key=c.primary_key, autoincrement=False)
                   for c in table.columns]
        tables.append(sa.Table(table.name, meta, *columns))
    return tables


def _raw_type(column: sa.Column) -> sa.types.TypeEngine:
    if isinstance(column.type, Encrypted):
        return sa.Text()
    if isinstance(column.type, sa.JSON) and column.nullable:
        # SQL NULL stays NULL (not the JSON text `null`); a NOT NULL column keeps JSON `null`
        return sa.JSON(none_as_null=True)
    return column.type


def open_engine(url: str) -> sa.engine.Engine:
    """An engine on another database; a new SQLite file is made private (0600) first, as the
    app's own is. Foreign keys stay off on it: rows go in parents first, and a --force clear
    deletes children first."""
    hint = ("Give e.g. postgresql+psycopg://user:password@host/dbname or "
            "sqlite:////absolute/path/sslmanager.db.")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:  # not echoed: it may hold a password
        raise ConfigError("--to: not a database URL.", hint=hint) from None
    try:
        engine = sa.create_engine(parsed)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError):
        raise ConfigError(f"--to: {shown(parsed)} is not a database URL SSL Manager can use "
                          f"(no driver {parsed.drivername!r}).", hint=hint) from None
    if engine.dialect.name == "sqlite" and parsed.database:
        instance.private_sqlite_file(parsed.database)
    return engine


def shown(url: sa.engine.URL | str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


@contextmanager
def snapshot(engine: sa.engine.Engine) -> Iterator[sa.Connection]:
    """One read transaction over the whole database: every table as of the same moment, while
    the service may go on writing. PostgreSQL: REPEATABLE READ. SQLite: Python's driver only
    begins a transaction before a write, so BEGIN is sent by hand; the first read then fixes
    the snapshot (WAL keeps it while others write)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="REPEATABLE READ",
                                                postgresql_readonly=True) as conn:
            with conn.begin():
                yield conn
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("BEGIN")
        try:
            yield conn
        finally:
            conn.rollback()


def row_counts(conn: sa.Connection) -> dict[str, int]:
    """Rows per table of ours that exist in `conn`'s database and hold any."""
    present = set(sa.inspect(conn).get_table_names())
    counts = {}
    for table in raw_tables():
        if table.name in present:
            n = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            if n:
                counts[table.name] = n
    return counts


def describe_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n} rows)" for name, n in counts.items())


def _normal(value: Any) -> Any:
    """A value as both databases give it back: datetimes in UTC, JSON with sorted keys."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


def _for_target(row: sa.Row) -> dict[str, Any]:
    # A PostgreSQL timestamp comes back in the session's time zone; SQLite stores the wall
    # clock without its zone, so every datetime goes over as UTC.
    return {k: (v.astimezone(timezone.utc) if isinstance(v, datetime) and v.tzinfo else v)
            for k, v in row._mapping.items()}


def _ordered(table: sa.Table) -> sa.Select:
    return sa.select(table).order_by(*table.primary_key.columns)


def checksum(conn: sa.Connection, table: sa.Table) -> tuple[int, str]:
    """(rows, sha256 over the rows in primary-key order, values normalised)."""
    digest, rows = hashlib.sha256(), 0
    for row in conn.execution_options(yield_per=BATCH).execute(_ordered(table)):
        digest.update(json.dumps([_normal(v) for v in row], sort_keys=True, default=str).encode())
        digest.update(b"\n")
        rows += 1
    return rows, digest.hexdigest()


def _has_id(table: sa.Table) -> bool:
    """A table whose rows are numbered (lease and setting rows are named instead)."""
    return "id" in table.columns and isinstance(table.c.id.type, sa.Integer)


def _counter(conn: sa.Connection, table: sa.Table) -> int:
    """The highest id the source's counter for `table` has handed out (0 when none): past the
    largest id still there when rows at the end were deleted, and never to be handed out again."""
    if not _has_id(table):
        return 0
    if conn.dialect.name == "postgresql":
        seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}).scalar()
        if not seq:
            return 0
        last, called = conn.execute(sa.text(f"SELECT last_value, is_called FROM {seq}")).one()
        return last if called else last - 1
    if not conn.execute(sa.text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'")).first():
        return 0
    return conn.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"),
                        {"t": table.name}).scalar() or 0


def _set_counter(conn: sa.Connection, table: sa.Table, highest: int) -> None:
    """The target's next id for `table` comes after `highest`."""
    if not _has_id(table):
        return
    if conn.dialect.name == "postgresql":
        seq = conn.execute(sa.text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name}).scalar()
        if seq:
            conn.execute(sa.text("SELECT setval(:s, :n, :called)"),
                         {"s": seq, "n": max(highest, 1), "called": highest > 0})
        return
    if Base.metadata.tables[table.name].kwargs.get("sqlite_autoincrement"):
        # The inserts with their ids already moved it to the largest id; a deleted larger one
        # from the source still counts (migration 0007's promise: an id is never given twice).
        conn.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t"), {"t": table.name})
        if highest:
            conn.execute(sa.text("INSERT INTO sqlite_sequence (name, seq) VALUES (:t, :n)"),
                         {"t": table.name, "n": highest})


def copy_to(url: str, *, force: bool = False, batch: int = BATCH) -> CopyResult:
    """Copy this app's database into the database at `url` (see the module's docstring).
    Refuses a target holding any of our rows unless `force` (they are deleted first)."""
    source = current_app.extensions["sslmanager"].engine
    if db.current_revision(source) != db.head_revision():
        raise ConfigError("The database to copy is not at this version's schema.",
                          hint="Run `sslmanager db upgrade` first, then copy.")
    target = open_engine(url)
    try:
        if shown(target.url) == shown(source.url):
            raise Conflict("--to names the database SSL Manager already uses: copy it to another one.")
        return _copy(source, target, force=force, batch=max(1, batch))
    finally:
        target.dispose()


def _copy(source: sa.engine.Engine, target: sa.engine.Engine, *, force: bool, batch: int) -> CopyResult:
    try:
        with target.connect() as conn:
            found = row_counts(conn)
    except sa.exc.OperationalError as exc:
        raise ConfigError(f"Cannot open the target database {shown(target.url)}: "
                          f"{str(exc.orig).strip()}",
                          hint="Create the database (and its user) first; check host, port and password.") from None
    if found and not force:
        raise Conflict(f"The target database is not empty: {describe_counts(found)}.",
                       hint="Copy into an empty database, or add --force to delete those rows first.")
    db.upgrade(engine=target)
    tables = raw_tables()
    copied: list[TableCopy] = []
    with snapshot(source) as src, target.begin() as dst:
        for table in reversed(tables):  # children first
            dst.execute(table.delete())
        for table in tables:
            copied.append(_copy_table(src, dst, table, batch))
    _verify(target, tables, copied)
    return CopyResult(shown(target.url), copied)


def _copy_table(src: sa.Connection, dst: sa.Connection, table: sa.Table, batch: int) -> TableCopy:
    digest, rows = hashlib.sha256(), 0
    try:
        result = src.execution_options(yield_per=batch).execute(_ordered(table))
        for part in result.partitions(batch):
            for row in part:
                digest.update(json.dumps([_normal(v) for v in row], sort_keys=True,
                                         default=str).encode())
                digest.update(b"\n")
            dst.execute(table.insert(), [_for_target(row) for row in part])
            rows += len(part)
    except sa.exc.DBAPIError as exc:
        # e.g. a value longer than its column: SQLite never enforced the length, PostgreSQL does
        raise Conflict(f"Copying {table.name} failed after {rows} rows: {str(exc.orig).strip()}",
                       hint="Nothing was kept in the target (the copy is one transaction); fix "
                            "that row on the source and copy again.") from None
    largest = (src.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) if _has_id(table) else 0
    _set_counter(dst, table, max(_counter(src, table), largest))
    return TableCopy(table.name, rows, digest.hexdigest())


def _verify(target: sa.engine.Engine, tables: list[sa.Table], copied: list[TableCopy]) -> None:
    """Read every table back from the target: the same rows, the same checksum."""
    with target.connect() as conn:
        for table, expected in zip(tables, copied):
            rows, digest = checksum(conn, table)
            if (rows, digest) != (expected.rows, expected.checksum):
                raise Conflict(f"The copy of {table.name} differs from the source: {rows} rows "
                               f"read back for {expected.rows} copied (checksum {digest[:12]} for "
                               f"{expected.checksum[:12]}).",
                               hint="Nothing changed on the source; run the copy again with --force. "
                                    "If it persists, report it with both database versions.")


def switch_instructions(result: CopyResult) -> list[str]:
    """What the operator does next, in order."""
    state = current_app.extensions["sslmanager"]
    config_file = os.path.join(state.instance_path, "config.py")
    from_env = bool(current_app.config.get("SSLMANAGER_ENCRYPTION_KEY"))
    key = ("the same SSLMANAGER_ENCRYPTION_KEY" if from_env
           else f"the same data key ({os.path.join(state.instance_path, 'encryption.key')}; copy it "
                "to every node's instance folder)")
    return [
        "To switch SSL Manager to the copy:",
        ("  1. stop `sslmanager run` and `sslmanager worker` (rows written after the copy began "
         "are not in it: with the service running, copy again with --force once it is stopped);"),
        f"  2. set SSLMANAGER_DATABASE_URL = \"{result.target}\" in {config_file}",
        (f"     (or SSLMANAGER_DATABASE_URL={result.target} in the service's environment),"
         " with the real password in place of ***;"),
        f"  3. keep {key}: the secrets were copied encrypted under it;",
        "  4. start the service again; `sslmanager db current` shows the revision it now uses.",
    ]
