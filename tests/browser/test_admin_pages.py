"""Issue 17's remaining page fixes, in a real browser at the issue's sizes (1366×900, 375×812):
the htmx error handler and the error pages, the Save and Test verdict in view, feedback after a
CA profile save, and the rest as listed in each test's name."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.lab.servers import TECH_ZONE
from webapp import db
from webapp.blueprints import dashboard
from webapp.services import ca_profiles, zones

pytestmark = [pytest.mark.browser, pytest.mark.lab]

WIDE = {"width": 1366, "height": 900}
PHONE = {"width": 375, "height": 812}


def lab_zone_id(live_server) -> int:
    from webapp.models import TechZone
    with live_server.app.app_context():
        zone_id = db.session().query(TechZone).filter_by(name=TECH_ZONE).one().id
        db.session().remove()
    return zone_id


def test_htmx_errors_show_a_message_and_a_stale_token_offers_a_reload(new_page, live_server, monkeypatch):
    page = new_page(WIDE)
    sign_in(page)
    zone = f"#zone-{lab_zone_id(live_server)}"

    # A stale page: its CSRF token is refused; the message offers a reload, which fixes it.
    page.goto("/dns/")
    page.evaluate("""document.querySelectorAll("[hx-headers]").forEach(
        el => el.setAttribute("hx-headers", '{"X-CSRFToken": "stale"}'))""")
    page.locator(zone).get_by_role("button", name="Check").click()
    alert = page.locator("#sslm-http-error")
    expect(alert).to_be_visible()
    expect(alert).to_have_attribute("role", "alert")
    expect(alert).to_contain_text("security token was refused (400")
    screenshot(page, "htmx-error-csrf", full_page=False)
    reload = alert.get_by_role("button", name="Reload the page")
    expect(reload).to_be_focused()
    reload.click()
    expect(page.locator("#sslm-http-error")).to_have_count(0)
    page.locator(zone).get_by_role("button", name="Check").click()
    expect(page.locator(zone)).to_contain_text("healthy")
    expect(page.locator("#sslm-http-error")).to_have_count(0)

    # Something deleted behind the page's back: the 404 page's words, no reload offered.
    with live_server.app.app_context():
        gone = ca_profiles.create({"name": "Gone soon", "module": "letsencrypt"})
        gone_id = gone.id
        db.session().remove()
    page.goto("/ca/")
    with live_server.app.app_context():
        ca_profiles.delete(ca_profiles.get(gone_id))
        db.session().remove()
    page.locator(f"#profile-{gone_id}").get_by_role("button", name="Test").click()
    expect(alert).to_contain_text("The request was refused (404 NOT FOUND): Page not found")
    expect(alert.get_by_role("button", name="Reload the page")).to_have_count(0)
    alert.get_by_role("button", name="Dismiss").click()
    expect(alert).to_have_count(0)

    # A crash: the 500 page's words with htmx, and the 500 page in the layout without.
    def broken(_zone):
        raise RuntimeError("boom")
    monkeypatch.setattr(zones, "check", broken)
    page.goto("/dns/")
    page.locator(zone).get_by_role("button", name="Check").click()
    expect(alert).to_contain_text("The server failed (500 INTERNAL SERVER ERROR): Something went wrong")
    monkeypatch.setattr(dashboard.service, "overview", broken)
    page.goto("/")
    expect(page.get_by_role("heading", name="Something went wrong", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="SSL Manager")).to_be_visible()
    monkeypatch.undo()

    page.goto("/no/such/page")
    expect(page.get_by_role("heading", name="Page not found", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name="Certificates")).to_be_visible()
    screenshot(page, "error-404")
