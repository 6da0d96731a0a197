"""`sslmanager user ...`: users and their roles from the command line (an admin's job)."""
from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from ..errors import SSLManagerError
from ..services import auth, sessions, two_factor, users as service
from .base import commands, fail


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@click.group("user", help="Users: list, create, disable, enable, reset, role, sessions.")
def user() -> None:
    pass


@user.command("list", help="List users: name, role, state, two-factor, last sign-in.")
@with_appcontext
def list_users() -> None:
    for u in service.all_users():
        last = u.last_login_at.strftime("%Y-%m-%d %H:%M UTC") if u.last_login_at else "never"
        click.echo(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'enabled'}\t"
                   f"{'2fa' if two_factor.enabled(u) else '-'}\t{last}")


@user.command("create", help="Create a user with a role (viewer, operator or admin). The "
                             "password is read from a prompt, or from standard input with --password-stdin.")
@click.argument("username")
@click.option("--role", default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@with_appcontext
def create(username: str, role: str, password_stdin: bool) -> None:
    try:
        made = service.create(username, _password(password_stdin), role)
    except SSLManagerError as exc:
        fail(exc)
    click.echo(f"User {made.username!r} created as {made.role}.")


def _find(username: str):
    try:
        return service.find(username)
    except SSLManagerError as exc:
        fail(exc)


def _run(action, done: str) -> None:
    try:
        action()
    except SSLManagerError as exc:
        fail(exc)
    click.echo(done)


@user.command("disable", help="Disable a user: signed out everywhere at once (not the last admin).")
@click.argument("username")
@with_appcontext
def disable(username: str) -> None:
    found = _find(username)
    _run(lambda: service.set_disabled(found, True), f"User {username!r} disabled; its sessions are ended.")


@user.command("enable", help="Let a disabled user sign in again.")
@click.argument("username")
@with_appcontext
def enable(username: str) -> None:
    found = _find(username)
    _run(lambda: service.set_disabled(found, False), f"User {username!r} enabled.")


@user.command("reset", help="Set a new password (its sessions end); --two-factor also forgets "
                            "its second factor (a lost phone).")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--two-factor", "forget_2fa", is_flag=True, help="Also forget its TOTP and passkeys.")
@with_appcontext
def reset(username: str, password_stdin: bool, forget_2fa: bool) -> None:
    found = _find(username)
    _run(lambda: service.reset_password(found, _password(password_stdin), forget_2fa=forget_2fa),
         f"New password set for {username!r}; its sessions are ended.")


@user.command("role", help="Change a user's role: viewer, operator or admin (not the last admin's).")
@click.argument("username")
@click.argument("role")
@with_appcontext
def role(username: str, role: str) -> None:
    found = _find(username)
    _run(lambda: service.set_role(found, role), f"User {username!r} is now {role.strip().lower()}.")


@user.command("sessions", help="List a user's active sessions; --revoke ends them all.")
@click.argument("username")
@click.option("--revoke", is_flag=True, help="End every session of the user.")
@with_appcontext
def list_sessions(username: str, revoke: bool) -> None:
    found = _find(username)
    if revoke:
        _run(lambda: service.end_sessions(found), f"Every session of {username!r} is ended.")
        return
    for s in sessions.live(found, auth.now()):
        click.echo(f"{s.id}\t{s.created_at:%Y-%m-%d %H:%M}\t{s.last_seen_at:%Y-%m-%d %H:%M}\t"
                   f"{s.address}\t{s.user_agent}")


commands.extend([user])
