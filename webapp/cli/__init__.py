"""The `sslmanager` console script and `flask sslmanager ...` in a host panel: one set of
commands, registered on the umbrella blueprint's CLI group."""
from __future__ import annotations

import functools
import os
import sys
from datetime import datetime, timezone

import click
from flask import current_app
from flask.cli import AppGroup, ScriptInfo, with_appcontext

from .. import db
from ..crypto import Keyring, decode_key, new_data_key, write_key_file
from ..errors import SSLManagerError, ValidationError
from .base import STANDALONE_ONLY, command, commands, fail, log_to_stderr, standalone_only  # noqa: F401


@command("create-admin", help="Create an admin (or reset one's password). The password is "
                              "read from a prompt, or from standard input with --password-stdin.")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def create_admin(username: str, password_stdin: bool) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services.auth import create_admin as create
    standalone_only("create-admin")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        create(username, password)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Admin {username!r} saved.")


@command("disable-admin", help="Disable an admin: signed out everywhere at once, and no sign-in "
                               "until enable-admin.")
@click.argument("username")
def disable_admin(username: str) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services.auth import set_disabled
    try:
        set_disabled(username, True)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Admin {username!r} disabled; its sessions are ended.")


@command("enable-admin", help="Let a disabled admin sign in again.")
@click.argument("username")
def enable_admin(username: str) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services.auth import set_disabled
    try:
        set_disabled(username, False)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"Admin {username!r} enabled.")




@command("rotate-encryption-key", help="Re-encrypt every stored secret under a new data key. "
         "With the key in instance/encryption.key the file is replaced (the old one is kept "
         "beside it as encryption.key.old-<time>); with SSLMANAGER_ENCRYPTION_KEY, pass the new "
         "key with --new-key and then set it in the environment.")
@click.option("--new-key", help="The new key (urlsafe base64 of 32 bytes). Default: generate.")
def rotate_encryption_key(new_key: str | None) -> None:
    # start-up: each command loads what it needs when it runs
    from ..services.secrets import rotate
    state = current_app.extensions["sslmanager"]
    from_env = bool(current_app.config.get("SSLMANAGER_ENCRYPTION_KEY"))
    if from_env and not new_key:
        click.echo("error: the key comes from SSLMANAGER_ENCRYPTION_KEY; pass --new-key "
                   "(generate one with: python -c \"import base64,os;"
                   "print(base64.urlsafe_b64encode(os.urandom(32)).decode())\").", err=True)
        sys.exit(1)
    new_key = new_key or new_data_key()
    try:
        raw = decode_key(new_key, "--new-key")
    except SSLManagerError as exc:
        fail(exc)
    key_file = os.path.join(state.instance_path, "encryption.key")
    staged = key_file + ".new"
    if not from_env:
        if os.path.exists(staged):
            os.remove(staged)  # a half-finished earlier rotation: its commit never happened
        write_key_file(staged, new_key)  # before the commit, so the new key is never lost
    count = rotate(Keyring(raw, (state.keyring.primary, *state.keyring.others)))
    if not from_env:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        if os.path.exists(key_file):
            os.replace(key_file, f"{key_file}.old-{stamp}")
        os.replace(staged, key_file)
        click.echo(f"Re-encrypted {count} secrets; new key in {key_file}.")
    else:
        click.echo(f"Re-encrypted {count} secrets. Now set SSLMANAGER_ENCRYPTION_KEY to the new key.")


@command("run", help="Serve SSL Manager with a production WSGI server (waitress) and the "
                     "scheduler in the same process; applies pending migrations first. HTTPS with "
                     "--tls-cert and --tls-key, or --tls-from-certificate.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="Serve HTTPS with this PEM "
              "certificate (and chain); reloaded when the file changes.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="The PEM private key of --tls-cert.")
@click.option("--tls-from-certificate", "tls_cert_id", type=int, metavar="ID",
              help="Serve HTTPS with certificate ID managed here; its renewals are picked up "
                   "without a restart.")
def run(host: str, port: int, threads: int, tls_cert: str | None, tls_key: str | None,
        tls_cert_id: int | None) -> None:
    # start-up: each command loads what it needs when it runs
    from .. import server
    from ..models import Admin
    from ..services import scheduler
    from ..services.auth import create_admin as create
    standalone_only("run")
    log_to_stderr()
    db.upgrade()
    if not db.session().query(Admin).first():
        if sys.stdin.isatty():  # first start at a terminal: make the first admin right here
            click.echo("No admin yet. Create the first one now.")
            while True:
                try:
                    create(click.prompt("Username", default="admin"),
                           click.prompt("Password", hide_input=True, confirmation_prompt=True))
                    break
                except ValidationError as exc:
                    for message in exc.errors.values():
                        click.echo(message)
        else:
            click.echo("No admin yet: create one with `sslmanager create-admin NAME` "
                       "(in a checkout: .venv/bin/sslmanager create-admin NAME).")
    # start-up: each command loads what it needs when it runs
    from ..services import control_server
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    app.extensions["sslmanager"].add_pages()
    try:  # before the scheduler starts: a wrong certificate or a taken port stops here
        contexts = _tls_contexts(app, tls_cert, tls_key, tls_cert_id)
        http = server.make_server(app, host, port, threads, contexts)
    except SSLManagerError as exc:
        fail(exc)
    if app.config["SSLMANAGER_SCHEDULER_ENABLED"]:
        scheduler.start(app)
    control = control_server.start(app)
    scheme = "https" if contexts else "http"
    click.echo(f"SSL Manager serving on {scheme}://{host}:{http.effective_port}/")
    try:
        http.run()
    finally:
        http.close()
        if control:
            control.close()


class _HostGroup(AppGroup):
    """`flask sslmanager`: in a host panel its help leaves out the standalone-only commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        app = current_app or (ctx.find_object(ScriptInfo) or ScriptInfo()).load_app()
        if not app.extensions["sslmanager"].standalone:
            names = [name for name in names if name not in STANDALONE_ONLY]
        return names


def _tls_contexts(app, cert: str | None, key: str | None, cert_id: int | None):
    """The certificate source `run` was asked for, or None for plain HTTP."""
    # start-up: each command loads what it needs when it runs
    from .. import server
    if cert_id is not None:
        if cert or key:
            raise ValidationError({"tls": "Use --tls-from-certificate or --tls-cert/--tls-key, not both."})
        return server.ManagedContexts(app, cert_id)
    if bool(cert) != bool(key):
        raise ValidationError({"tls": "--tls-cert and --tls-key go together: give both."})
    return server.FileContexts(cert, key) if cert else None


def register_cli(app) -> None:
    """Commands are on the umbrella blueprint's group (`flask sslmanager ...`)."""
    # start-up: each command loads what it needs when it runs
    from ..blueprints import bp
    if not isinstance(bp.cli, _HostGroup):
        bp.cli = _HostGroup(bp.cli.name)
    for cmd in commands:
        if cmd.name not in bp.cli.commands:
            bp.cli.add_command(cmd)


def _load_subcommands() -> None:
    from . import ca, cert, database, notify, renew, token, zone  # noqa: F401  (each registers its commands)
    for cmd in commands:
        _guard_schema(cmd)


# Commands that take care of the schema themselves, and set-up commands that bring a new
# instance's database up to date before they run; every other one says what to run. A backup
# of an older schema is what one wants before an upgrade; a restore fills an empty database.
SCHEMA_FREE = {"db", "run", "backup", "restore"}
UPGRADES_FIRST = {"create-admin"}


def _guard_schema(cmd: click.Command) -> None:
    """Wrap every command below `cmd` that touches the database with ensure_schema()."""
    if cmd.name in SCHEMA_FREE:
        return
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            _guard_schema(sub)
        return
    callback, upgrade = cmd.callback, cmd.name in UPGRADES_FIRST

    @functools.wraps(callback)
    def guarded(*args, **kwargs):
        ensure_schema(upgrade=upgrade)
        return callback(*args, **kwargs)
    cmd.callback = with_appcontext(guarded)


def ensure_schema(*, upgrade: bool) -> None:
    """A command needs the schema at this version's head: apply the pending migrations
    (upgrade=True), or stop with the exact command to run, never with "no such table"."""
    if db.schema_is_current():
        return
    current, head = db.current_revision(), db.head_revision()
    was = f"at revision {current}" if current else "empty (a new instance)"
    if upgrade:
        db.upgrade()
        click.echo(f"The database was {was}: applied the migrations up to revision {head}.", err=True)
        return
    click.echo(f"error: the database is {was}; this version of SSL Manager needs revision {head}.",
               err=True)
    click.echo("hint: run `sslmanager db upgrade` first (embedded in a host app: "
               "`flask sslmanager db upgrade`); `sslmanager run` applies it by itself.", err=True)
    sys.exit(1)


_load_subcommands()
