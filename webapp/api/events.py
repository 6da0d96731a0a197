"""/api/v1/events: the audit log (services.audit.search), newest first. A restricted token
sees only its certificates' events."""
from __future__ import annotations

from sqlalchemy import String, cast, select

from ..models import AuditEvent, Certificate
from ..services import audit, permissions
from ..services.permissions import READ
from .base import bp
from . import schemas as s
from .common import operation, paged, principal


def _event(e) -> dict:
    return {"id": e.id, "at": e.at, "actor": e.actor, "action": e.action, "object_type": e.object_type,
            "object_id": e.object_id, "summary": e.summary}


@bp.route("/events", tags=["Events"])
@operation(READ, "The audit log")
@bp.arguments(s.EventQuery, location="query")
@bp.response(200, s.EventPage)
def list_events(query):
    """Who did what and when; filter by action, actor (e.g. token:web-03), object_type, q."""
    where = None
    visible = permissions.visible_certificates(principal())
    if visible is not None:
        where = (AuditEvent.object_type == "certificate") & AuditEvent.object_id.in_(
            select(cast(Certificate.id, String)).where(visible))
    page, per_page = query["page"], query["per_page"]
    rows, total = audit.search(query.get("action", ""), query.get("actor", ""), query.get("object_type", ""),
                               query.get("q", ""), page, per_page, where=where)
    return paged(rows, total, page, per_page, _event)
