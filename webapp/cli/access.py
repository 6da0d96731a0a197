"""Which permission each command needs (services/roles.py), checked once around every command.

A command acts as the user named by SSLMANAGER_CLI_USER when it is set (a shared host where
people run `sslmanager` through sudo with their own name set), with that user's role and name
in the audit log; refused, it exits 1 and the audit log says so. Without it the command runs as
the OS user, who can read the data key anyway: no role applies. A command missing here needs
`admin` (tests/cli/test_roles.py fails on any missing one)."""
from __future__ import annotations

import functools
import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import select

from .. import db
from ..models import Admin
from ..services import audit, roles
from ..services.roles import ADMIN, ISSUE, KEYS_READ, READ, WRITE
from .base import fail

COMMANDS: dict[str, str] = {
    "ca list": READ, "ca add": ADMIN, "ca edit": ADMIN, "ca test": ADMIN, "ca delete": ADMIN,
    "cert list": READ, "cert show": READ, "cert add": WRITE, "cert revoke": WRITE, "cert fallback": WRITE,
    "cert process": ISSUE, "cert export": KEYS_READ,
    "renew": ISSUE, "preflight": READ,
    "zone list": READ, "zone add": ADMIN, "zone edit": ADMIN, "zone delete": ADMIN, "zone check": ADMIN,
    "dns serve": ADMIN, "dns sweep": ADMIN,
    "notify list": READ, "notify test": ADMIN,
    "user list": ADMIN, "user create": ADMIN, "user disable": ADMIN, "user enable": ADMIN,
    "user reset": ADMIN, "user role": ADMIN, "user sessions": ADMIN,
    "token create": ADMIN, "token list": ADMIN, "token revoke": ADMIN,
    "create-admin": ADMIN, "disable-admin": ADMIN, "enable-admin": ADMIN,
    "rotate-encryption-key": ADMIN, "run": ADMIN, "worker": ADMIN,
    "db upgrade": ADMIN, "db current": ADMIN, "db copy": ADMIN, "backup": ADMIN, "restore": ADMIN,
}


def guard(cmd: click.Command, parent: str = "") -> None:
    """Wrap `cmd` (and every command below it) with the role check."""
    path = f"{parent} {cmd.name}".strip()
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            guard(sub, path)
        return
    callback = cmd.callback

    @functools.wraps(callback)
    def guarded(*args, **kwargs):
        name = current_app.config.get("SSLMANAGER_CLI_USER")
        if not name:
            return callback(*args, **kwargs)
        user = _user(name)
        with roles.acting_role(user.role), audit.acting_as(user.username):
            try:
                roles.require(COMMANDS.get(path, ADMIN))
            except roles.Refused as exc:
                audit.record("refused", "", "", f"sslmanager {path}: needs {exc.permission} (role {user.role})")
                db.session().commit()
                fail(exc)
            return callback(*args, **kwargs)
    cmd.callback = with_appcontext(guarded)


def _user(name: str) -> Admin:
    """SSLMANAGER_CLI_USER's enabled user, or exit 1 saying what is wrong."""
    if not db.schema_is_current():
        click.echo("error: SSLMANAGER_CLI_USER needs an up-to-date database; run this command "
                   "without it (as the instance's owner).", err=True)
        sys.exit(1)
    user = db.session().execute(select(Admin).filter_by(username=str(name).strip())).scalar_one_or_none()
    if user is None or user.disabled:
        click.echo(f"error: SSLMANAGER_CLI_USER: no enabled user named {name!r}.", err=True)
        sys.exit(1)
    return user
