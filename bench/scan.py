"""The no-op scan: 10,000 stored certificates, none due. What one scheduler tick costs when there
is nothing to do (it runs every 5 seconds on every install), and the hourly notification scan.

    .venv/bin/python -m bench.scan [--certs 10000] [--ticks 50] [--database-url URL] [--json OUT]

The data is bench/pages.py's (the same bulk INSERTs: a real-looking install with 10,000
certificates in every status), then nothing is left due: Active renewal times a week or more
ahead, Pending and Processing ones next looked at in an hour. Measured in-process on the
services: `Scheduler(app).tick()` (takes the dispatch lease, marks expired certificates, asks
for due work, dispatches nothing) and `notifications.scan()`, first with no channel, then with
one webhook channel (to a local receiver) in its steady state: the warm-up runs send what is
due (every certificate expiring soon that will not renew, failing, or with a broken
delegation), the measured ones find all of it sent already, as every hourly look after the
first does. Each is run a few times to warm up, then --ticks times; the figures are p50 / p95
wall time and the SQL statements per run (an SQLAlchemy `before_cursor_execute` listener).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pages import make_app, percentile, populate  # noqa: E402
from tests.lab.http import http_server  # noqa: E402

TARGET_TICK_MS = 50  # a tick every 5 s may take 1 % of one CPU at most


def nothing_due(app) -> int:
    """Push every renewal and next look into the future; returns how many are due (0)."""
    from sqlalchemy import update

    from webapp import db
    from webapp.models import Certificate, utcnow
    from webapp.services import pipeline, renewals
    now = utcnow()
    with app.app_context():
        s = db.session()
        s.execute(update(Certificate).where(Certificate.renew_at.is_not(None),
                                            Certificate.renew_at < now + timedelta(days=7))
                  .values(renew_at=now + timedelta(days=7)))
        s.execute(update(Certificate).where(Certificate.status.in_(("pending", "processing")))
                  .values(next_run_at=now + timedelta(hours=1)))
        s.commit()
        due = len(renewals.due()) + len(pipeline.due_for_processing())
        db.session().remove()
    return due


class StatementCounter:
    def __init__(self, engine) -> None:
        from sqlalchemy import event
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args) -> None:
        self.count += 1


def measure(fn, counter: StatementCounter, runs: int, warmup: int = 3) -> tuple[list[float], int]:
    for _ in range(warmup):
        fn()
    times, before = [], counter.count
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times, round((counter.count - before) / runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--certs", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--database-url", help="PostgreSQL instead of a temporary SQLite database")
    parser.add_argument("--json", help="also write the rows in bench.run_all's JSON shape")
    args = parser.parse_args(argv)

    from webapp import db
    from webapp.services import claims, notifications
    from webapp.services.scheduler import Scheduler
    with tempfile.TemporaryDirectory(prefix="sslm-bench-scan-") as tmp:
        app = make_app(Path(tmp) / "instance", args.database_url)
        made = populate(app, args.certs)
        due = nothing_due(app)
        with app.app_context():
            engine = app.extensions["sslmanager"].engine
        backend = engine.dialect.name
        counter = StatementCounter(engine)
        scheduler = Scheduler(app)  # its jobs, not started: each run is called here

        def tick() -> None:
            assert scheduler.tick() == 0, "something was due"

        def scan() -> None:
            with app.app_context():
                claims.take_lease("notify-scan", seconds=60)
                notifications.scan()
                db.session().remove()
        tick_ms, tick_sql = measure(tick, counter, args.ticks)
        scan_ms, scan_sql = measure(scan, counter, max(5, args.ticks // 5))
        received = []
        with http_server(lambda request: (received.append(1) or 204, {}, b"")) as base:
            with app.app_context():
                app.config["SSLMANAGER_ALLOW_PRIVATE_ADDRESSES"] = True  # the receiver is local
                notifications.save_channel(None, "webhook", {"name": "ops", "enabled": "1",
                                                             "url": f"{base}/hook", "secret": "s" * 32})
                db.session().remove()
            hooked_ms, hooked_sql = measure(scan, counter, max(5, args.ticks // 5), warmup=2)
        scheduler.shutdown()
        engine.dispose()

    rows = []
    for label, times, sql, target in (
            ("scheduler tick (every 5 s)", tick_ms, tick_sql, TARGET_TICK_MS),
            ("notification scan (hourly), no channel", scan_ms, scan_sql, None),
            (f"notification scan, one webhook channel, {len(received)} sent before (steady state)",
             hooked_ms, hooked_sql, None)):
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        check = (f"p95 < {target} ms: {'PASS' if p95 < target else 'FAIL'}" if target else "")
        rows.append({"figure": f"{label}: p50 / p95, SQL statements per run",
                     "sslm": f"{p50:.1f} / {p95:.1f} ms, {sql} statements", "peer1": "", "peer2": "",
                     "check": check})
    header = [f"scan: {made['certificates']} certificates on {backend}, {due} due; "
              f"{args.ticks} ticks after 3 warm-up, in-process; load average "
              f"{os.getloadavg()[0]:.2f} at the end"]
    print(header[0])
    for row in rows:
        print(f"  {row['figure']:78} {row['sslm']:34} {row['check']}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "header": header, "notes": [],
            "rows": [{"section": f"No-op scan: {made['certificates']:,} certificates, none due"}] + rows,
            "columns": {"sslm": "SSL Manager", "peer1": "", "peer2": ""}}, indent=2))
    return 0 if due == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
