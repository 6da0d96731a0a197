"""The Users page, sessions (listed, revoked, rotated at sign-in and at a role change) and the
two-factor sign-in step with its throttle."""
from __future__ import annotations

import re

import pyotp

from tests.conftest import ADMIN, CsrfClient, signed_in
from webapp import db
from webapp.models import Admin, UserSession
from webapp.services import two_factor, users
from webapp.services.auth import create_admin


def sign_in(app, username, password, landing="/") -> CsrfClient:
    app.test_client_class = CsrfClient
    client = app.test_client()
    client.fetch_token()
    resp = client.post("/login", data={"username": username, "password": password})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    client.fetch_token(landing)
    return client


def user_id(app, name) -> int:
    with app.app_context():
        return db.session().query(Admin).filter_by(username=name).one().id


def test_an_admin_creates_a_user_changes_its_role_and_disables_it(app):
    admin = signed_in(app)
    resp = admin.post("/users/new", data={"username": "sam", "password": "sam's long password", "role": "viewer"})
    assert resp.status_code == 302
    page = admin.get("/users/").get_data(as_text=True)
    assert "sam" in page and "viewer" in page
    sam = user_id(app, "sam")
    assert admin.post(f"/users/{sam}/role", data={"role": "operator"}).status_code == 302
    assert 'id="user-role">operator' in admin.get(f"/users/{sam}").get_data(as_text=True)
    bad = admin.post("/users/new", data={"username": "x", "password": "long enough pw", "role": "root"})
    assert bad.status_code == 422 and "choose viewer, operator or admin" in bad.get_data(as_text=True)
    assert admin.post(f"/users/{sam}/disable").status_code == 302
    login = app.test_client()
    CsrfClient.fetch_token(login)
    assert login.post("/login", data={"username": "sam", "password": "sam's long password"}).status_code == 401


def test_the_last_admin_cannot_be_demoted_or_disabled(app):
    admin = signed_in(app)
    me = user_id(app, ADMIN[0])
    admin.post(f"/users/{me}/role", data={"role": "viewer"})
    admin.post(f"/users/{me}/disable")
    with app.app_context():
        row = db.session().get(Admin, me)
        assert row.role == "admin" and not row.disabled
    page = admin.get(f"/users/{me}").get_data(as_text=True)
    assert "last enabled admin" in page


def test_sessions_are_listed_and_one_revoked_signs_that_browser_out(app):
    with app.app_context():
        create_admin("sam", "sam's long password", role="operator")
    first = sign_in(app, "sam", "sam's long password")
    second = sign_in(app, "sam", "sam's long password")
    page = first.get("/account/sessions").get_data(as_text=True)
    ids = re.findall(r'id="session-(\d+)"', page)
    assert len(ids) == 2 and "this browser" in page
    other = next(i for i in ids if f'/account/sessions/{i}/revoke' in page)
    assert first.post(f"/account/sessions/{other}/revoke").status_code == 302
    assert second.get("/").status_code == 302  # back to the sign-in page
    assert first.get("/").status_code == 200


def test_a_role_change_rotates_the_session_and_takes_effect_at_once(app):
    with app.app_context():
        create_admin("sam", "sam's long password", role="operator")
    sam = sign_in(app, "sam", "sam's long password")
    with app.app_context():
        before = db.session().query(UserSession.token_hash).one()[0]
    assert sam.get("/certificates/new").status_code == 200
    with app.app_context():
        users.set_role(users.find("sam"), "viewer")
    assert sam.get("/certificates/new").status_code == 403
    with app.app_context():
        row = db.session().query(UserSession).one()
        assert row.token_hash != before and row.role == "viewer"


def test_sign_in_with_totp_asks_the_code_and_throttles_wrong_codes(app):
    with app.app_context():
        user = create_admin("sam", "sam's long password", role="operator")
        secret = two_factor.pending_secret(user)
        two_factor.confirm(user, pyotp.TOTP(secret).now())
    app.config["SSLMANAGER_LOGIN_MAX_PER_ACCOUNT"] = 2
    app.test_client_class = CsrfClient
    client = app.test_client()
    client.fetch_token()
    resp = client.post("/login", data={"username": "sam", "password": "sam's long password"})
    assert resp.status_code == 302 and "/login/code" in resp.headers["Location"]
    assert client.get("/").status_code == 302  # not signed in yet
    client.fetch_token("/login/code")
    assert client.post("/login/code", data={"code": "000000"}).status_code == 401
    assert client.post("/login/code", data={"code": "111111"}).status_code == 401
    waited = client.post("/login/code", data={"code": pyotp.TOTP(secret).now()})
    assert waited.status_code == 429 and "Retry-After" in waited.headers


def test_a_right_code_signs_in(app):
    with app.app_context():
        user = create_admin("sam", "sam's long password", role="operator")
        secret = two_factor.pending_secret(user)
        codes = two_factor.confirm(user, pyotp.TOTP(secret).now())
    app.test_client_class = CsrfClient
    client = app.test_client()
    client.fetch_token()
    client.post("/login", data={"username": "sam", "password": "sam's long password"})
    client.fetch_token("/login/code")
    assert client.post("/login/code", data={"code": codes[0]}).status_code == 302
    assert client.get("/").status_code == 200


def test_when_an_admin_requires_two_factor_a_user_without_it_sets_it_up_first(app):
    admin = signed_in(app)
    assert admin.post("/users/settings", data={"require_2fa": "on"}).status_code == 302
    with app.app_context():
        create_admin("sam", "sam's long password", role="viewer")
    sam = sign_in(app, "sam", "sam's long password", landing="/account/two-factor")
    resp = sam.get("/certificates/")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/account/two-factor")
    page = sam.get("/account/two-factor").get_data(as_text=True)
    assert "<svg" in page and "requires two-factor" in page
    with app.app_context():
        secret = db.session().query(Admin).filter_by(username="sam").one().totp_secret
    done = sam.post("/account/two-factor", data={"code": pyotp.TOTP(secret).now()})
    assert done.status_code == 200 and 'id="recovery-codes"' in done.get_data(as_text=True)
    assert sam.get("/certificates/").status_code == 200


def test_a_forged_passkey_answer_is_refused_and_counted_by_the_throttle(app):
    from webapp.models import Passkey
    with app.app_context():
        user = create_admin("sam", "sam's long password", role="operator")
        db.session().add(Passkey(user_id=user.id, credential_id="AAAA", public_key="AAAA", sign_count=0, name="k"))
        db.session().commit()
    app.config["SSLMANAGER_LOGIN_MAX_PER_ACCOUNT"] = 1
    app.test_client_class = CsrfClient
    client = app.test_client()
    client.fetch_token()
    assert client.post("/login/passkey", json={"credential": "{}"}).status_code == 401  # no password yet
    client.post("/login", data={"username": "sam", "password": "sam's long password"})
    page = client.get("/login/code").get_data(as_text=True)
    assert 'id="use-passkey"' in page and 'name="code"' not in page
    client.token = re.search(r'data-csrf="([^"]+)"', page).group(1)
    assert client.post("/login/passkey/options").status_code == 200
    forged = '{"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}'
    assert client.post("/login/passkey", json={"credential": forged}).status_code == 401
    assert client.post("/login/passkey", json={"credential": forged}).status_code == 429
    assert client.get("/").status_code == 302
