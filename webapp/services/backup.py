"""`sslmanager backup` and `sslmanager restore`: a consistent snapshot of the database, and the
way back from one.

SQLite: the online backup API copies the database page by page inside one read transaction,
while the service goes on. PostgreSQL: pg_dump (its own snapshot), our `sslm_` tables only, in
its custom format; pg_restore puts it back in one transaction. The data key is never in a
snapshot; a restore first opens one secret per key the snapshot's secrets were encrypted under,
and changes nothing when this instance's key cannot.
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from flask import current_app

from .. import config as config_module
from .. import db
from ..errors import ConfigError, Conflict, CryptoError, SSLManagerError
from ..models import Lease, encrypted_columns, utcnow
from . import dbcopy

SQLITE_MAGIC = b"SQLite format 3\x00"
PGDUMP_MAGIC = b"PGDMP"
TOKEN = re.compile(r"enc1:([0-9a-f]{8}):[A-Za-z0-9_=-]+")


@dataclass
class BackupResult:
    path: str
    kind: str  # "SQLite online backup" | "pg_dump custom format"
    size: int


@dataclass
class RestoreResult:
    target: str
    rows: int
    secrets: int       # encrypted values in the snapshot (one per key id was opened)
    kept: str = ""     # where the database it replaced was kept (SQLite)


def _engine() -> sa.engine.Engine:
    return current_app.extensions["sslmanager"].engine


def key_location() -> str:
    """Where this instance's data key lives, for the messages that say to keep it apart."""
    if current_app.config.get("SSLMANAGER_ENCRYPTION_KEY"):
        return "the data key (SSLMANAGER_ENCRYPTION_KEY in the service's environment or config)"
    path = os.path.join(current_app.extensions["sslmanager"].instance_path, "encryption.key")
    return f"the data key ({path})"


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _private_file(path: str) -> None:
    """Create `path` empty with mode 0600: a snapshot holds password hashes and ciphertext."""
    if os.path.exists(path):
        os.remove(path)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def backup(out: str | None = None) -> BackupResult:
    """Write a snapshot of the database to `out` (default: instance/backups/<time>)."""
    engine = _engine()
    sqlite = engine.dialect.name == "sqlite"
    if not out:
        folder = os.path.join(current_app.extensions["sslmanager"].instance_path, "backups")
        os.makedirs(folder, mode=0o700, exist_ok=True)
        out = os.path.join(folder, f"sslmanager-{_stamp()}.{'sqlite3' if sqlite else 'pgdump'}")
    out = os.path.abspath(out)
    if not os.path.isdir(os.path.dirname(out)):
        raise ConfigError(f"--out: the folder {os.path.dirname(out)} does not exist.",
                          hint="Create it first, or give a path in an existing folder.")
    partial = out + ".partial"  # the snapshot appears under its name only once whole
    _private_file(partial)
    try:
        if sqlite:
            source = sqlite3.connect(engine.url.database or "")
            target = sqlite3.connect(partial)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
            kind = "SQLite online backup"
        else:
            _pg(engine, "pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                "--table=sslm_*", f"--file={partial}")
            kind = "pg_dump custom format"
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return BackupResult(out, kind, os.path.getsize(out))


def _pg_tool(name: str) -> str:
    """pg_dump / pg_restore: on PATH (Debian's postgresql-client wrapper picks the newest
    version), else the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    if not candidates:
        raise ConfigError(f"{name} is not installed.",
                          hint="Install PostgreSQL's client tools (Debian: apt-get install "
                               "postgresql-client), at least the server's version.")
    return max(candidates, key=lambda p: int(p.split("/")[4]))


def _pg(engine: sa.engine.Engine, tool: str, *args: str) -> None:
    """Run a PostgreSQL tool on the app's database; the password goes in the environment, not
    on the command line (where `ps` would show it)."""
    url = engine.url
    dsn = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    env = {**os.environ}
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    done = subprocess.run([_pg_tool(tool), *args, f"--dbname={dsn}"], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise SSLManagerError(f"{tool} failed: {done.stderr.strip()[-2000:]}",
                              hint="Check that the database is reachable with the configured URL "
                                   "and that the client tools are at least the server's version.")


def _snapshot_kind(path: str) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PGDUMP_MAGIC):
        return "postgresql"
    raise ConfigError(f"{path} is not a snapshot made by `sslmanager backup` (neither a SQLite "
                      "database nor a pg_dump custom-format file).")


def _sqlite_contents(path: str) -> tuple[str, dict[str, str], int]:
    """(schema revision, one encrypted value per key id, how many encrypted values)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            revision = conn.execute("SELECT version_num FROM sslm_alembic_version").fetchone()
        except sqlite3.DatabaseError:
            revision = None
        if not revision:
            raise ConfigError(f"{path} is a SQLite database but not an SSL Manager one "
                              "(no sslm_alembic_version).")
        samples: dict[str, str] = {}
        total = 0
        for model, attr in encrypted_columns():
            table, column = model.__table__.name, model.__table__.c[attr].name
            try:
                rows = conn.execute(f"SELECT substr({column}, 6, 8), min({column}), count(*) FROM "
                                    f"{table} WHERE {column} IS NOT NULL GROUP BY 1").fetchall()
            except sqlite3.OperationalError:  # an older schema without this column
                continue
            for kid, value, n in rows:
                samples.setdefault(kid, value)
                total += n
        return revision[0], samples, total
    finally:
        conn.close()


def _pgdump_contents(path: str) -> tuple[str, dict[str, str], int]:
    """The same from a pg_dump file, read as the SQL pg_restore would run (nothing touched)."""
    samples: dict[str, str] = {}
    total, revision, in_version = 0, "", False
    # stderr to a file: a pipe left unread could fill and stall pg_restore
    with tempfile.TemporaryFile() as errors, subprocess.Popen(
            [_pg_tool("pg_restore"), "--data-only", "--file=-", path],
            stdout=subprocess.PIPE, stderr=errors, text=True) as process:
        assert process.stdout is not None
        for line in process.stdout:
            if in_version:
                revision, in_version = line.strip(), False
            elif line.startswith("COPY ") and "sslm_alembic_version " in line:
                in_version = True
            for match in TOKEN.finditer(line):
                samples.setdefault(match.group(1), match.group(0))
                total += 1
        if process.wait():
            errors.seek(0)
            raise ConfigError(f"pg_restore cannot read {path}: "
                              f"{errors.read().decode(errors='replace').strip()[-1000:]}")
    if not revision:
        raise ConfigError(f"{path} is a pg_dump file but not of an SSL Manager database "
                          "(no sslm_alembic_version rows).")
    return revision, samples, total


def _check_revision(revision: str) -> None:
    # start-up: Alembic loads only when a revision is compared (see webapp/db.py)
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    try:
        ScriptDirectory.from_config(db._alembic_config()).get_revision(revision)
    except CommandError:
        raise Conflict(f"The snapshot's schema is at revision {revision}, which this version of "
                       "SSL Manager does not know: it was made by a newer version.",
                       hint="Restore it with that version (or newer).") from None


def _check_key(samples: dict[str, str]) -> None:
    """Open one secret per key id; refuse the whole snapshot when one cannot be opened."""
    keyring = current_app.extensions["sslmanager"].keyring
    for kid, token in sorted(samples.items()):
        try:
            keyring.decrypt(token)
        except CryptoError:
            raise CryptoError(
                f"This instance's data key cannot open the snapshot's secrets (they were encrypted "
                f"under key id {kid}). Nothing was changed.",
                hint=f"Put the key of the instance the snapshot came from in place of "
                     f"{key_location()}, then restore again.") from None


def service_running() -> str:
    """Why the database looks in use by a running service ("" when it does not): this
    instance's control socket answers, or a scheduler anywhere holds the dispatch lease."""
    state = current_app.extensions["sslmanager"]
    path = config_module.control_socket(current_app.config, state.instance_path)
    if path and os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1)
        try:
            probe.connect(path)
            return f"a service of this instance listens on {path}"
        except OSError:
            pass
        finally:
            probe.close()
    if sa.inspect(_engine()).has_table("sslm_lease"):
        lease = db.session().get(Lease, "dispatch")
        db.session().rollback()
        if lease is not None and lease.until is not None and lease.until > utcnow():
            return f"a scheduler ({lease.holder}) holds the dispatch lease until {lease.until:%H:%M:%S} UTC"
    return ""


def restore(path: str, *, force: bool = False) -> RestoreResult:
    """Check the snapshot (format, schema, key), then restore it over the app's database."""
    engine = _engine()
    kind = _snapshot_kind(path)
    if kind != engine.dialect.name:
        raise Conflict(f"{path} is a {kind} snapshot but this instance uses {engine.dialect.name}.",
                       hint="Restore it on an instance of the same kind, then move it over with "
                            "`sslmanager db copy --to URL`.")
    state = current_app.extensions["sslmanager"]
    if kind == "sqlite" and not state.standalone and not current_app.config.get("SSLMANAGER_DATABASE_URL"):
        # the file is the host panel's database too: replacing it would replace the panel's rows
        raise Conflict("SSL Manager shares the host panel's SQLite database here: restoring a "
                       "whole-file snapshot would overwrite the panel's own tables.",
                       hint="Restore the file with the panel's own backup procedure.")
    if kind == "sqlite":
        revision, samples, total = _sqlite_contents(path)
    else:
        revision, samples, total = _pgdump_contents(path)
    _check_revision(revision)
    _check_key(samples)
    running = service_running()
    if running:
        raise Conflict(f"The database is in use: {running}.",
                       hint="Stop `sslmanager run` and `sslmanager worker` (on every node), "
                            "restore, then start them again.")
    with engine.connect() as conn:
        found = dbcopy.row_counts(conn)
    if found and not force:
        raise Conflict(f"The database already holds rows: {dbcopy.describe_counts(found)}.",
                       hint="Restore into an empty database, or add --force to replace it"
                            + (" (the replaced SQLite file is kept beside it)." if kind == "sqlite" else "."))
    db.session().remove()
    engine.dispose()  # no connection of ours holds a lock the restore needs
    kept = _restore_sqlite(engine, path, keep=bool(found)) if kind == "sqlite" else ""
    if kind == "postgresql":
        _pg(engine, "pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
            "--single-transaction", "--exit-on-error", path)
    db.upgrade()  # a snapshot from an older version: brought to this one's schema
    with engine.connect() as conn:
        rows = sum(dbcopy.row_counts(conn).values())
    return RestoreResult(dbcopy.shown(engine.url), rows, total, kept)


def _restore_sqlite(engine: sa.engine.Engine, path: str, *, keep: bool) -> str:
    """Copy the snapshot over the live database with the backup API: one write transaction,
    so a reader sees the old database or the new one, never half of each, and the WAL and
    shared-memory files stay consistent (replacing the file under them would not)."""
    live = engine.url.database or ""
    kept = ""
    if keep:
        kept = f"{live}.before-restore-{_stamp()}"
        _private_file(kept)
        current, copy = sqlite3.connect(live), sqlite3.connect(kept)
        try:
            current.backup(copy)
        finally:
            copy.close()
            current.close()
    snapshot, target = sqlite3.connect(f"file:{path}?mode=ro", uri=True), sqlite3.connect(live)
    try:
        snapshot.backup(target)
    finally:
        target.close()
        snapshot.close()
    return kept
