"""Users and two-factor sign-in in a real browser: an admin creates a viewer on the Users page,
the viewer sees no button it may not press and gets "Not allowed" when it tries anyway; an
operator turns TOTP on by scanning (reading) the QR page, keeps its recovery codes, and the
next sign-in asks for a code. Each new page passes the axe audit."""
from __future__ import annotations

import contextlib
import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.lab]


def sign_in_as(page, username: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


@contextlib.contextmanager
def passkey_browser(browser, live_server, console, username: str, password: str):
    """A signed-in page at http://localhost (WebAuthn needs a secure context; 127.0.0.1 is not a
    domain a passkey can belong to) with Chromium's virtual authenticator (DevTools protocol)
    playing the key: discoverable credentials, user verification. A new operator `username`."""
    from tests.browser.conftest import CSP_WATCH, DESKTOP
    from webapp import db
    from webapp.services.auth import create_admin
    with live_server.app.app_context():
        create_admin(username, password, role="operator")
        db.session().remove()
    context = browser.new_context(base_url=live_server.url.replace("127.0.0.1", "localhost"), viewport=DESKTOP)
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_WATCH)
    try:
        page = context.new_page()
        console.watch(page)
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True}})
        sign_in_as(page, username, password)
        yield page
    finally:
        context.close()
    console.assert_clean()


def test_an_admin_makes_a_viewer_who_sees_and_reaches_only_what_it_may(page, new_page, live_server):
    sign_in(page)
    page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users", level=1)).to_be_visible()
    assert_accessible(page, "users page")
    page.get_by_label("Username").fill("support-sam")
    page.get_by_label("Password").fill("support's long password")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Create user").click()
    expect(page.locator("#users")).to_contain_text("support-sam")
    page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name="Certificates").click()
    expect(page.get_by_role("button", name="+ Create")).to_have_count(1)  # what the viewer will miss

    viewer = new_page()
    sign_in_as(viewer, "support-sam", "support's long password")
    expect(viewer.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    nav = viewer.get_by_role("navigation", name="SSL Manager")
    expect(nav.get_by_role("link", name="Users")).to_have_count(0)
    nav.get_by_role("link", name="Certificates").click()
    expect(viewer.get_by_role("button", name="+ Create")).to_have_count(0)
    response = viewer.goto("/certificates/new")
    assert response.status == 403
    expect(viewer.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_totp_enrolment_then_sign_in_with_a_code(new_page, live_server):
    from webapp import db
    from webapp.services.auth import create_admin
    with live_server.app.app_context():
        create_admin("ops-olga", "olga's long password", role="operator")
        db.session().remove()
    page = new_page()
    sign_in_as(page, "ops-olga", "olga's long password")
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
    page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name="Account").click()
    page.get_by_role("link", name="Two-factor sign-in").click()
    expect(page.locator("#totp-qr svg")).to_be_visible()
    assert_accessible(page, "two-factor enrolment")
    secret = page.locator("#totp-secret").inner_text()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)

    page.get_by_role("button", name="Sign out").click()
    sign_in_as(page, "ops-olga", "olga's long password")
    expect(page.get_by_label("Code from your authenticator app")).to_be_visible()
    assert_accessible(page, "two-factor sign-in")
    page.get_by_label("Code from your authenticator app").fill("000000" if pyotp.TOTP(secret).at(time.time() + 30) != "000000" else "111111")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.locator("#login-error")).to_have_text("Wrong code.")
    # The enrolment used this 30-second step's code; the next step's is accepted (clock drift).
    page.get_by_label("Code from your authenticator app").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


def test_a_passkey_as_second_factor_with_chromiums_virtual_authenticator(browser, live_server, console):
    from webapp import db
    from webapp.models import Passkey
    with passkey_browser(browser, live_server, console, "ops-pia", "pia's long password") as page:
        expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
        page.goto("/account/passkeys")
        assert_accessible(page, "passkeys page")
        page.get_by_label("Name of the new passkey").fill("laptop")
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.locator("#passkeys")).to_contain_text("laptop")

        page.get_by_role("button", name="Sign out").click()
        sign_in_as(page, "ops-pia", "pia's long password")
        expect(page.get_by_role("button", name="Use a passkey")).to_be_visible()
        expect(page.get_by_label("Code from your authenticator app")).to_have_count(0)  # no TOTP
        page.get_by_role("button", name="Use a passkey").click()
        expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
        with live_server.app.app_context():
            key = db.session().query(Passkey).one()
            assert key.name == "laptop" and key.last_used_at is not None
            db.session().remove()


def test_a_passkey_alone_signs_in_and_a_disabled_user_is_refused(browser, live_server, console):
    """Password-less: a passkey made on the account page (Chromium's virtual authenticator keeps
    it as a discoverable credential, with user verification) is all the sign-in needs."""
    from webapp import db
    from webapp.models import Admin, AuditEvent
    with passkey_browser(browser, live_server, console, "ops-pax", "pax's long password") as page:
        page.goto("/account/passkeys")
        page.get_by_label("Name of the new passkey").fill("laptop")
        page.get_by_role("button", name="Add a passkey").click()
        expect(page.locator("#passkeys")).to_contain_text("laptop")
        page.get_by_role("button", name="Sign out").click()

        expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_visible()
        assert_accessible(page, "login page with passkeys")
        page.get_by_role("button", name="Sign in with a passkey").click()  # no username, no password
        expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
        page.get_by_role("button", name="Sign out").click()

        with live_server.app.app_context():
            signed = db.session().query(AuditEvent).filter_by(action="signed in", summary="passkey").one()
            assert signed.actor == "ops-pax"
            db.session().query(Admin).filter_by(username="ops-pax").one().disabled = True
            db.session().commit()
            db.session().remove()
        page.get_by_role("button", name="Sign in with a passkey").click()
        expect(page.locator("#passkey-error")).to_have_text("The passkey was not accepted.")
        expect(page.get_by_role("button", name="Sign in with a passkey")).to_be_enabled()
        assert page.context.request.get("/", max_redirects=0).status == 302


def test_without_webauthn_the_login_page_is_the_password_form(new_page, live_server):
    """Progressive enhancement: where the browser has no WebAuthn, no passkey button shows."""
    page = new_page()
    page.add_init_script("delete window.PublicKeyCredential;")
    page.goto("/login")
    expect(page.get_by_role("button", name="Sign in", exact=True)).to_be_visible()
    expect(page.locator("#passkey-sign-in")).to_be_hidden()
