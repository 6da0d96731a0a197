"""`sslmanager db ...` (upgrade, current, copy), `sslmanager backup` and `sslmanager restore`:
the schema, and moving and keeping the database (the work is in db, services.dbcopy and
services.backup)."""
from __future__ import annotations

import click
from flask.cli import with_appcontext

from .. import db
from ..errors import SSLManagerError
from .base import command, commands, fail


@click.group("db", help="Database schema migrations, and copying the database elsewhere.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply every pending migration (safe to run again).")
@with_appcontext
def db_upgrade() -> None:
    db.upgrade()
    click.echo(f"Database at revision {db.current_revision()}.")


@db_group.command("current", help="Show the database's revision and the newest one shipped.")
@with_appcontext
def db_current() -> None:
    click.echo(f"database: {db.current_revision() or '(empty)'}; newest: {db.head_revision()}")


commands.append(db_group)


@db_group.command("copy", help="Copy this database, as one consistent snapshot, into another "
                  "(e.g. SQLite to PostgreSQL): schema from our migrations, every row with its id, "
                  "secrets still encrypted under the same key, then verified table by table.")
@click.option("--to", "url", required=True, metavar="URL",
              help="The target, e.g. postgresql+psycopg://user:password@host/dbname or "
                   "sqlite:////srv/sslmanager/instance/sslmanager.db.")
@click.option("--force", is_flag=True, help="Delete the rows a non-empty target holds first.")
@click.option("--batch", default=1000, show_default=True, type=click.IntRange(1, 100000),
              help="Rows per insert.")
@with_appcontext
def db_copy(url: str, force: bool, batch: int) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services import dbcopy
    try:
        result = dbcopy.copy_to(url, force=force, batch=batch)
    except SSLManagerError as exc:
        fail(exc)
    for table in result.tables:
        click.echo(f"  {table.name}: {table.rows} rows, sha256 {table.checksum[:16]}")
    click.echo(f"Copied {result.rows} rows into {result.target}; every table's row count and "
               "checksum match the source.")
    # start-up: each command loads what it needs when it runs
    from ..services.backup import service_running
    running = service_running()
    if running:
        click.echo(f"warning: the database was in use while it was copied ({running}): rows "
                   "written after the copy began are not in it.", err=True)
    for line in dbcopy.switch_instructions(result):
        click.echo(line)


@command("backup", help="Write a consistent snapshot of the database: SQLite's online backup, "
         "or pg_dump on PostgreSQL. The data key is not in it: back it up apart.")
@click.option("--out", type=click.Path(dir_okay=False), help="The snapshot file. Default: "
              "instance/backups/sslmanager-<time>.sqlite3 (or .pgdump).")
def backup(out: str | None) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services import backup as service
    try:
        result = service.backup(out)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Snapshot written to {result.path} ({result.kind}, {result.size} bytes).")
    click.echo(f"Not in it: {service.key_location()}. Back the key up apart (not beside the "
               "snapshot): without it the snapshot's secrets cannot be opened, and with it anyone "
               "holding the snapshot can.")


@command("restore", help="Restore a snapshot made by `sslmanager backup` into this instance's "
         "database, after checking that this instance's data key opens its secrets.")
@click.argument("snapshot", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Replace a database that already holds rows.")
def restore(snapshot: str, force: bool) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services import backup as service
    try:
        result = service.restore(snapshot, force=force)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Restored {snapshot} into {result.target} ({result.rows} rows; {result.secrets} "
               "secrets checked against this instance's key).")
    if result.kept:
        click.echo(f"The database it replaced is kept as {result.kept}.")
