"""`sslmanager notify ...`: notification channels from the command line."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from ..errors import SSLManagerError
from ..services import notifications as service
from .base import commands, fail


@click.group("notify", help="Notification channels: list them, send a test.")
def notify() -> None:
    pass


@notify.command("list", help="List the channels (secrets are never shown).")
@with_appcontext
def list_channels() -> None:
    for c in service.all_channels():
        test = "never tested" if c.last_test_ok is None else ("test sent" if c.last_test_ok else "test failing")
        click.echo(f"{c.id}\t{c.name}\t{c.kind}\t{service.target(c)}\t"
                   f"{'enabled' if c.enabled else 'disabled'}\t{test}")


@notify.command("test", help="Send a test notification through CHANNEL (name or id); exit 0 when sent.")
@click.argument("channel")
@with_appcontext
def test(channel: str) -> None:
    try:
        result = service.send_test(service.by_name(channel))
    except SSLManagerError as exc:
        fail(exc)
    if result.ok:
        click.echo(f"sent: {result.message}")
        return
    click.echo(f"error: not sent: {result.message}", err=True)
    if result.hint:
        click.echo(f"hint: {result.hint}", err=True)
    sys.exit(1)


commands.extend([notify])
