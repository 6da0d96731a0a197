"""Every API route × every role: a token holding all of its user's role answers the route
(404 for an id that names nothing, 422 for an empty body) or gets 403 and an audit line. A
token never exceeds its user's role: not when made, and not after the user is demoted."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.api.conftest import bearer
from webapp import db
from webapp.errors import ValidationError
from webapp.models import AuditEvent
from webapp.services import permissions, tokens, users
from webapp.services.auth import create_admin

V, O, A = "viewer", "operator", "admin"
RANK = {V: 0, O: 1, A: 2}
SPEC = {  # endpoint → least role (the descriptions)
    "list_profiles": V, "show_profile": V, "test_profile": A, "list_zones": V, "check_zone": A,
    "list_certificates": V, "create_certificate": O, "show_certificate": V, "delete_certificate": O,
    "process_certificate": O, "renew_certificate": O, "revoke_certificate": O, "get_tags": V,
    "set_tags": O, "add_tags": O, "remove_tag": O, "list_events": V, "pem_bundle": V,
    "pem_file": V, "pkcs12": O, "agent_certificates": V, "agent_report": V,
}
PUBLIC = {"not_found", "openapi_json", "docs", "index"}


def owned_tokens(app) -> dict[str, str]:
    made = {}
    with app.app_context():
        for role in (V, O, A):
            user = create_admin(role, "a long enough password", role=role)
            made[role] = tokens.create(f"{role}-token", sorted(permissions.ROLES[role]), owner=user).secret
    return made


def refusals(app) -> int:
    with app.app_context():
        return len(db.session().scalars(select(AuditEvent).filter_by(action="refused")).all())


def test_every_api_route_for_every_role(app):
    secrets = owned_tokens(app)
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        name = rule.endpoint.removeprefix("sslmanager_api.")
        if not rule.endpoint.startswith("sslmanager_api.") or name in PUBLIC:
            continue
        assert name in SPEC, f"classify {rule.endpoint}"
        url = rule.build({"profile_id": 999999, "cert_id": 999999, "name": "nosuch.example",
                          "tag": "web", "filename": "cert.pem"}, append_unknown=False)[1]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            for role, secret in secrets.items():
                before = refusals(app)
                resp = client.open(url, method=method, headers=bearer(secret), json={})
                where = f"{role} {method} {url}"
                if RANK[role] >= RANK[SPEC[name]]:
                    assert resp.status_code != 403 and refusals(app) == before, where
                else:
                    assert resp.status_code == 403 and refusals(app) == before + 1, where
                checked += 1
    assert checked >= 60


@pytest.mark.parametrize("role, allowed", [(V, False), (O, True), (A, True)])
def test_a_private_key_over_the_api_needs_an_operator(app, role, allowed):
    resp = app.test_client().get("/api/v1/certificates/999999/files/privkey.pem",
                                 headers=bearer(owned_tokens(app)[role]))
    assert (resp.status_code == 403) is not allowed


def test_a_token_cannot_be_made_beyond_its_users_role(app):
    with app.app_context():
        operator = create_admin("op", "a long enough password", role=O)
        with pytest.raises(ValidationError) as caught:
            tokens.create("too-much", ["read", "admin"], owner=operator)
        assert "never exceeds its user's role" in caught.value.errors["scopes"]


def test_demoting_a_user_cuts_its_tokens_at_the_next_call(app):
    with app.app_context():
        create_admin("owner", "a long enough password")
        operator = create_admin("op", "a long enough password", role=O)
        secret = tokens.create("deploy", ["read", "keys:read"], owner=operator).secret
    client = app.test_client()
    assert client.get("/api/v1/certificates/999999/files/privkey.pem", headers=bearer(secret)).status_code == 404
    with app.app_context():
        users.set_role(users.find("op"), V)
    assert client.get("/api/v1/certificates/999999/files/privkey.pem", headers=bearer(secret)).status_code == 403
    assert client.get("/api/v1/certificates", headers=bearer(secret)).status_code == 200
    with app.app_context():
        users.set_disabled(users.find("op"), True)
    assert client.get("/api/v1/certificates", headers=bearer(secret)).status_code == 401
