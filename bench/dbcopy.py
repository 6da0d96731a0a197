"""Moving a large instance: `db copy` SQLite → PostgreSQL and back, and `backup` on each, with
100,000 certificates (the rows of bench.pages: versions, timelines, audit events).

    .venv/bin/python -m bench.dbcopy [--certs 100000] [--batch 1000]

Starts a throwaway PostgreSQL (tests/lab), fills a temporary SQLite instance directly (bulk
INSERTs), then times each step once in the same process. The copy's time includes applying
the migrations to the target, the row-by-row checksum of the source and the read-back
verification of the target.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _timed(label: str, fn):
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    return label, seconds, result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args(argv)

    from bench.pages import make_app, populate
    from tests.lab.postgres import Postgres
    from webapp import db
    from webapp.services import backup, dbcopy

    with tempfile.TemporaryDirectory(prefix="sslm-bench-dbcopy-") as tmp, Postgres() as postgres:
        tmp_path = Path(tmp)
        app = make_app(tmp_path / "sqlite", None)
        started = time.perf_counter()
        made = populate(app, args.certs)
        print(f"bench.dbcopy: {made['certificates']} certificates, {made['versions']} versions, "
              f"{made['timeline']} timeline lines, {made['audit']} audit events inserted in "
              f"{time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.2f}")
        pg_url = postgres.create_database("bench_copy")
        rows = []
        with app.app_context():
            rows.append(_timed("backup, SQLite (online backup API)", lambda: backup.backup(str(tmp_path / "s.sqlite3"))))
            rows.append(_timed("db copy SQLite → PostgreSQL", lambda: dbcopy.copy_to(pg_url, batch=args.batch)))
        (tmp_path / "pg").mkdir(mode=0o700)  # the second node: the same data key, the copied database
        shutil.copy(tmp_path / "sqlite" / "encryption.key", tmp_path / "pg" / "encryption.key")
        on_pg = make_app(tmp_path / "pg", pg_url)
        with on_pg.app_context():
            rows.append(_timed("backup, PostgreSQL (pg_dump)", lambda: backup.backup(str(tmp_path / "p.pgdump"))))
            rows.append(_timed("db copy PostgreSQL → SQLite", lambda: dbcopy.copy_to(
                f"sqlite:///{tmp_path / 'back.db'}", batch=args.batch)))
        print()
        print(f"{'step':40} {'seconds':>8}  what")
        for label, seconds, result in rows:
            what = (f"{result.rows} rows in {len(result.tables)} tables, verified"
                    if isinstance(result, dbcopy.CopyResult) else f"{result.size / 2**20:.0f} MiB")
            print(f"{label:40} {seconds:8.1f}  {what}")
        print(f"  load average {os.getloadavg()[0]:.2f} at the end")
        for each in (app, on_pg):
            with each.app_context():
                db.session().remove()
                each.extensions["sslmanager"].engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
