"""Who may call the API: bearer tokens only (never a session), revoked and expired tokens
refused, bad tokens throttled like sign-ins, and every error a problem document."""
from __future__ import annotations

from datetime import timedelta

from tests.conftest import make_certificate, signed_in
from webapp import db
from webapp.models import ApiToken, Certificate, LoginAttempt, utcnow
from webapp.services import tokens

from .conftest import bearer

PROBLEM = "application/problem+json"


def test_no_token_is_a_401_problem(api):
    resp = api.get("/api/v1/certificates")
    assert resp.status_code == 401
    assert resp.mimetype == PROBLEM
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.get_json()["status"] == 401


def test_a_valid_token_reads_and_its_use_is_recorded(app, api, make_token):
    secret = make_token("panel", ["read"])
    resp = api.get("/api/v1/certificates", headers=bearer(secret))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json() == {"items": [], "page": 1, "per_page": 50, "total": 0, "pages": 1}
    with app.app_context():
        token = tokens.get("panel")
        assert token.last_used_at is not None and token.last_used_address == "127.0.0.1"
        assert token.secret_hash != secret and secret.split("_")[-1] not in token.secret_hash


def test_revoked_and_expired_tokens_get_401(app, api, make_token):
    revoked, expired = make_token("old", ["read"]), make_token("brief", ["read"], expires="1d")
    with app.app_context():
        tokens.revoke(tokens.get("old"))
        tokens.get("brief").expires_at = utcnow() - timedelta(seconds=1)
        db.session().commit()
    for secret, why in ((revoked, "revoked"), (expired, "expired")):
        resp = api.get("/api/v1/certificates", headers=bearer(secret))
        assert resp.status_code == 401 and resp.mimetype == PROBLEM
        assert why in resp.get_json()["detail"]


def test_a_wrong_secret_for_a_real_id_is_refused(api, make_token):
    secret = make_token("panel", ["read"])
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert api.get("/api/v1/certificates", headers=bearer(forged)).status_code == 401


def test_a_session_cookie_never_authenticates_the_api(app):
    client = signed_in(app)  # a signed-in admin, with a CSRF token at hand
    assert client.get("/api/v1/certificates").status_code == 401
    resp = client.post("/api/v1/certificates", json={"domains": ["a.example.com"], "profile_id": 1})
    assert resp.status_code == 401 and resp.mimetype == PROBLEM
    with app.app_context():
        assert db.session().query(Certificate).count() == 0


def test_bad_tokens_are_throttled_per_address_with_retry_after(app, api, make_token):
    good = make_token("panel", ["read"])
    allowed = app.config["SSLMANAGER_LOGIN_MAX_PER_ACCOUNT"]
    for _ in range(allowed):
        assert api.get("/api/v1/certificates", headers=bearer("sslm_1_" + "x" * 43)).status_code == 401
    resp = api.get("/api/v1/certificates", headers=bearer("sslm_1_" + "x" * 43))
    assert resp.status_code == 429 and resp.mimetype == PROBLEM
    assert int(resp.headers["Retry-After"]) > 0
    # like sign-in: while the address waits, even a good token waits
    assert api.get("/api/v1/certificates", headers=bearer(good)).status_code == 429
    # another address is not slowed
    resp = api.get("/api/v1/certificates", headers=bearer(good), environ_base={"REMOTE_ADDR": "127.0.0.9"})
    assert resp.status_code == 200
    with app.app_context():
        assert db.session().query(LoginAttempt).filter_by(address="127.0.0.1").count() == allowed + 0


def test_unknown_paths_and_methods_are_problems_not_pages(api, make_token):
    secret = make_token("panel", ["read"])
    resp = api.get("/api/v1/no-such-thing", headers=bearer(secret))
    assert resp.status_code == 404 and resp.mimetype == PROBLEM
    resp = api.patch("/api/v1/certificates", headers=bearer(secret))
    assert resp.status_code == 405 and resp.mimetype == PROBLEM
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "POST"}
    resp = api.get("/api/v1/certificates/999", headers=bearer(secret))
    assert resp.status_code == 404 and resp.mimetype == PROBLEM


def test_a_missing_scope_is_403_naming_it(api, make_token):
    secret = make_token("reader", ["read"])
    resp = api.post("/api/v1/certificates", headers=bearer(secret),
                    json={"domains": ["a.example.com"], "profile_id": 1})
    assert resp.status_code == 403 and "'write'" in resp.get_json()["detail"]


def test_every_api_action_is_audited_as_the_token(app, api, make_token, profile_id):
    cert_id = make_certificate(app, profile_id, "a.example.com")
    secret = make_token("panel", ["read", "write"])
    resp = api.put(f"/api/v1/certificates/{cert_id}/tags", headers=bearer(secret), json={"tags": ["web-03"]})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    with app.app_context():
        from webapp.models import AuditEvent
        event = db.session().query(AuditEvent).filter_by(action="certificate tags set").one()
        assert event.actor == "token:panel"
        assert db.session().query(ApiToken).count() == 1
