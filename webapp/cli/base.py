"""What every command module shares: the list commands register on, and how a command logs,
fails and refuses to run inside a host. Its own module, so that the command modules never
import the package that loads them."""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from ..errors import SSLManagerError, describe

commands: list[click.Command] = []


# Standalone SSL Manager only: a host panel has its own users and its own server. Left out of
# `flask sslmanager --help` in a host; asked for by name there, they say so.
STANDALONE_ONLY = {
    "create-admin": "SSL Manager admins sign in only to standalone SSL Manager; embedded, the "
                    "panel's own users do, as SSLMANAGER_AUTHORIZE decides.",
    "run": "the panel serves SSL Manager's pages itself; run renewals with "
           "`flask sslmanager worker` beside it.",
}


def command(*args, **kwargs):
    """Declare a command that runs inside an app context."""
    def wrap(fn):
        cmd = click.command(*args, **kwargs)(with_appcontext(fn))
        commands.append(cmd)
        return cmd
    return wrap


def log_to_stderr() -> None:
    """For the long-running commands: SSL Manager's log lines on standard error, one per event
    (a service manager's journal takes them from there), at SSLMANAGER_LOG_LEVEL; other
    libraries' warnings only. Nothing changes when the process already has handlers."""
    # start-up: each command loads what it needs when it runs
    import logging
    if logging.getLogger().handlers:
        return
    level = str(current_app.config["SSLMANAGER_LOG_LEVEL"]).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        click.echo(f"error: SSLMANAGER_LOG_LEVEL: {level!r} is not DEBUG, INFO, WARNING or ERROR",
                   err=True)
        sys.exit(1)
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("sslmanager", "webapp"):
        logging.getLogger(name).setLevel(level)


def standalone_only(name: str) -> None:
    """Stop a standalone-only command inside a host panel, saying why and what to do instead."""
    if not current_app.extensions["sslmanager"].standalone:
        click.echo(f"error: `{name}` is for standalone SSL Manager: {STANDALONE_ONLY[name]}", err=True)
        sys.exit(1)


def fail(exc: SSLManagerError) -> None:
    """Print an error the way an operator wants it and exit 1."""
    for line in describe(exc):
        click.echo(line, err=True)
    sys.exit(1)
