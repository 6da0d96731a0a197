"""The audit log: who did what, when. Callers pass summaries that never hold secrets."""
from __future__ import annotations

from flask import has_request_context

from .. import db
from ..models import AuditEvent


def record(action: str, object_type: str = "", object_id: object = "", summary: str = "",
           actor: str | None = None) -> AuditEvent:
    """Add an audit event to the session; the caller's commit saves it with the change."""
    if actor is None:
        from .auth import actor_name
        actor = actor_name() if has_request_context() else "cli"
    event = AuditEvent(actor=actor, action=action, object_type=object_type,
                       object_id=str(object_id or ""), summary=summary)
    db.session().add(event)
    return event
