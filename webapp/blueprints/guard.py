"""Which permission each page needs (services/roles.py), checked once for every request by the
umbrella blueprint's guard: the views never repeat it, and a page missing from this table needs
`admin` (closed by default; tests/blueprints/test_roles.py fails on any missing page)."""
from __future__ import annotations

from flask import request

from ..services.roles import ADMIN, ISSUE, KEYS_READ, READ, WRITE

# endpoint (without the "sslmanager." prefix) → (GET permission, POST permission)
PAGES: dict[str, tuple[str, str]] = {
    "dashboard.index": (READ, READ),
    "audit.index": (READ, READ),
    "metrics.metrics": (READ, READ),
    "auth.logout": (READ, READ),
    "auth.password": (READ, READ),
    "auth.sessions_page": (READ, READ),
    "auth.revoke_session": (READ, READ),
    "auth.totp": (READ, READ),
    "auth.totp_disable": (READ, READ),
    "passkeys.account": (READ, READ),
    "passkeys.register_options": (READ, READ),
    "passkeys.register": (READ, READ),
    "passkeys.remove": (READ, READ),
    "sso.resume": (READ, READ),  # "Signed in again": the request it re-sends is checked on its own
    "ca_profiles.index": (READ, ADMIN),
    "ca_profiles.new": (ADMIN, ADMIN),
    "ca_profiles.edit": (ADMIN, ADMIN),
    "ca_profiles.duplicate": (ADMIN, ADMIN),
    "ca_profiles.delete": (ADMIN, ADMIN),
    "ca_profiles.test": (ADMIN, ADMIN),
    "certificates.index": (READ, READ),
    "certificates.detail": (READ, READ),
    "certificates.row": (READ, READ),
    "certificates.status": (READ, READ),
    "certificates.instructions": (READ, READ),
    "certificates.cname_checks": (READ, READ),
    "certificates.check": (READ, READ),     # looks the CNAMEs up again: support's daily question
    "certificates.new": (WRITE, WRITE),
    "certificates.acme_profiles": (WRITE, WRITE),
    "certificates.csr": (WRITE, WRITE),
    "certificates.set_tags": (WRITE, WRITE),
    "certificates.fallbacks": (WRITE, WRITE),
    "certificates.delete": (WRITE, WRITE),
    "certificates.revoke": (WRITE, WRITE),
    "certificates.deploy": (WRITE, WRITE),   # the directory gets the key: operators and up
    "certificates.request": (ISSUE, ISSUE),
    "certificates.renew": (ISSUE, ISSUE),
    "certificates.renew_selected": (ISSUE, ISSUE),
    "certificates.reissue": (ISSUE, ISSUE),
    "certificates.download": (READ, READ),  # privkey.pem: KEYS_READ, below
    "certificates.pkcs12": (KEYS_READ, KEYS_READ),
    "dns.index": (READ, ADMIN),
    "dns.delegation": (READ, READ),
    "dns.preflight": (READ, READ),
    "dns.new_zone": (ADMIN, ADMIN),
    "dns.edit_zone": (ADMIN, ADMIN),
    "dns.delete_zone": (ADMIN, ADMIN),
    "dns.check": (ADMIN, ADMIN),
    "dns.sweep": (ADMIN, ADMIN),
    "notifications.index": (READ, ADMIN),
    "notifications.new": (ADMIN, ADMIN),
    "notifications.edit": (ADMIN, ADMIN),
    "notifications.delete": (ADMIN, ADMIN),
    "notifications.test": (ADMIN, ADMIN),
    "notifications.options": (ADMIN, ADMIN),
    "tokens.index": (ADMIN, ADMIN),
    "tokens.create": (ADMIN, ADMIN),
    "tokens.revoke": (ADMIN, ADMIN),
    "users.index": (ADMIN, ADMIN),
    "users.new": (ADMIN, ADMIN),
    "users.detail": (ADMIN, ADMIN),
    "users.role": (ADMIN, ADMIN),
    "users.disable": (ADMIN, ADMIN),
    "users.enable": (ADMIN, ADMIN),
    "users.reset": (ADMIN, ADMIN),
    "users.revoke_sessions": (ADMIN, ADMIN),
    "users.settings": (ADMIN, ADMIN),
}


def permission_for(endpoint: str | None) -> str:
    """The permission this request needs: its page's, `admin` for a page not listed."""
    name = (endpoint or "").removeprefix("sslmanager.")
    get, post = PAGES.get(name, (ADMIN, ADMIN))
    permission = get if request.method in ("GET", "HEAD") else post
    if name == "certificates.download" and (request.view_args or {}).get("filename") == "privkey.pem":
        permission = KEYS_READ
    return permission
