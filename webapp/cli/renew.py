"""`sslmanager renew` and `sslmanager worker`."""
from __future__ import annotations

import signal
import sys
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from ..models import Certificate
from . import commands


@click.command("renew", help="Renew certificates now: the due ones (--due, default), every "
                             "Active one (--all), or the given IDs. --dry-run only lists them.")
@click.argument("ids", nargs=-1, type=int)
@click.option("--due", "mode", flag_value="due", default=True)
@click.option("--all", "mode", flag_value="all")
@click.option("--dry-run", is_flag=True)
@with_appcontext
def renew(ids, mode, dry_run) -> None:
    from .. import db
    from ..services import renewals
    if ids:
        targets = list(ids)
    elif mode == "all":
        targets = [c.id for c in db.session().query(Certificate).filter_by(status="active")]
    else:
        targets = renewals.due()
    failed = 0
    for cert_id in targets:
        cert = db.session().get(Certificate, cert_id)
        label = f"{cert_id} ({', '.join(cert.domains)})" if cert else str(cert_id)
        if dry_run:
            when = f"{cert.renew_at:%Y-%m-%d %H:%M} UTC, {cert.renew_reason}" if cert and cert.renew_at else "-"
            click.echo(f"would renew {label}: renewal time {when}")
            continue
        status = renewals.renew(cert_id, reason="requested")
        cert = db.session().get(Certificate, cert_id)
        ok = status == "active" and cert is not None and not cert.last_error
        failed += not ok
        click.echo(f"{label}: {'renewed' if ok else 'FAILED: ' + (cert.last_error if cert else status)}")
    if not targets:
        click.echo("Nothing to renew.")
    sys.exit(1 if failed else 0)


@click.command("worker", help="Run the scheduler alone (renewals, CNAME polling, sweeps) — "
                              "beside `gunicorn wsgi:app`, which then serves pages only. Any "
                              "number of workers on one database is safe: a lease picks one.")
@with_appcontext
def worker() -> None:
    from ..services import scheduler
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    sched = scheduler.start(app)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    click.echo("SSL Manager worker running (Ctrl-C to stop).")
    stop.wait()
    sched.shutdown()


commands.extend([renew, worker])
