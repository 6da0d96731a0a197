"""The password-less passkey sign-in through the app's routes, with a software authenticator
(tests/softkey.py): the login page offers it (hidden until passkeys.js finds WebAuthn); a
registered passkey alone signs in (no code step, even with TOTP on or two-factor required),
with a new session and an audit line; refusals are one message, throttled per address."""
from __future__ import annotations

import re

from tests.conftest import CsrfClient
from tests.softkey import SoftKey
from webapp import db
from webapp.models import AuditEvent, UserSession
from webapp.services import two_factor
from webapp.services.auth import create_admin

PASSWORD = "pia's long password"


def fresh_client(app) -> CsrfClient:
    app.test_client_class = CsrfClient
    client = app.test_client()
    client.fetch_token()
    return client


def with_passkey(app, username: str = "pia") -> tuple[CsrfClient, SoftKey]:
    """`username` (an operator) signs in with the password, adds a passkey, signs out: the
    signed-out client and the key."""
    with app.app_context():
        create_admin(username, PASSWORD, role="operator")
    client = fresh_client(app)
    assert client.post("/login", data={"username": username, "password": PASSWORD}).status_code == 302
    client.fetch_token("/account/passkeys")
    key = SoftKey()
    credential = key.register(client.post("/account/passkeys/options").get_data(as_text=True))
    assert client.post("/account/passkeys/register", json={"credential": credential, "name": "laptop"}).status_code == 200
    assert client.post("/logout").status_code == 302
    client.fetch_token()
    return client, key


def passkey_sign_in(client: CsrfClient, key: SoftKey, query: str = "", **answer):
    options = client.post("/login/passkey/sign-in/options")
    assert options.status_code == 200, options.get_data(as_text=True)
    return client.post(f"/login/passkey/sign-in{query}", json={"credential": key.answer(options.get_data(as_text=True),
                                                                                        **answer)})


def test_the_login_page_offers_the_passkey_hidden_until_the_script_finds_webauthn(app):
    page = fresh_client(app).get("/login").get_data(as_text=True)
    button = re.search(r'<p data-needs-webauthn hidden><button[^>]*id="passkey-sign-in"[^>]*>Sign in with a passkey<', page)
    assert button and 'data-passkey="sign-in"' in button.group(0) and "passkeys.js" in page


def test_a_passkey_alone_signs_in_with_a_new_session_and_an_audit_line(app):
    client, key = with_passkey(app)
    assert client.get("/").status_code == 302
    resp = passkey_sign_in(client, key, "?next=/certificates/")
    assert resp.status_code == 200 and resp.get_json() == {"redirect": "/certificates/"}
    assert client.get("/certificates/").status_code == 200
    with app.app_context():
        line = db.session().query(AuditEvent).filter_by(action="signed in").order_by(AuditEvent.id.desc()).first()
        assert (line.actor, line.summary) == ("pia", "passkey")
        assert db.session().query(UserSession).count() == 1


def test_no_code_step_follows_even_with_totp_on_and_two_factor_required(app):
    client, key = with_passkey(app)
    with app.app_context():
        from webapp.models import Admin
        user = db.session().query(Admin).filter_by(username="pia").one()
        import pyotp
        two_factor.confirm(user, pyotp.TOTP(two_factor.pending_secret(user)).now())
        from webapp.models import Setting
        db.session().add(Setting(key=two_factor.REQUIRED_KEY, value=True))
        db.session().commit()
    # the password alone now stops at the code step...
    other = fresh_client(app)
    assert other.post("/login", data={"username": "pia", "password": PASSWORD}).headers["Location"].startswith("/login/code")
    # ...the passkey with user verification does not, and the requirement is met
    assert passkey_sign_in(client, key).status_code == 200
    assert client.get("/certificates/").status_code == 200


def test_refusals_are_one_message_and_count_in_the_throttle(app):
    client, key = with_passkey(app)
    app.config.update(SSLMANAGER_LOGIN_MAX_PER_ADDRESS=3, SSLMANAGER_LOGIN_MAX_PER_ACCOUNT=3)
    unknown = passkey_sign_in(client, SoftKey())
    assert passkey_sign_in(fresh_client(app), key, count=5).status_code == 200  # elsewhere
    backwards = passkey_sign_in(client, key, count=3)  # a cloned key's counter
    with app.app_context():
        from webapp.models import Admin
        db.session().query(Admin).filter_by(username="pia").one().disabled = True
        db.session().commit()
    disabled = passkey_sign_in(client, key)
    for resp in (unknown, backwards, disabled):
        assert resp.status_code == 401 and resp.get_json() == {"error": "The passkey was not accepted."}
    throttled = client.post("/login/passkey/sign-in/options")
    assert throttled.status_code == 429 and "Too many failed sign-ins" in throttled.get_json()["error"]
    assert int(throttled.headers["Retry-After"]) > 0
    assert client.get("/").status_code == 302


def test_with_passwords_off_a_passkey_signs_in_break_glass_users_only(app):
    client, key = with_passkey(app)
    app.config.update(SSLMANAGER_PASSWORD_SIGN_IN=False, SSLMANAGER_BREAK_GLASS_USERS=["root"])
    page = client.get("/login").get_data(as_text=True)
    assert page.index('id="break-glass"') < page.index('id="passkey-sign-in"')  # with the local sign-in
    resp = passkey_sign_in(client, key)
    assert resp.status_code == 401 and "sign in with single sign-on" in resp.get_json()["error"]
    assert client.get("/").status_code == 302
    app.config["SSLMANAGER_BREAK_GLASS_USERS"] = ["root", "pia"]
    assert passkey_sign_in(client, key).status_code == 200
    assert client.get("/").status_code == 200


def test_without_the_options_first_nothing_is_accepted(app):
    client, key = with_passkey(app)
    forged = key.answer('{"challenge": "AAAA"}')
    assert client.post("/login/passkey/sign-in", json={"credential": forged}).status_code == 401
    assert client.post("/login/passkey/sign-in", json={}).status_code == 401
    assert client.post("/login/passkey/sign-in", data="not json").status_code == 401


def test_a_body_that_is_not_a_json_object_is_refused_not_a_500(app):
    """A list, a string or a number where the browser sends an object: the same refusal."""
    client, _key = with_passkey(app)
    for body in ([1, 2], "credential", 5, {"credential": 5}, {"credential": '{"response": []}'}):
        signed = client.post("/login/passkey/sign-in", json=body)
        assert signed.status_code == 401 and signed.get_json()["error"], body
    second_step = fresh_client(app)  # the password right: the passkey step waits
    assert second_step.post("/login", data={"username": "pia", "password": PASSWORD}).status_code == 302
    page = second_step.get("/login/code").get_data(as_text=True)
    second_step.token = re.search(r'data-csrf="([^"]+)"', page).group(1)  # passkey only: no form
    assert second_step.post("/login/passkey", json=[1, 2]).status_code == 401
    with app.app_context():
        create_admin("max", PASSWORD, role="operator")
    registering = fresh_client(app)
    assert registering.post("/login", data={"username": "max", "password": PASSWORD}).status_code == 302
    registering.fetch_token("/account/passkeys")
    assert registering.post("/account/passkeys/register", json=[1, 2]).status_code == 422
