"""Roles: who may do what, checked in one place for the pages, the commands and embedded mode.

A role is a named set of permissions, and the permissions are the API's token scopes (read,
write, issue, keys:read, admin; services/permissions.py holds both): a token's scopes and its
user's role are one model, and a token never holds more than its user's role.

Who is acting: in a web request, the signed-in user's role (standalone) or the role the host's
SSLMANAGER_AUTHORIZE hook returned (embedded); in a command, SSLMANAGER_CLI_USER's role when set
(else the OS user running it, who holds the data key anyway: admin); the scheduler and
background work act as the system, which may do everything.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from flask import g, has_request_context

from ..errors import SSLManagerError
from .permissions import ADMIN, ISSUE, KEYS_READ, READ, ROLES, SCOPE_HELP, WRITE, within_role  # noqa: F401

PERMISSION_HELP = {**SCOPE_HELP, READ: "see certificates, zones and the audit log",
                   KEYS_READ: "download private keys"}
VIEWER, OPERATOR, ADMIN_ROLE = "viewer", "operator", "admin"
ROLE_HELP = {VIEWER: "reads everything but secrets and keys",
             OPERATOR: "also creates, issues, renews, revokes, deploys and downloads keys",
             ADMIN_ROLE: "also CA profiles, zones, notification channels, users, tokens and settings"}
SYSTEM = "system"  # the scheduler, background threads, a command without SSLMANAGER_CLI_USER
_acting_role: ContextVar[str | None] = ContextVar("sslmanager_role", default=None)


class Refused(SSLManagerError):
    """The acting role lacks a permission (a page answers 403, a command exits 1)."""

    def __init__(self, permission: str, role: str | None):
        who = f"the {role} role" if role else "you"
        super().__init__(f"Not allowed: {who} may not {PERMISSION_HELP[permission]}.",
                         hint="Ask an admin for a role that allows it.")
        self.permission = permission
        self.role = role


def check_role(role: str) -> str:
    """The role's normalised name; ValueError naming the choices for anything else."""
    name = str(role or "").strip().lower()
    if name not in ROLES:
        raise ValueError(f"Unknown role {role!r}: choose viewer, operator or admin.")
    return name


@contextmanager
def acting_role(role: str) -> Iterator[None]:
    """Run this block as `role` (a command run for a user, a test)."""
    token = _acting_role.set(role)
    try:
        yield
    finally:
        _acting_role.reset(token)


def set_request_role(role: str | None) -> None:
    """The web guard's verdict for this request (None: nobody signed in)."""
    g.setdefault("sslmanager", {})["role"] = role


def current_role() -> str | None:
    """The acting role: this request's, else the context's, else the system's."""
    role = _acting_role.get()
    if role:
        return role
    if has_request_context():
        return (g.get("sslmanager") or {}).get("role")
    return SYSTEM


def can(permission: str, role: str | None = None) -> bool:
    """Does the role (default: the acting one) hold `permission`?"""
    role = current_role() if role is None else role
    return role == SYSTEM or permission in ROLES.get(role or "", frozenset())


def require(permission: str) -> None:
    """Raise Refused unless the acting role holds `permission`. The caller (the page guard,
    the command guard) records the refusal in the audit log."""
    if not can(permission):
        raise Refused(permission, current_role())
