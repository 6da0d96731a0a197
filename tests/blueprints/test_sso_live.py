"""Single sign-on against a real OpenID Provider on loopback (npm oidc-provider, tests/lab/oidc.py),
with the app served by waitress: the code flow with PKCE signs vera in as a viewer and otto as
an operator; a stranger in no mapped group is refused and no user is made; a wrong state, a
tampered or expired ID token and one for another audience are refused; failed callbacks count
in the sign-in throttle; sign-out ends the session and goes on to the provider's logout; a
PKCS#12 export asked again after the re-authentication window goes through the provider and
continues with its password."""
from __future__ import annotations

import base64
import html
import json
import re
import secrets
from datetime import timedelta
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

from tests.live import Browser, make_certificate, served
from webapp import db
from webapp.models import Admin, utcnow
from webapp.services import auth, oidc
from webapp.services.auth import create_admin

ROLES = {"ssl-viewers": "viewer", "ssl-operators": "operator"}


def configure(app, provider) -> None:
    app.config.update(SSLMANAGER_OIDC_ISSUER=provider.issuer, SSLMANAGER_OIDC_CLIENT_ID=provider.client_id,
                      SSLMANAGER_OIDC_CLIENT_SECRET=provider.client_secret, SSLMANAGER_OIDC_ROLES=ROLES)
    oidc._cache.clear()


@pytest.fixture
def sso(app, oidc_factory):
    """(base URL, provider): the app served, the provider knowing its callback."""
    with app.app_context():
        create_admin("root", "the break-glass password")
        db.session().remove()
    with served(app) as base:
        provider = oidc_factory(redirect_uris=[f"{base}/login/sso/callback"],
                                post_logout_redirect_uris=[f"{base}/login"])
        configure(app, provider)
        yield base, provider


def through_provider(browser: requests.Session, start: str, login: str) -> requests.Response:
    """Follow the app's redirect to the provider, fill its development login form as `login`,
    and follow the redirects back to the app's callback: the callback's answer."""
    answer = browser.get(start, allow_redirects=False)
    assert answer.status_code == 302
    page = browser.get(answer.headers["Location"], allow_redirects=True)
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1)
    answer = browser.post(urljoin(page.url, action), data={"prompt": "login", "login": login, "password": "any"},
                          allow_redirects=False)
    while "/login/sso/callback" not in answer.headers["Location"]:
        answer = browser.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False)
    return browser.get(urljoin(answer.url, answer.headers["Location"]), allow_redirects=False)


@pytest.mark.parametrize("login, role", [("vera", "viewer"), ("otto", "operator")])
def test_a_user_in_a_mapped_group_signs_in_with_the_groups_role(app, sso, login, role):
    base, _provider = sso
    browser = Browser(base)
    answer = through_provider(browser, f"{base}/login/sso?next=/certificates/", login)
    assert answer.status_code == 302 and answer.headers["Location"] == "/certificates/"
    assert browser.get(f"{base}/certificates/", allow_redirects=False).status_code == 200
    can_create = browser.get(f"{base}/certificates/new", allow_redirects=False).status_code
    assert can_create == (200 if role == "operator" else 403)
    with app.app_context():
        user = db.session().query(Admin).filter_by(username=login).one()
        assert user.role == role and user.oidc_subject.endswith(f" {login}") and user.password_hash == "!sso"


def test_a_user_in_no_mapped_group_is_refused_and_not_made(app, sso):
    base, _provider = sso
    answer = through_provider(Browser(base), f"{base}/login/sso", "stranger")
    assert answer.status_code == 403 and "in no group that SSL Manager maps to a role" in answer.text
    with app.app_context():
        assert db.session().query(Admin).filter_by(username="stranger").count() == 0


def test_a_wrong_state_is_refused(app, sso):
    base, _provider = sso
    browser = Browser(base)
    answer = browser.get(f"{base}/login/sso", allow_redirects=False)
    forged = browser.get(f"{base}/login/sso/callback?code=abc&state=not-the-one", allow_redirects=False)
    assert forged.status_code == 403 and "state does not match" in forged.text
    assert browser.get(f"{base}/", allow_redirects=False).status_code == 302  # not signed in
    assert answer.status_code == 302


def test_failed_callbacks_count_in_the_sign_in_throttle(app, sso):
    base, _provider = sso
    app.config["SSLMANAGER_LOGIN_MAX_PER_ADDRESS"] = 2
    browser = Browser(base)
    codes = [browser.get(f"{base}/login/sso/callback?code=x&state=y", allow_redirects=False).status_code
             for _ in range(3)]
    assert codes == [403, 403, 429]


def test_sign_out_ends_the_session_and_goes_to_the_providers_logout(app, sso):
    base, provider = sso
    browser = Browser(base)
    through_provider(browser, f"{base}/login/sso", "otto")
    page = browser.get(f"{base}/", allow_redirects=False).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    answer = browser.post(f"{base}/logout", data={"csrf_token": token}, allow_redirects=False)
    location = urlparse(answer.headers["Location"])
    meta = requests.get(provider.discovery_url, timeout=5).json()
    assert answer.headers["Location"].startswith(meta["end_session_endpoint"])
    query = parse_qs(location.query)
    assert query["post_logout_redirect_uri"] == [f"{base}/login"] and query["id_token_hint"]
    assert browser.get(f"{base}/", allow_redirects=False).status_code == 302


def test_passwords_off_refuses_all_but_the_break_glass_admin(app, sso):
    base, _provider = sso
    app.config.update(SSLMANAGER_PASSWORD_SIGN_IN=False, SSLMANAGER_BREAK_GLASS_USERS=["root"])
    with app.app_context():
        create_admin("local", "a long local password")
        db.session().remove()
    assert Browser(base).login("local", "a long local password").status_code == 403
    assert Browser(base).login("root", "the break-glass password").status_code == 302


def test_an_sso_user_asked_again_for_a_pkcs12_signs_in_at_the_provider_and_continues(app, sso, monkeypatch):
    base, _provider = sso
    cert_id = make_certificate(app)
    at = [utcnow()]
    monkeypatch.setattr(auth, "now", lambda: at[0])  # the clock every session decision reads
    browser = Browser(base)
    assert through_provider(browser, f"{base}/login/sso", "otto").status_code == 302
    at[0] += timedelta(minutes=app.config["SSLMANAGER_REAUTH_MINUTES"] + 1)

    asked = browser.form(f"/certificates/{cert_id}/pkcs12", {"password": "p12 export secret"},
                         page=f"/certificates/{cert_id}")
    assert asked.status_code == 401 and "then continue where you were" in asked.text
    def session_cookie() -> str:  # decoded (it is signed and may be compressed, not encrypted)
        return json.dumps(app.session_interface.get_signing_serializer(app).loads(browser.cookies["session"]))

    assert "enc1:" in session_cookie() and "p12 export secret" not in session_cookie()
    again = html.unescape(re.search(r'href="([^"]+)" id="sso-again"', asked.text).group(1))
    to_provider = browser.get(urljoin(base, again), allow_redirects=False)
    query = parse_qs(urlparse(to_provider.headers["Location"]).query)
    assert query["prompt"] == ["login"] and query["max_age"] == ["0"]  # the provider must ask again
    back = through_provider(browser, urljoin(base, again), "otto")
    assert back.status_code == 302 and back.headers["Location"] == "/login/sso/continue"
    assert "enc1:" in session_cookie() and "p12 export secret" not in session_cookie()

    page = browser.get(f"{base}/login/sso/continue")
    assert page.status_code == 200 and "Signed in again" in page.text
    form = re.search(r'<form method="post" action="([^"]+)" id="continue-form">(.*?)</form>', page.text, re.S)
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form.group(2)))
    resp = browser.post(urljoin(base, html.unescape(form.group(1))), data=fields)
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/x-pkcs12"
    from cryptography.hazmat.primitives.serialization import pkcs12
    assert pkcs12.load_pkcs12(resp.content, b"p12 export secret").key is not None
    assert browser.get(f"{base}/login/sso/continue").status_code == 410  # once


# -- the ID token's checks, on real tokens from the provider ------------------------------------

def id_token_from(provider, client_id: str, client_secret: str, redirect_uri: str, nonce: str) -> str:
    """A real ID token for `client_id`, through the provider's code flow (requests, no app)."""
    import hashlib
    meta = requests.get(provider.discovery_url, timeout=5).json()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    browser = requests.Session()
    page = browser.get(meta["authorization_endpoint"], timeout=5, params={
        "client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri, "scope": "openid groups",
        "state": "s", "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256"})
    action = re.search(r'<form[^>]*action="([^"]+)"', page.text).group(1)
    answer = browser.post(urljoin(page.url, action), data={"prompt": "login", "login": "otto", "password": "x"},
                          allow_redirects=False)
    while not answer.headers["location"].startswith(redirect_uri):
        answer = browser.get(urljoin(answer.url, answer.headers["location"]), allow_redirects=False, timeout=5)
    code = parse_qs(urlparse(answer.headers["location"]).query)["code"][0]
    return requests.post(meta["token_endpoint"], auth=(client_id, client_secret), timeout=5, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "code_verifier": verifier}).json()["id_token"]


CALLBACK = "http://127.0.0.1:9/callback"  # never requested: the code is read off the redirect


@pytest.fixture
def provider(app, oidc_factory):
    made = oidc_factory(redirect_uris=[CALLBACK], extra_clients=[{
        "client_id": "another-app", "client_secret": "another-secret", "redirect_uris": [CALLBACK],
        "grant_types": ["authorization_code"], "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic"}])
    configure(app, made)
    return made


def test_a_valid_id_token_passes_and_a_wrong_nonce_does_not(app, provider):
    token = id_token_from(provider, provider.client_id, provider.client_secret, CALLBACK, "n-1")
    with app.test_request_context():
        assert oidc.verify_id_token(token, "n-1")["sub"] == "otto"
        with pytest.raises(oidc.SsoRefused, match="nonce"):
            oidc.verify_id_token(token, "n-2")


def test_a_tampered_id_token_is_refused(app, provider):
    token = id_token_from(provider, provider.client_id, provider.client_secret, CALLBACK, "n-1")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["groups"] = ["ssl-admins"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with app.test_request_context():
        with pytest.raises(oidc.SsoRefused, match="ID token was refused"):
            oidc.verify_id_token(f"{header}.{forged}.{signature}", "n-1")


def test_an_expired_id_token_is_refused(app, provider):
    token = id_token_from(provider, provider.client_id, provider.client_secret, CALLBACK, "n-1")
    payload = token.split(".")[1]
    expires = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    with app.test_request_context():
        with pytest.raises(oidc.SsoRefused, match="exp"):
            oidc.verify_id_token(token, "n-1", now=expires + oidc.LEEWAY + 1)


def test_an_id_token_for_another_audience_is_refused(app, provider):
    token = id_token_from(provider, "another-app", "another-secret", CALLBACK, "n-1")
    with app.test_request_context():
        with pytest.raises(oidc.SsoRefused, match="aud"):
            oidc.verify_id_token(token, "n-1")
