"""/api/v1/ca-profiles and /api/v1/zones: list, show, and the same test and check the pages
run (services.ca_profiles.test is Save and Test's verdict; services.zones.check the zone's)."""
from __future__ import annotations

from ..errors import NotFound
from ..services import ca_profiles, zones
from ..services.permissions import READ, WRITE
from .base import bp
from . import schemas as s
from .common import operation, paged


def _profile(p, counts: dict[int, int]) -> dict:
    offered = (p.directory_meta or {}).get("profiles") or {}
    return {"id": p.id, "name": p.name, "description": p.description or "", "module": p.module,
            "email": p.email or "", "dns_zone": p.dns_zone or "", "allow_wildcard": bool(p.allow_wildcard),
            "dns_ttl": p.dns_ttl, "api_timeout": p.api_timeout, "account_url": p.account_url or "",
            "account_status": p.account_status or "", "acme_profiles": [str(n) for n in offered],
            "last_test_ok": p.last_test_ok, "last_test_at": p.last_test_at,
            "last_test_message": p.last_test_message or "", "certificates": counts.get(p.id, 0)}


def _window(items, page: int, per_page: int):
    return items[(page - 1) * per_page: page * per_page]


@bp.route("/ca-profiles", tags=["CA profiles"])
@operation(READ, "List CA profiles")
@bp.arguments(s.NameQuery, location="query")
@bp.response(200, s.ProfilePage)
def list_profiles(query):
    """Secrets (EAB HMAC, API keys, account keys) are never part of an answer."""
    q = query.get("q", "").strip().lower()
    found = [p for p in ca_profiles.all_profiles() if q in p.name.lower()]
    counts = ca_profiles.certificate_counts()
    page, per_page = query["page"], query["per_page"]
    return paged(_window(found, page, per_page), len(found), page, per_page, lambda p: _profile(p, counts))


@bp.route("/ca-profiles/<int:profile_id>", tags=["CA profiles"])
@operation(READ, "Show a CA profile")
@bp.response(200, s.Profile)
def show_profile(profile_id):
    return _profile(ca_profiles.get(profile_id), ca_profiles.certificate_counts())


@bp.route("/ca-profiles/<int:profile_id>/test", methods=["POST"], tags=["CA profiles"])
@operation(WRITE, "Test a CA profile (Save and Test's verdict)")
@bp.arguments(s.Empty, required=False)
@bp.response(200, s.TestResult)
def test_profile(_body, profile_id):
    """Fetches the directory and registers or finds the ACME account, records the outcome on
    the profile; `ok` false names the step, the CA's words and what to do."""
    result = ca_profiles.test(ca_profiles.get(profile_id))
    return {"ok": result.ok, "step": result.step, "message": result.message, "hint": result.hint,
            "detail": result.detail, "url": result.url, "account_url": result.account_url,
            "account_status": result.account_status, "notes": list(result.notes),
            "endpoints": dict(result.directory.endpoints) if result.directory else {}}


def _zone(z) -> dict:
    return {"id": z.id, "name": z.name, "provider": z.provider, "last_check_ok": z.last_check_ok,
            "last_check_at": z.last_check_at, "last_check_message": z.last_check_message or ""}


@bp.route("/zones", tags=["Zones"])
@operation(READ, "List technical zones")
@bp.arguments(s.NameQuery, location="query")
@bp.response(200, s.ZonePage)
def list_zones(query):
    """Provider settings and secrets stay on the DNS Manager page."""
    q = query.get("q", "").strip().lower()
    found = [z for z in zones.all_zones() if q in z.name.lower()]
    page, per_page = query["page"], query["per_page"]
    return paged(_window(found, page, per_page), len(found), page, per_page, _zone)


@bp.route("/zones/<name>/check", methods=["POST"], tags=["Zones"])
@operation(WRITE, "Check a technical zone")
@bp.arguments(s.Empty, required=False)
@bp.response(200, s.Zone)
def check_zone(_body, name):
    """The provider's health check, recorded on the zone (as the DNS Manager page's Check)."""
    try:
        zone = zones.get(name.strip().lower().rstrip("."))
    except NotFound:
        raise NotFound(f"No technical zone {name[:253]!r}.") from None
    zones.check(zone)
    return _zone(zone)
