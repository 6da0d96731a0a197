"""DNS Manager: technical zones (health, live TXT values, delegation), adding a zone, the
sweeper, and a certificate's preflight. Thin views over services.dns_manager and zones."""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, abort, redirect, render_template, request, url_for

from .. import db
from ..dns.base import available_providers
from ..errors import Conflict, NotFound, ValidationError
from ..models import TechZone
from ..services import certificates, zones
from ..services import delegation as checks
from ..services import dns_manager as service
from .common import htmx
from .flashes import flash

bp = Blueprint("dns", __name__, url_prefix="/dns")


def _zone(zone_id: int) -> TechZone:
    zone = db.session().get(TechZone, zone_id)
    if zone is None:
        abort(404)
    return zone


def age_text(age: timedelta | None) -> str:
    """'45 s', '12 min', '3 h 5 min', '2 d' ('unknown' without a record of when)."""
    if age is None:
        return "unknown"
    seconds = max(0, int(age.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d"


@bp.route("/")
def index():
    # Delegation asks servers outside our control: each zone loads it after the page.
    views = service.zone_overview(with_delegation=False)
    return render_template("sslmanager/dns/index.html", views=views, age_text=age_text)


@bp.route("/zones/<int:zone_id>/check", methods=["POST"])
def check(zone_id: int):
    zone = _zone(zone_id)
    ok, message = zones.check(zone)
    if htmx:
        return render_template("sslmanager/dns/_zone.html", view=service.zone_view(zone, with_delegation=False),
                               age_text=age_text)
    flash(f"{zone.name}: {'healthy' if ok else 'failing'}: {message}", "info" if ok else "error")
    return redirect(url_for(".index"))


@bp.route("/zones/<int:zone_id>/delegation")
def delegation(zone_id: int):
    zone = _zone(zone_id)
    template = "sslmanager/dns/_delegation.html" if htmx else "sslmanager/dns/delegation.html"
    return render_template(template, zone=zone, info=service.delegation(zone.name))


@bp.route("/zones/new", methods=["GET", "POST"])
def new_zone():
    return _zone_form(None)


@bp.route("/zones/<int:zone_id>/edit", methods=["GET", "POST"])
def edit_zone(zone_id: int):
    return _zone_form(_zone(zone_id))


def _zone_form(zone: TechZone | None):
    """Add a zone, or edit one's provider settings: the same form; secrets are write-only."""
    providers = available_providers()
    default = zone.provider if zone is not None else "rfc2136"
    requested = (request.values.get("provider") or default).strip()
    provider = requested if requested in providers else (
        "rfc2136" if "rfc2136" in providers else next(iter(providers)))
    cls = providers[provider]
    secret = {o.name for o in cls.options if o.secret}
    values, errors = {}, {}
    if zone is not None and request.method == "GET":
        values = {**(zone.options or {}), "name": zone.name,
                  "customer": "1" if service.is_customer_zone(zone) else ""}
    if request.method == "POST":
        values = request.form.to_dict()
        options = {o.name: values.get(o.name, "") for o in cls.options}
        if values.get("customer"):
            options["role"] = service.CUSTOMER
        try:
            if zone is None:
                zone = zones.add(values.get("name", ""), requested, options)  # unknown: error beside it
                verb = "added"
            else:
                zones.update(zone, requested, options)
                verb = "saved"
        except ValidationError as exc:
            errors = exc.errors
        else:
            ok, message = zones.check(zone)
            flash(f"Zone {zone.name} {verb}. Health check: {message}", "info" if ok else "error")
            return redirect(url_for(".index"))
    # Secrets are write-only: never rendered back, not even after a failed save.
    shown = {k: v for k, v in values.items() if k not in secret}
    kept = set(zones.stored_secrets(zone)) if zone is not None and provider == zone.provider else set()
    context = {"providers": providers, "provider": provider, "cls": cls, "values": shown, "errors": errors,
               "zone": zone, "kept_secrets": kept,
               # Typed in this request and not itself refused: shown again after an error elsewhere.
               "typed_secrets": {k: values[k] for k in secret if values.get(k) and k not in errors} if errors else {},
               "form_url": url_for(".edit_zone", zone_id=zone.id) if zone is not None else url_for(".new_zone")}
    template = ("sslmanager/dns/_zone_form.html" if htmx and request.method == "GET"
                else "sslmanager/dns/new.html")
    return render_template(template, **context), 422 if errors else 200


@bp.route("/zones/<int:zone_id>/delete", methods=["POST"])
def delete_zone(zone_id: int):
    zone = _zone(zone_id)
    name = zone.name
    try:
        zones.delete(zone)
    except Conflict as exc:
        flash(f"{exc.message} {exc.hint}", "error")
    else:
        flash(f"Zone {name} deleted.", "info")
    return redirect(url_for(".index"))


@bp.route("/sweep", methods=["POST"])
def sweep():
    report = service.sweep()
    removed = len(report.removed)
    flash(f"Sweep: removed {removed} TXT value{'s' if removed != 1 else ''}, kept "
          f"{len(report.kept)} that a Processing certificate may need."
          + (" Problems: " + "; ".join(report.errors) if report.errors else ""),
          "error" if report.errors else "info")
    return redirect(url_for(".index"))


@bp.route("/preflight/<int:cert_id>")
def preflight(cert_id: int):
    try:
        cert = certificates.get(cert_id)
    except NotFound:
        abort(404)
    return render_template("sslmanager/dns/preflight.html", report=checks.preflight(cert))
