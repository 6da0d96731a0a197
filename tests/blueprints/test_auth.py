"""Standalone sign-in: generic failures, rate limits, CSRF, cookies, sign-out."""
from __future__ import annotations

from tests.conftest import ADMIN
from webapp import db
from webapp.services.auth import create_admin


def _login(client, username, password):
    return client.post("/login", data={"username": username, "password": password})


def test_sign_in_then_the_dashboard_opens(admin_client):
    resp = admin_client.get("/")
    assert resp.status_code == 200 and "Dashboard" in resp.get_data(as_text=True)


def test_wrong_password_and_unknown_user_get_the_same_message(app, client):
    with app.app_context():
        create_admin(*ADMIN)
    client.fetch_token()
    wrong_password = _login(client, ADMIN[0], "nope-nope-nope")
    unknown_user = _login(client, "nobody", "nope-nope-nope")
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert "Wrong username or password." in wrong_password.get_data(as_text=True)
    assert "Wrong username or password." in unknown_user.get_data(as_text=True)


def test_failed_sign_ins_are_rate_limited_per_account(app, client):
    with app.app_context():
        create_admin(*ADMIN)
    client.fetch_token()
    for _ in range(app.config["SSLMANAGER_LOGIN_MAX_PER_ACCOUNT"]):
        assert _login(client, ADMIN[0], "wrong-wrong-wrong").status_code == 401
    blocked = _login(client, ADMIN[0], ADMIN[1])  # even the right password waits
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.get_data(as_text=True)


def test_failed_sign_ins_are_rate_limited_per_address(app, client):
    app.config["SSLMANAGER_LOGIN_MAX_PER_ADDRESS"] = 3
    client.fetch_token()
    for i in range(3):
        _login(client, f"user{i}", "wrong-wrong-wrong")
    assert _login(client, "another", "wrong-wrong-wrong").status_code == 429


def test_login_without_csrf_token_is_refused(app, client):
    with app.app_context():
        create_admin(*ADMIN)
    resp = client.post("/login", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert resp.status_code == 400 and "security token" in resp.get_data(as_text=True)


def test_session_cookie_is_httponly_lax_and_secure_over_https(app, client):
    with app.app_context():
        create_admin(*ADMIN)
    client.fetch_token()
    resp = _login(client, *ADMIN)
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = app.test_client()
    secure.fetch_token("https://localhost/login")
    cookie = secure.post("https://localhost/login", data={"username": ADMIN[0], "password": ADMIN[1]},
                         headers={"X-CSRFToken": secure.token}).headers["Set-Cookie"]
    assert "Secure" in cookie


def test_next_parameter_cannot_leave_the_site(app, client):
    with app.app_context():
        create_admin(*ADMIN)
    client.fetch_token()
    resp = client.post("/login?next=//evil.example/x", data={"username": ADMIN[0], "password": ADMIN[1]})
    assert resp.headers["Location"] == "/"


def test_sign_out_ends_the_session(admin_client):
    assert admin_client.post("/logout").status_code == 302
    assert admin_client.get("/").status_code == 302


def test_state_changing_request_without_token_is_refused_for_htmx_too(admin_client):
    resp = admin_client.post("/logout", headers={"HX-Request": "true"}, no_csrf=True)
    assert resp.status_code == 400


def test_every_form_caps_its_fields_server_side_and_names_the_field(admin_client, app):
    from webapp.models import CAProfile
    resp = admin_client.post("/ca/new", data={"name": "LE", "module": "letsencrypt", "eab_kid": "k" * 1001})
    assert resp.status_code == 422 and "“eab_kid” holds 1,001 characters; it takes at most 1,000" in \
        resp.get_data(as_text=True)
    with app.app_context():
        assert db.session().query(CAProfile).count() == 0


def test_hsts_only_when_enabled_and_only_over_https(app, client):
    assert "Strict-Transport-Security" not in client.get("https://localhost/login").headers
    app.config["SSLMANAGER_HSTS_SECONDS"] = 600
    assert client.get("https://localhost/login").headers["Strict-Transport-Security"] == "max-age=600"
    assert "Strict-Transport-Security" not in client.get("http://localhost/login").headers
