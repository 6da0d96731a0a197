"""Every page × every role: allowed pages pass the guard (whatever the view answers then: 200,
302, 404 for a missing id, 422 for an empty form), refused ones get 403 and an audit line. The
expectations are written from the issue's role descriptions, not read from the guard's table;
a page missing here fails the test, so every new page gets classified."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import CsrfClient
from webapp import db
from webapp.models import AuditEvent
from webapp.services.auth import create_admin

V, O, A = "viewer", "operator", "admin"
RANK = {V: 0, O: 1, A: 2}
# endpoint → (least role for GET, least role for POST); None: the page has no such method.
SPEC = {
    "dashboard.index": (V, None), "audit.index": (V, None), "metrics.metrics": (V, None),
    "auth.password": (V, V), "auth.sessions_page": (V, None), "auth.revoke_session": (None, V),
    "auth.totp": (V, V), "auth.totp_disable": (None, V), "passkeys.account": (V, V),
    "passkeys.register_options": (None, V), "passkeys.register": (None, V), "sso.resume": (V, None),
    "ca_profiles.index": (V, None), "ca_profiles.new": (A, A), "ca_profiles.edit": (A, A),
    "ca_profiles.duplicate": (None, A), "ca_profiles.delete": (None, A), "ca_profiles.test": (None, A),
    "certificates.index": (V, None), "certificates.detail": (V, None), "certificates.row": (V, None),
    "certificates.status": (V, None), "certificates.instructions": (V, None),
    "certificates.cname_checks": (V, None), "certificates.check": (None, V),
    "certificates.new": (O, O), "certificates.acme_profiles": (O, None), "certificates.csr": (None, O),
    "certificates.set_tags": (None, O), "certificates.fallbacks": (None, O),
    "certificates.delete": (None, O), "certificates.revoke": (None, O), "certificates.deploy": (O, O),
    "certificates.request": (None, O), "certificates.renew": (None, O),
    "certificates.renew_selected": (None, O), "certificates.reissue": (None, O),
    "certificates.download": (V, V), "certificates.pkcs12": (None, O),
    "dns.index": (V, None), "dns.delegation": (V, None), "dns.preflight": (V, None),
    "dns.new_zone": (A, A), "dns.edit_zone": (A, A), "dns.delete_zone": (None, A), "dns.check": (None, A),
    "dns.sweep": (None, A),
    "notifications.index": (V, None), "notifications.new": (A, A), "notifications.edit": (A, A),
    "notifications.delete": (None, A), "notifications.test": (None, A), "notifications.options": (None, A),
    "tokens.index": (A, None), "tokens.create": (None, A), "tokens.revoke": (None, A),
    "users.index": (A, None), "users.new": (None, A), "users.detail": (A, None), "users.role": (None, A),
    "users.disable": (None, A), "users.enable": (None, A), "users.reset": (None, A),
    "users.revoke_sessions": (None, A), "users.settings": (None, A),
}
PUBLIC = {"static", "healthz", "auth.login", "auth.login_code", "auth.logout", "passkeys.login_options",
          "passkeys.login", "passkeys.sign_in_options", "passkeys.sign_in", "sso.start", "sso.callback"}
MISSING = 999_999  # ids name nothing: an allowed request reaches the view and gets its 404


def url_for_rule(rule) -> str:
    values = {name: MISSING for name in rule.arguments}
    values.update({"filename": "cert.pem", "kind": "email"} if "filename" in rule.arguments or "kind" in rule.arguments else {})
    return rule.build(values, append_unknown=False)[1]


def clients(app):
    made = {}
    with app.app_context():
        for role in (V, O, A):
            create_admin(role, f"{role} password long", role=role)
    for role in (V, O, A):
        client = app.test_client()
        client.fetch_token()
        assert client.post("/login", data={"username": role, "password": f"{role} password long"}).status_code == 302
        client.fetch_token("/")
        made[role] = client
    return made


def requests_to_make(app):
    for rule in app.url_map.iter_rules():
        name = rule.endpoint.removeprefix("sslmanager.")
        if not rule.endpoint.startswith("sslmanager.") or rule.endpoint.startswith("sslmanager_api") \
                or name in PUBLIC:
            continue
        assert name in SPEC, f"classify {rule.endpoint} in SPEC (which role may use it)"
        get, post = SPEC[name]
        if get and "GET" in rule.methods:
            yield name, "GET", url_for_rule(rule), get
        if post and "POST" in rule.methods:
            yield name, "POST", url_for_rule(rule), post


def refusals(app) -> int:
    with app.app_context():
        return len(db.session().scalars(select(AuditEvent).filter_by(action="refused")).all())


def test_every_page_for_every_role_is_allowed_or_refused_with_403_and_an_audit_line(app):
    app.test_client_class = CsrfClient
    by_role = clients(app)
    checked = 0
    for name, method, url, least in requests_to_make(app):
        for role, client in by_role.items():
            before = refusals(app)
            resp = client.open(url, method=method, data={})
            allowed = RANK[role] >= RANK[least]
            where = f"{role} {method} {url} ({name})"
            if allowed:
                assert resp.status_code != 403, where
                assert refusals(app) == before, where
            else:
                assert resp.status_code == 403, where
                assert "Not allowed" in resp.get_data(as_text=True), where
                assert refusals(app) == before + 1, where
            checked += 1
    assert checked > 150


@pytest.mark.parametrize("role, key_allowed", [(V, False), (O, True), (A, True)])
def test_private_keys_are_for_operators_and_admins_only(app, role, key_allowed):
    app.test_client_class = CsrfClient
    client = clients(app)[role]
    resp = client.get(f"/certificates/{MISSING}/download/privkey.pem")
    assert (resp.status_code == 403) is not key_allowed


def test_each_role_sees_only_what_it_may_do(app):
    app.test_client_class = CsrfClient
    by_role = clients(app)
    viewer = by_role[V].get("/certificates/").get_data(as_text=True)
    operator = by_role[O].get("/certificates/").get_data(as_text=True)
    assert 'id="create-certificate"' not in viewer and 'id="create-certificate"' in operator
    assert "/users/" not in by_role[O].get("/").get_data(as_text=True)
    assert "/users/" in by_role[A].get("/").get_data(as_text=True)
    assert 'id="create-profile"' not in operator
    assert 'id="add-zone"' not in by_role[O].get("/dns/").get_data(as_text=True)
