"""API tokens: made with their checks, shown once and stored hashed, authenticated, revoked
and expired; the permission model's scopes and roles."""
from __future__ import annotations

from datetime import timedelta

import pytest

from webapp import db
from webapp.errors import ValidationError
from webapp.models import ApiToken, utcnow
from webapp.services import permissions, tokens


def test_create_authenticate_and_revoke(app):
    with app.app_context():
        made = tokens.create("web-03", ["read", "keys:read"], tags=["Web-03"], cert_ids=["12"], expires="90d")
        assert made.secret.startswith(f"sslm_{made.token.id}_")
        row = db.session().get(ApiToken, made.token.id)
        assert made.secret.split("_", 2)[2] not in row.secret_hash and len(row.secret_hash) == 64
        assert row.tags == ["web-03"] and row.cert_ids == [12]
        assert timedelta(days=89) < row.expires_at - utcnow() <= timedelta(days=90)
        who = tokens.authenticate(made.secret, "192.0.2.7")
        assert who.name == "token:web-03" and who.scopes == {"read", "keys:read"}
        assert who.restricted and who.tags == {"web-03"} and who.cert_ids == {12}
        assert row.last_used_address == "192.0.2.7"
        tokens.revoke(row)
        with pytest.raises(tokens.Invalid, match="revoked"):
            tokens.authenticate(made.secret, "192.0.2.7")


@pytest.mark.parametrize("bearer", ["", "nope", "sslm_x_abc", "sslm_99_" + "a" * 43])
def test_malformed_or_unknown_tokens_are_invalid(app, bearer):
    with app.app_context():
        with pytest.raises(tokens.Invalid):
            tokens.authenticate(bearer, "127.0.0.1")


def test_expired(app):
    with app.app_context():
        made = tokens.create("brief", ["read"], expires="1m")
        made.token.expires_at = utcnow() - timedelta(seconds=1)
        db.session().commit()
        assert tokens.state(made.token) == "expired"
        with pytest.raises(tokens.Invalid, match="expired"):
            tokens.authenticate(made.secret, "127.0.0.1")


def test_each_bad_field_is_named(app):
    with app.app_context():
        tokens.create("taken", ["read"])
        with pytest.raises(ValidationError) as caught:
            tokens.create("taken", ["read", "admin"], cert_ids=["x"], tags=["Bad Tag!"], expires="soon")
        assert set(caught.value.errors) == {"name", "scopes", "cert_ids", "tags", "expires"}
        assert "admin" in caught.value.errors["scopes"]
        assert db.session().query(ApiToken).count() == 1


def test_roles_map_to_scopes_and_tokens_stay_within_them():
    assert permissions.ROLES["admin"] == set(permissions.SCOPES)
    assert permissions.within_role("operator", ["read", "issue"])
    assert not permissions.within_role("viewer", ["read", "keys:read"])
    viewer = permissions.Principal("user:v", permissions.ROLES["viewer"])
    permissions.require(viewer, "read")
    with pytest.raises(permissions.Denied, match="issue"):
        permissions.require(viewer, "issue")
