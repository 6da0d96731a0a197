"""Settings → SSL Manager → Audit log: who did what and when, filtered and paginated on the
server. Summaries never hold secrets (services record field names, never values)."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for

from ..services import audit as service
from ..services.inputs import page_number
from .common import htmx

bp = Blueprint("audit", __name__, url_prefix="/audit")

T = "sslmanager/audit/"
OBJECT_LABELS = {"certificate": "Certificate", "ca_profile": "CA profile", "zone": "Technical zone",
                 "admin": "User"}
FILTERS = ("action", "actor", "object_type", "q")


def object_url(event, live: set[tuple[str, str]]) -> str | None:
    """Where the event's object lives now (None once it is deleted)."""
    if (event.object_type, event.object_id) not in live:
        return None
    if event.object_type == "certificate":
        return url_for("sslmanager.certificates.detail", cert_id=int(event.object_id))
    if event.object_type == "ca_profile":
        return url_for("sslmanager.ca_profiles.edit", profile_id=int(event.object_id))
    if event.object_type == "zone":
        return url_for("sslmanager.dns.index")
    return None


@bp.route("/")
def index():
    filters = {name: request.args.get(name, "").strip() for name in FILTERS}
    per_page = current_app.config["SSLMANAGER_PAGE_SIZE"]
    page = page_number(request.args.get("page"))
    events, total = service.search(filters["action"], filters["actor"], filters["object_type"],
                                   filters["q"], page, per_page)
    pages = max(1, -(-total // per_page))
    if page > pages:  # a stale link past the end: show the last page
        page = pages
        events, total = service.search(filters["action"], filters["actor"], filters["object_type"],
                                       filters["q"], page, per_page)
    live = service.live_objects(events)
    context = {"events": events, "total": total, "page": page, "pages": pages, "per_page": per_page,
               "filters": filters, "active": {k: v for k, v in filters.items() if v},
               "object_labels": OBJECT_LABELS, "object_url": lambda e: object_url(e, live)}
    if htmx and htmx.target == "audit-rows" and not htmx.history_restore_request:
        return render_template(T + "_rows.html", oob=True, **context)
    return render_template(T + "index.html", choices=service.choices(), **context)
