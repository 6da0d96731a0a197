"""A user of single sign-on asked to sign in again before a key leaves: the request waits
(encrypted in the session, services/reauth.py) and "Signed in again" sends it on: a POST by a
form of its fields, a GET at once; once, within 10 minutes, for the same user. The round trip
through a real provider is in test_sso_live.py; here the session is what the callback leaves."""
from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest

from tests.conftest import CsrfClient
from webapp import db
from webapp.models import Admin, utcnow
from webapp.services import auth, reauth
from webapp.services.auth import RESUME_KEY, create_admin

P12_PASSWORD = "p12 export secret"


@pytest.fixture
def clock(monkeypatch):
    at = [utcnow()]
    monkeypatch.setattr(auth, "now", lambda: at[0])
    return at


@pytest.fixture
def sso_app(app):
    # Only switched on: nothing here talks to a provider.
    app.config.update(SSLMANAGER_OIDC_ISSUER="https://idp.invalid", SSLMANAGER_OIDC_CLIENT_ID="sslmanager")
    return app


def sso_user(app, name: str) -> CsrfClient:
    """A client signed in as `name`, an operator linked to the provider (a password too, so the
    test can sign it in without one)."""
    with app.app_context():
        user = create_admin(name, f"{name}'s long password", role="operator")
        user.oidc_subject = f"https://idp.invalid {name}"
        db.session().commit()
    client = app.test_client()
    client.fetch_token()
    assert client.post("/login", data={"username": name, "password": f"{name}'s long password"}).status_code == 302
    client.fetch_token("/")
    return client


def cookie(app, client) -> dict:
    return app.session_interface.get_signing_serializer(app).loads(client.get_cookie("session").value)


def test_the_request_waits_encrypted_and_signed_in_again_sends_it_once(sso_app, clock):
    otto = sso_user(sso_app, "otto")
    clock[0] += timedelta(minutes=6)
    asked = otto.post("/certificates/7/pkcs12?legacy=0", data={"password": P12_PASSWORD, "encryption": "modern"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 401 and 'id="sso-again"' in page and "then continue where you were" in page
    link = html.unescape(re.search(r'href="([^"]+)" id="sso-again"', page).group(1))
    assert link.startswith("/login/sso?") and "reauth=1" in link
    kept = cookie(sso_app, otto)[RESUME_KEY]
    assert kept.startswith("enc1:") and P12_PASSWORD not in kept  # readable cookie, unreadable field
    assert P12_PASSWORD not in otto.get_cookie("session").value

    again = otto.get("/login/sso/continue")
    page = again.get_data(as_text=True)
    assert again.status_code == 200 and "Signed in again" in page and again.headers["Cache-Control"] == "no-store"
    form = re.search(r'<form method="post" action="([^"]+)" id="continue-form">(.*?)</form>', page, re.S)
    assert html.unescape(form.group(1)) == "/certificates/7/pkcs12?legacy=0"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
    assert fields.pop("csrf_token") and fields == {"password": P12_PASSWORD, "encryption": "modern"}
    assert '<button type="submit">Continue</button>' in form.group(2) and "<script" not in form.group(2)
    twice = otto.get("/login/sso/continue")
    assert twice.status_code == 410 and "Nothing waits to be sent" in twice.get_data(as_text=True)


def test_a_get_is_sent_again_at_once(sso_app, clock):
    otto = sso_user(sso_app, "otto")
    clock[0] += timedelta(minutes=6)
    assert otto.get("/certificates/7/download/privkey.pem?version=2").status_code == 401
    again = otto.get("/login/sso/continue")
    assert again.status_code == 302 and again.headers["Location"] == "/certificates/7/download/privkey.pem?version=2"


def test_it_expires_after_ten_minutes(sso_app, clock):
    otto = sso_user(sso_app, "otto")
    clock[0] += timedelta(minutes=6)
    otto.post("/certificates/7/pkcs12", data={"password": P12_PASSWORD})
    clock[0] += timedelta(seconds=reauth.MAX_SECONDS)
    assert otto.get("/login/sso/continue").status_code == 410


def test_another_user_cannot_send_it(sso_app, clock):
    otto, vera = sso_user(sso_app, "otto"), sso_user(sso_app, "vera")
    clock[0] += timedelta(minutes=6)
    otto.post("/certificates/7/pkcs12", data={"password": P12_PASSWORD})
    with otto.session_transaction() as theirs:
        blob = theirs[RESUME_KEY]
    with vera.session_transaction() as mine:  # as if vera signed in at the provider's prompt instead
        mine[RESUME_KEY] = blob
    assert vera.get("/login/sso/continue").status_code == 410
    assert otto.get("/login/sso/continue").status_code == 200  # its own session still has it


def test_a_form_too_large_for_a_cookie_is_not_kept_and_the_page_says_so(sso_app, clock):
    otto = sso_user(sso_app, "otto")
    clock[0] += timedelta(minutes=6)
    asked = otto.post("/certificates/7/pkcs12", data={"password": "x" * 900, "encryption": "y" * 900})
    assert asked.status_code == 401 and "is not carried over" in asked.get_data(as_text=True)
    assert RESUME_KEY not in cookie(sso_app, otto)
    assert otto.get("/login/sso/continue").status_code == 410


def test_a_local_user_is_asked_the_password_and_nothing_is_kept(sso_app, clock):
    with sso_app.app_context():
        create_admin("root", "the break-glass password")
    client = sso_app.test_client()
    client.fetch_token()
    client.post("/login", data={"username": "root", "password": "the break-glass password"})
    client.fetch_token("/")
    clock[0] += timedelta(minutes=6)
    asked = client.post("/certificates/7/pkcs12", data={"password": P12_PASSWORD})
    assert asked.status_code == 401 and 'id="sso-again"' not in asked.get_data(as_text=True)
    assert RESUME_KEY not in cookie(sso_app, client)
    with sso_app.app_context():
        assert db.session().query(Admin).filter_by(username="root").one().oidc_subject is None


def test_a_user_without_a_local_password_is_not_asked_for_one(sso_app, clock):
    """Made by single sign-on ("!sso"): the page offers only the provider, never a password
    field no password could pass; a user with a password keeps the field beside the link."""
    otto = sso_user(sso_app, "otto")
    with sso_app.app_context():
        db.session().query(Admin).filter_by(username="otto").update({"password_hash": "!sso"})
        db.session().commit()
    clock[0] += timedelta(minutes=6)
    page = otto.post("/certificates/7/pkcs12", data={"password": P12_PASSWORD}).get_data(as_text=True)
    assert 'id="sso-again"' in page and 'name="reauth_password"' not in page and "Sign in again" in page
    anna = sso_user(sso_app, "anna")
    clock[0] += timedelta(minutes=6)
    page = anna.post("/certificates/7/pkcs12", data={"password": P12_PASSWORD}).get_data(as_text=True)
    assert 'id="sso-again"' in page and 'name="reauth_password"' in page


def test_a_single_sign_on_user_cannot_add_a_passkey(sso_app):
    """The provider decides who they are (and their role): a passkey would sign them in around it."""
    otto = sso_user(sso_app, "otto")
    page = otto.get("/account/passkeys").get_data(as_text=True)
    assert 'id="passkeys-sso"' in page and 'id="add-passkey"' not in page
    refused = otto.post("/account/passkeys/register", json={"credential": "{}", "name": "laptop"})
    assert refused.status_code == 422 and "single sign-on" in refused.get_json()["error"]
