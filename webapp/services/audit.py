"""The audit log: who did what, when. Callers pass summaries that never hold secrets.

Who acted comes from the context that started the work, not from the code that does it (the
same issuance runs for the scheduler, a `cert process` and a button): the scheduler, the
control socket and background threads set it with `acting_as`; a web request names its admin;
anything else is a command run by an OS user ("cli:<user>")."""
from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from flask import has_request_context
from sqlalchemy import func, or_, select

from .. import db
from ..models import AuditEvent, CAProfile, Certificate, TechZone
from .auth import actor_name

SCHEDULER = "scheduler"
_acting: ContextVar[str | None] = ContextVar("sslmanager_audit_actor", default=None)


def os_user(uid: int | None = None) -> str:
    """The login name of `uid` (default: this process's user), or the number when it has none."""
    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def cli_actor(uid: int | None = None) -> str:
    """The actor of a command run by a user: "cli:root"."""
    return f"cli:{os_user(uid)}"


def start_acting(actor: str) -> Token:
    """Audit what follows in this context as `actor` until stop_acting(the returned token): for
    code that cannot wrap a block, such as a request's before and teardown hooks."""
    return _acting.set(actor)


def stop_acting(token: Token) -> None:
    try:
        _acting.reset(token)
    except ValueError:  # set in another context (never in practice): clear it instead
        _acting.set(None)


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Audit what happens in this block (and in work it hands to threads that copy the
    context, see slots.per_ca) as `actor`."""
    token = start_acting(actor)
    try:
        yield
    finally:
        stop_acting(token)


def current_actor() -> str:
    """Who is acting here: the context's actor, the signed-in admin, else this OS user's CLI."""
    actor = _acting.get()
    if actor:
        return actor
    if has_request_context():
        return actor_name()
    return cli_actor()


def record(action: str, object_type: str = "", object_id: object = "", summary: str = "",
           actor: str | None = None) -> AuditEvent:
    """Add an audit event to the session; the caller's commit saves it with the change."""
    if actor is None:
        actor = current_actor()
    event = AuditEvent(actor=actor, action=action, object_type=object_type,
                       object_id=str(object_id or ""), summary=summary)
    db.session().add(event)
    return event


# -- reading the log -------------------------------------------------------------------------

def search(action: str = "", actor: str = "", object_type: str = "", query: str = "",
           page: int = 1, per_page: int = 50, *, where=None):
    """One page of events (newest first) and the total, filtered on the server; `where` (a
    permission's restriction) narrows it further."""
    stmt = select(AuditEvent)
    if where is not None:
        stmt = stmt.where(where)
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if object_type:
        stmt = stmt.where(AuditEvent.object_type == object_type)
    query = query.strip()
    if query:
        stmt = stmt.where(or_(*(column.icontains(query, autoescape=True) for column in
                                (AuditEvent.summary, AuditEvent.action, AuditEvent.actor)),
                              AuditEvent.object_id == query))
    s = db.session()
    total = s.scalar(select(func.count()).select_from(stmt.subquery()))
    rows = s.execute(stmt.order_by(AuditEvent.id.desc())
                     .offset((max(page, 1) - 1) * per_page).limit(per_page)).scalars().all()
    return rows, total


def choices() -> dict[str, list[str]]:
    """The distinct actions, actors and object types in the log, for the filter menus."""
    s = db.session()
    return {name: [v for v in s.scalars(select(column).distinct().order_by(column).limit(500)) if v]
            for name, column in (("actions", AuditEvent.action), ("actors", AuditEvent.actor),
                                 ("object_types", AuditEvent.object_type))}


def live_objects(events) -> set[tuple[str, str]]:
    """Which (object_type, object_id) of these events still exist: one query per type."""
    models = {"certificate": Certificate, "ca_profile": CAProfile, "zone": TechZone}
    wanted: dict[str, set[int]] = {}
    for event in events:
        if event.object_type in models and event.object_id.isdigit():
            wanted.setdefault(event.object_type, set()).add(int(event.object_id))
    live = set()
    for kind, ids in wanted.items():
        model = models[kind]
        live |= {(kind, str(i)) for i in db.session().scalars(select(model.id).where(model.id.in_(ids)))}
    return live
