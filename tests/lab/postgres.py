"""A throwaway PostgreSQL cluster on loopback, trust auth, run as the `postgres` user."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal

from .proc import LabServerError, ManagedServer, free_port


def postgres_bindir() -> str:
    """Directory with initdb/postgres: $PG_BINDIR, else the newest /usr/lib/postgresql/*/bin."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    candidates = glob.glob("/usr/lib/postgresql/*/bin/postgres")
    if not candidates:
        raise LabServerError(
            "PostgreSQL server binaries not found: install them with "
            "`apt-get install -y postgresql` (or set PG_BINDIR)"
        )
    newest = max(candidates, key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(newest)


class Postgres(ManagedServer):
    """initdb + postgres in a temp dir; TCP on 127.0.0.1:port, unix socket in the workdir."""

    name = "postgres"
    host = "127.0.0.1"
    user = "postgres"
    # SIGINT is PostgreSQL's "fast shutdown"; SIGTERM would wait for clients to disconnect.
    stop_signal = signal.SIGINT

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()

    def _launch(self) -> None:
        bindir = postgres_bindir()
        run_as = self._run_as()
        data = self.workdir / "data"
        self._run_setup(
            [
                f"{bindir}/initdb",
                "-D",
                str(data),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            **run_as,
        )
        # Durability is pointless for a throwaway cluster; skipping fsync makes tests faster.
        self._spawn(
            [
                f"{bindir}/postgres",
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-h",
                self.host,
                "-k",
                str(self.workdir),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            **run_as,
        )

    def _run_as(self) -> dict:
        """Popen kwargs to drop to the postgres user when root (PostgreSQL refuses root)."""
        if os.geteuid() != 0:
            return {}
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise LabServerError(
                "no `postgres` system user: install `postgresql` (or run the tests unprivileged)"
            ) from None
        # mkdtemp made the workdir root-only (0700); initdb and the socket need to write there.
        # The log file needs no chown: the child inherits it already open.
        shutil.chown(self.workdir, account.pw_uid, account.pw_gid)
        return {
            "user": account.pw_uid,
            "group": account.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": account.pw_dir},
        }

    def _ready(self) -> bool:
        with self.connect():
            return True

    def connect(self, dbname: str = "postgres", **kwargs):
        """A psycopg connection (autocommit) to `dbname`."""
        import psycopg  # only tests using Postgres need psycopg installed

        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=dbname,
            connect_timeout=2,
            autocommit=True,
            **kwargs,
        )

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL using the psycopg (v3) driver."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URL, for psycopg.connect() and psql."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name; return its SQLAlchemy URL."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE name, disconnecting any session still using it."""
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
