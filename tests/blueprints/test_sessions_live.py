"""Sessions that end, against the real app served by waitress: a cookie copied before sign-out,
a password change, a create-admin reset or disabling stops working at once; idle and absolute
limits; a private key (PEM or PKCS#12) asks the password again without a recent sign-in. The
clock is the one every session decision reads (webapp.services.auth.now), moved by the test."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import ADMIN
from tests.live import Browser, make_certificate, served
from webapp import db
from webapp.models import utcnow
from webapp.services import auth
from webapp.services.auth import create_admin

KEY = "-----BEGIN PRIVATE KEY-----"


class Clock:
    def __init__(self):
        self.at = utcnow()

    def __call__(self):
        return self.at

    def advance(self, **delta) -> None:
        self.at += timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    moved = Clock()
    monkeypatch.setattr(auth, "now", moved)
    return moved


@pytest.fixture
def live(app):
    """(base URL, certificate id): the admin exists, one certificate has a key."""
    with app.app_context():
        create_admin(*ADMIN)
        db.session().remove()
    cert_id = make_certificate(app)
    with served(app) as base:
        yield base, cert_id


def signed_in(base: str) -> Browser:
    browser = Browser(base)
    assert browser.login().status_code == 302
    return browser


def key_url(base: str, cert_id: int) -> str:
    return f"{base}/certificates/{cert_id}/download/privkey.pem"


def refused(browser: Browser, url: str) -> bool:
    """The request was sent to the sign-in page and got no key."""
    resp = browser.get(url, allow_redirects=False)
    return resp.status_code == 302 and "/login" in resp.headers["Location"] and KEY not in resp.text


def test_a_cookie_kept_from_before_sign_out_no_longer_downloads_the_key(live):
    base, cert_id = live
    browser = signed_in(base)
    resp = browser.get(key_url(base, cert_id))
    assert resp.status_code == 200 and KEY in resp.text
    kept = browser.cookie_only()
    assert browser.form("/logout", {}).status_code == 302
    assert refused(kept, key_url(base, cert_id))
    assert refused(kept, base + "/")


def test_a_password_change_ends_every_other_session_and_keeps_this_one(live):
    base, cert_id = live
    other = signed_in(base)
    browser = signed_in(base)
    kept = browser.cookie_only()
    wrong = browser.form("/account/password", {"current_password": "not it at all",
                                               "new_password": "a brand new secret", "confirm_password":
                                               "a brand new secret"}, page="/account/password")
    assert wrong.status_code == 422 and "not your current password" in wrong.text
    assert other.get(base + "/", allow_redirects=False).status_code == 200  # nothing changed yet
    resp = browser.form("/account/password", {"current_password": ADMIN[1], "new_password": "a brand new secret",
                                              "confirm_password": "a brand new secret"}, page="/account/password")
    assert resp.status_code == 302
    assert refused(other, base + "/") and refused(kept, key_url(base, cert_id))
    assert browser.get(base + "/", allow_redirects=False).status_code == 200
    assert Browser(base).login(ADMIN[0], "a brand new secret").status_code == 302
    assert Browser(base).login().status_code == 401


def test_create_admin_resetting_the_password_ends_existing_sessions(live, app):
    base, cert_id = live
    browser = signed_in(base)
    result = app.test_cli_runner().invoke(args=["sslmanager", "create-admin", ADMIN[0], "--password-stdin"],
                                          input="reset by the operator\n")
    assert result.exit_code == 0, result.output
    assert refused(browser, key_url(base, cert_id))
    assert Browser(base).login().status_code == 401
    assert Browser(base).login(ADMIN[0], "reset by the operator").status_code == 302


def test_disabling_an_admin_ends_its_sessions_and_its_sign_ins(live, app):
    base, cert_id = live
    browser = signed_in(base)
    runner = app.test_cli_runner()
    last = runner.invoke(args=["sslmanager", "disable-admin", ADMIN[0]])
    assert last.exit_code == 1 and "last enabled admin" in last.output  # someone must stay
    with app.app_context():
        create_admin("second admin", "another long password")
        db.session().remove()
    assert runner.invoke(args=["sslmanager", "disable-admin", ADMIN[0]]).exit_code == 0
    assert refused(browser, key_url(base, cert_id))
    assert Browser(base).login().status_code == 401  # the right password, disabled: refused
    assert runner.invoke(args=["sslmanager", "enable-admin", ADMIN[0]]).exit_code == 0
    assert Browser(base).login().status_code == 302
    missing = runner.invoke(args=["sslmanager", "disable-admin", "nobody"])
    assert missing.exit_code == 1 and "No user named 'nobody'" in missing.output


def test_an_idle_session_ends_after_the_idle_limit_and_pages_opened_keep_it(live, clock, app):
    base, _ = live
    browser = signed_in(base)
    for _ in range(3):  # 3 x 25 minutes, a page opened each time: still signed in
        clock.advance(minutes=25)
        assert browser.get(base + "/", allow_redirects=False).status_code == 200
    clock.advance(minutes=25)
    background = browser.get(base + "/certificates/", headers={"HX-Request": "true"}, allow_redirects=False)
    assert background.status_code == 200  # htmx polling still answers, but does not count as activity
    clock.advance(minutes=app.config["SSLMANAGER_SESSION_IDLE_MINUTES"] - 25)
    assert refused(browser, base + "/")


def test_a_session_ends_after_its_absolute_lifetime_however_busy(live, clock):
    base, _ = live
    browser = signed_in(base)
    for _ in range(12 * 3 - 1):  # active every 20 minutes for just under 12 hours
        clock.advance(minutes=20)
        assert browser.get(base + "/", allow_redirects=False).status_code == 200
    clock.advance(minutes=20)
    assert refused(browser, base + "/")


def test_a_key_download_without_a_recent_sign_in_asks_the_password_then_goes_on(live, clock):
    base, cert_id = live
    browser = signed_in(base)
    clock.advance(minutes=6)
    asked = browser.get(key_url(base, cert_id))
    assert asked.status_code == 401 and "Confirm your password" in asked.text and KEY not in asked.text
    assert asked.headers["Cache-Control"] == "no-store"
    token = browser.token("/")
    wrong = browser.post(key_url(base, cert_id), data={"csrf_token": token, "reauth_password": "wrong wrong"})
    assert wrong.status_code == 401 and "Wrong password." in wrong.text and KEY not in wrong.text
    right = browser.post(key_url(base, cert_id), data={"csrf_token": token, "reauth_password": ADMIN[1]})
    assert right.status_code == 200 and KEY in right.text
    assert KEY in browser.get(key_url(base, cert_id)).text  # within the next 5 minutes: no question
    no_token = browser.post(key_url(base, cert_id), data={"reauth_password": ADMIN[1]})
    assert no_token.status_code == 400  # the question is a form like any other: CSRF applies


def test_a_pkcs12_export_carries_its_password_through_the_question(live, clock):
    base, cert_id = live
    browser = signed_in(base)
    clock.advance(minutes=6)
    url = f"{base}/certificates/{cert_id}/pkcs12"
    asked = browser.form(f"/certificates/{cert_id}/pkcs12", {"password": "p12 export secret"},
                         page=f"/certificates/{cert_id}")
    assert asked.status_code == 401 and 'name="reauth_password"' in asked.text
    assert 'name="password" value="p12 export secret"' in asked.text
    resp = browser.post(url, data={"csrf_token": browser.token("/"), "password": "p12 export secret",
                                   "reauth_password": ADMIN[1]})
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/x-pkcs12"
    from cryptography.hazmat.primitives.serialization import pkcs12
    assert pkcs12.load_pkcs12(resp.content, b"p12 export secret").key is not None


def test_saving_deploy_settings_asks_the_password_again_too(live, clock):
    base, cert_id = live
    browser = signed_in(base)
    clock.advance(minutes=6)
    path = f"/certificates/{cert_id}/deploy"
    asked = browser.form(path, {"deploy_dir": "/tmp/x", "deploy_command": "", "deploy_probe": "",
                                "action": "save"}, page=f"/certificates/{cert_id}")
    assert asked.status_code == 401 and "Confirm your password" in asked.text
    in_page = browser.post(base + path, headers={"HX-Request": "true", "X-CSRFToken": browser.token("/")},
                           data={"deploy_dir": "/tmp/x"})
    assert in_page.status_code == 200 and in_page.headers["HX-Retarget"] == "#main"
    assert 'id="reauth-form"' in in_page.text
