"""`sslmanager renew` and `sslmanager worker`."""
from __future__ import annotations

import signal
import sys
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from ..models import Certificate
from ..services import bulk
from .base import commands, log_to_stderr


@click.command("renew", help="Renew certificates now: the due ones (--due, default), every "
                             "Active one (--all), or the given IDs, a few at a time per CA "
                             "(SSLMANAGER_CONCURRENCY_PER_CA, or --concurrency). --dry-run only "
                             "lists them. Exits 1 if any renewal failed.")
@click.argument("ids", nargs=-1, type=int)
@click.option("--due", "mode", flag_value="due", default=True)
@click.option("--all", "mode", flag_value="all")
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Orders in flight per CA profile (default: SSLMANAGER_CONCURRENCY_PER_CA).")
@click.option("--dry-run", is_flag=True)
@with_appcontext
def renew(ids, mode, concurrency, dry_run) -> None:
    # start-up: each command loads what it needs when it runs
    from .. import db
    from ..services import renewals
    if ids:
        targets = list(ids)
    elif mode == "all":
        targets = [c.id for c in db.session().query(Certificate).filter_by(status="active")]
    else:
        targets = renewals.due(limit=100_000)
    if not targets:
        click.echo("Nothing to renew.")
        return
    if dry_run:
        for cert_id in targets:
            cert = db.session().get(Certificate, cert_id)
            if cert is None:
                click.echo(f"{cert_id}: no such certificate")
                continue
            when = f"{cert.renew_at:%Y-%m-%d %H:%M} UTC, {cert.renew_reason}" if cert.renew_at else "-"
            click.echo(f"would renew {cert_id} ({', '.join(cert.domains)}): renewal time {when}")
        return
    db.session().remove()  # the pool's threads open their own sessions
    counts = {"renewed": 0, "failed": 0, "skipped": 0}

    def done(cert_id: int, status: str, domains: list[str], error: str) -> None:
        label = f"{cert_id} ({', '.join(domains)})" if domains else str(cert_id)
        if status == "busy":  # claimed by the scheduler or another command: it is being done
            counts["skipped"] += 1
            click.echo(f"{label}: skipped, another process is working on it")
        elif status == "active" and not error:
            counts["renewed"] += 1
            click.echo(f"{label}: renewed")
        else:
            counts["failed"] += 1
            click.echo(f"{label}: FAILED: {error or status}")

    per_ca = concurrency or current_app.config["SSLMANAGER_CONCURRENCY_PER_CA"]
    bulk.renew_many(current_app._get_current_object(), targets, limit=per_ca, done=done)  # type: ignore[attr-defined]
    click.echo(f"{counts['renewed']} renewed, {counts['failed']} failed"
               + (f", {counts['skipped']} skipped." if counts["skipped"] else "."))
    sys.exit(1 if counts["failed"] else 0)


@click.command("worker", help="Run the scheduler alone (renewals, CNAME polling, sweeps) — "
                              "beside `gunicorn wsgi:app`, which then serves pages only. Any "
                              "number of workers on one database is safe: a lease picks one. "
                              "It also takes the `cert process` jobs the command hands over.")
@with_appcontext
def worker() -> None:
    # start-up: each command loads what it needs when it runs
    from ..services import control_server, scheduler
    log_to_stderr()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    sched = scheduler.start(app)
    control = control_server.start(app)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("SSL Manager worker running (Ctrl-C to stop).")
    stop.wait()
    if control:
        control.close()
    sched.shutdown()


commands.extend([renew, worker])
