"""Issue 17's remaining page fixes (after the journey and test_pages: these make profiles and certificates of their own), in a real browser at the issue's sizes (1366×900, 375×812):
the htmx error handler and the error pages, the Save and Test verdict in view, feedback after a
CA profile save, and the rest as listed in each test's name."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import assert_accessible, screenshot, sign_in
from tests.conftest import add_lab_profile
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
    page.locator(f"#profile-{gone_id}").get_by_role("button", name="Actions for Gone soon").click()
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


IN_VIEW = """el => {
    const r = el.getBoundingClientRect(), box = el.closest('article').getBoundingClientRect();
    return r.height > 0 && r.top >= Math.max(0, box.top) && r.bottom <= Math.min(window.innerHeight, box.bottom);
}"""


@pytest.mark.parametrize("viewport", [WIDE, {"width": 1366, "height": 500}, PHONE], ids=["1366x900", "1366x500", "375x812"])
def test_the_save_and_test_verdict_opens_in_view_and_long_tables_scroll_inside(new_page, live_server, lab_pebble, viewport):
    with live_server.app.app_context():
        pid = add_lab_profile(lab_pebble, name=f"Verdict {viewport['width']}x{viewport['height']}").id
        db.session().remove()
    page = new_page(viewport)
    sign_in(page)
    page.goto(f"/ca/{pid}/edit")
    page.get_by_role("button", name="Save and Test").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=20_000)
    verdict = dialog.get_by_text("API is available", exact=True)
    expect(verdict).to_be_visible()
    expect(dialog.locator("[data-verdict]")).to_be_focused()
    assert dialog.locator("h2").evaluate(IN_VIEW), "the title is scrolled out of view"
    assert dialog.locator("[data-verdict]").evaluate(IN_VIEW), "the verdict is scrolled out of view"
    tables = dialog.get_by_role("region", name="Directory details")
    assert tables.evaluate("el => getComputedStyle(el).overflowY") == "auto"
    assert tables.evaluate("el => el.clientHeight <= window.innerHeight * 0.41")
    if viewport == WIDE:  # room enough: the Close button shows too, nothing to scroll in the dialog
        assert dialog.locator("footer button").evaluate(IN_VIEW)
    screenshot(page, f"ca-verdict-{viewport['width']}x{viewport['height']}", full_page=False)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Save and Test")).to_be_focused()


def test_saving_a_ca_profile_brings_saved_or_the_first_error_into_view_with_focus(new_page, live_server, lab_pebble):
    with live_server.app.app_context():
        pid = add_lab_profile(lab_pebble, name="Feedback CA").id
        db.session().remove()
    page = new_page(WIDE)
    sign_in(page)
    page.goto(f"/ca/{pid}/edit")
    url = page.get_by_label("Certificate Authority: ACME directory URL")
    url.fill("not a url")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(url).to_be_focused()
    expect(url).to_have_attribute("aria-invalid", "true")
    expect(url).to_be_in_viewport()
    expect(page.locator("#err-directory_url")).to_be_in_viewport()

    url.fill(lab_pebble.directory_url)
    page.get_by_role("button", name="Save", exact=True).click()
    saved = page.get_by_text("Saved.", exact=True)
    expect(saved).to_be_focused()
    expect(saved).to_be_in_viewport()
    screenshot(page, "ca-saved-in-view", full_page=False)


def test_pending_shows_the_record_first_and_the_live_check_starts_issuing_in_place(new_page, live_server, lab_pebble):
    from datetime import timedelta

    from webapp.models import utcnow
    from webapp.services import certificates
    with live_server.app.app_context():
        profile = add_lab_profile(lab_pebble, name="Live check CA")
        assert ca_profiles.test(profile).ok
        cert = certificates.request(certificates.create({"profile_id": profile.id, "domains": "live.customer.test"}))
        cert.next_run_at = utcnow() + timedelta(days=1)  # the scheduler will not look: only the page can start it
        db.session().commit()
        cert_id, (record,) = cert.id, certificates.instructions(cert)
        db.session().remove()
    try:
        for viewport in (PHONE, WIDE):  # the record to create comes first, above the facts
            page = new_page(viewport)
            sign_in(page)
            page.goto(f"/certificates/{cert_id}")
            expect(page.get_by_role("heading", name="Create this CNAME record")).to_be_in_viewport()
            expect(page.get_by_role("button", name=f"Copy the record for {record.name}")).to_be_in_viewport()
            assert page.evaluate("""() => !!(document.querySelector('#cnames').compareDocumentPosition(
                document.querySelector('table.sslm-facts')) & Node.DOCUMENT_POSITION_FOLLOWING)""")
            expect(page.locator("#cname-checks")).to_contain_text("Fix:")
            screenshot(page, f"certificate-pending-{viewport['width']}", full_page=False)

        page.evaluate("window.sslmSamePage = true")  # gone if the page reloads
        live_server.bind.set_cname(record.name, record.target)
        expect(page.locator("#cert-status h2")).to_contain_text("Active", timeout=60_000)
        assert page.evaluate("window.sslmSamePage === true"), "the page reloaded"
        expect(page.get_by_role("link", name="fullchain.pem").first).to_be_visible()
        expect(page.locator("#cnames")).to_have_count(0)
        expect(page.locator("#cert-status")).to_contain_text("processing: every CNAME resolves into the technical zone")
    finally:
        live_server.bind.clear(record.name)


def test_webhook_send_test_diagnoses_quickly_and_updates_the_row_in_place(new_page, live_server):
    import socket
    import time

    from webapp.services import notifications
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with live_server.app.app_context():
        channel = notifications.save_channel(None, "webhook", {
            "name": "Dead receiver", "enabled": "1", "url": f"http://127.0.0.1:{port}/hook",
            "secret": "a-long-enough-secret", "events": []})
        cid = channel.id
        db.session().remove()
    try:
        page = new_page(WIDE)
        sign_in(page)
        page.goto("/notifications/")
        row = page.locator(f"#channel-{cid}")
        expect(row).to_contain_text("never")
        started = time.monotonic()
        row.get_by_role("button", name="Send test").click()
        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_role("alert")).to_contain_text("Not sent: failed at “webhook connect”")
        assert time.monotonic() - started < 5
        expect(dialog).to_contain_text(f"Cause: connection refused by 127.0.0.1:{port}")
        expect(dialog).to_contain_text("What to do: Check the URL's host and port")
        expect(dialog.locator("[data-verdict]")).to_be_focused()
        screenshot(page, "webhook-send-test-refused", full_page=False)
        dialog.get_by_role("button", name="Close").last.click()
        expect(row).to_contain_text("failed")  # in place: no reload
        expect(row).not_to_contain_text("never")
    finally:
        with live_server.app.app_context():
            notifications.delete_channel(notifications.get_channel(cid))
            db.session().remove()


def contrast(page, selector: str) -> float:
    """The WCAG contrast ratio of an element's text against the first opaque background behind it."""
    return page.locator(selector).first.evaluate("""el => {
        const rgb = s => s.match(/[\\d.]+/g).map(Number);
        const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
            return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
            return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
        let bg = el, back = [255, 255, 255, 1];
        while (bg) { const c = rgb(getComputedStyle(bg).backgroundColor);
            if (c.length < 4 || c[3] === 1) { back = c; break; } bg = bg.parentElement; }
        const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(back)].sort((x, y) => y - x);
        return (a + 0.05) / (b + 0.05);
    }""")


def test_skip_link_warning_contrast_and_favicon(new_page, live_server):
    page = new_page(WIDE)
    sign_in(page)
    page.goto("/certificates/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to the content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()
    page.keyboard.press("Tab")  # the next stop is in the content, not the navigation
    assert page.evaluate("document.querySelector('main').contains(document.activeElement)")
    skip.evaluate("el => el.blur()")
    assert skip.evaluate("el => el.getBoundingClientRect().bottom <= 0")  # hidden unless focused

    # Both warning colours, on white and on a card: at least 4.5:1.
    page.evaluate("""() => {
        const main = document.querySelector('main');
        for (const [cls, tag] of [['sslm-warn', 'span'], ['sslm-level-warning', 'p']]) {
            const el = document.createElement(tag); el.className = cls; el.textContent = 'warning'; main.append(el);
            const card = document.createElement('article'), inner = document.createElement(tag);
            inner.className = cls + ' in-card'; inner.textContent = 'warning'; card.append(inner); main.append(card);
        }}""")
    for selector in (".sslm-warn", ".sslm-level-warning", ".sslm-warn.in-card", ".sslm-level-warning.in-card"):
        assert contrast(page, selector) >= 4.5, selector

    icon = page.locator("link[rel=icon]").get_attribute("href")
    resp = page.request.get(icon)
    assert resp.ok and resp.headers["content-type"].startswith("image/svg+xml")
    page.goto("/login")  # the sign-in page has it too
    assert page.locator("link[rel=icon]").count() == 1


def test_forms_with_errors_pass_axe_and_the_contrast_it_leaves_for_review(new_page, live_server, lab_pebble):
    """axe leaves the contrast of invalid fields "for review" (Pico draws an icon as their
    background image; empty fields have no text): assert_accessible reviews them, and fails
    when one is too faint."""
    with live_server.app.app_context():
        add_lab_profile(lab_pebble, name="Errors CA", allow_wildcard="")
        db.session().remove()
    page = new_page(WIDE)
    sign_in(page)
    page.goto("/certificates/new")
    page.get_by_label("Domains").fill("*.other.test")
    page.get_by_label("CA profile").select_option(label="Errors CA (never tested)")
    page.get_by_role("button", name="Create and request").click()
    expect(page.get_by_label("Domains")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page, "certificate form with an error")

    page.goto("/ca/new")
    page.locator("form#ca-form, main form").last.evaluate("f => f.noValidate = true")  # the server's errors
    page.get_by_role("button", name="Save", exact=True).click()  # every required field empty
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    assert_accessible(page, "CA profile form with errors")

    page.get_by_label("Name").evaluate("el => { el.value = 'x'; el.style.transition = 'none'; el.style.color = '#bbbbbb'; }")
    with pytest.raises(AssertionError) as failed:
        assert_accessible(page, "a faint invalid field")
    assert "contrast axe left for review" in str(failed.value) and "#f-name" in str(failed.value)


def test_the_ca_profile_list_fits_at_1366_with_its_actions_in_a_menu(new_page, live_server, lab_pebble):
    with live_server.app.app_context():
        wide = add_lab_profile(lab_pebble, name="A very long profile name for the widest of rows",
                               description="Production issuance for every customer project. " * 10)
        wide.directory_url = lab_pebble.directory_url + "?" + "long-query-string-" * 8
        db.session().commit()
        wide_id = wide.id
        db.session().remove()
    page = new_page(WIDE)
    sign_in(page)
    page.goto("/ca/")
    table = page.locator("main table").first
    fits = table.evaluate("t => t.getBoundingClientRect().right <= document.querySelector('main').getBoundingClientRect().right + 1")
    assert fits, table.evaluate("t => [t.getBoundingClientRect().right, t.parentElement.scrollWidth, t.parentElement.clientWidth, document.querySelector('main').getBoundingClientRect().right]")
    row = page.locator(f"#profile-{wide_id}")
    menu = row.get_by_role("button", name="Actions for A very long profile name for the widest of rows")
    expect(menu).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert row.locator(".sslm-clamp").evaluate("el => el.getBoundingClientRect().height < 80")  # two lines
    # The menu, by keyboard: open it, Test is there.
    menu.focus()
    page.keyboard.press("Enter")
    test = row.get_by_role("button", name="Test")
    expect(test).to_be_visible()
    screenshot(page, "ca-list-1366", full_page=False)
    for control in (menu, test, row.get_by_role("button", name="Delete")):  # nothing clipped or off-screen
        assert control.evaluate("""el => { const r = el.getBoundingClientRect(), w = el.closest('.sslm-table-wrap');
            return r.right <= w.getBoundingClientRect().right && w.scrollWidth <= w.clientWidth; }""")
    test.click()
    expect(page.get_by_role("dialog")).to_be_visible(timeout=20_000)
    page.keyboard.press("Escape")

    # A description over the cap: refused beside its field, nothing lost.
    page.goto(f"/ca/{wide_id}/edit")
    description = page.get_by_label("Description")
    assert description.get_attribute("maxlength") == "500"
    description.evaluate("el => { el.removeAttribute('maxlength'); el.value = 'x'.repeat(10000); }")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#sslm-http-error")).to_contain_text("The field “description” holds 10,000 characters")
    expect(page.get_by_role("heading", name="Edit CA profile")).to_be_visible()  # the form stays as typed
    description.evaluate("el => { el.value = 'y'.repeat(600); }")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("#err-description")).to_have_text(re.compile(r"Keep the description to 500 characters \(it has 600\)"))
    expect(page.get_by_label("Description")).to_be_focused()
    expect(page.get_by_label("Description")).to_have_value("y" * 600)


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_at_375_px_the_navigation_folds_the_list_is_cards_and_the_zone_form_fits(new_page, live_server, lab_pebble):
    from datetime import timedelta

    from tests.conftest import make_certificate
    from webapp.models import utcnow
    with live_server.app.app_context():
        pid = add_lab_profile(lab_pebble, name="Phone CA").id
        db.session().remove()
    cert_id = make_certificate(live_server.app, pid, "phone-card.customer.test", status="active",
                               not_after=utcnow() + timedelta(days=12, hours=12))
    page = new_page(PHONE)
    sign_in(page)
    nav = page.get_by_role("navigation", name="SSL Manager")
    menu = nav.get_by_role("button", name="Menu")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(nav.get_by_role("link", name="Certificates")).to_be_hidden()
    heading = page.get_by_role("heading", name="Dashboard", level=1)
    assert heading.evaluate("el => el.getBoundingClientRect().bottom < window.innerHeight * 0.3")
    screenshot(page, "phone-nav-folded", full_page=False)
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    nav.get_by_role("link", name="Certificates").click()

    # One card per certificate: status and days left in view, no sideways swipe.
    page.get_by_label("Search domains").fill("phone-card")
    card = page.locator(f"#cert-{cert_id}")
    expect(card).to_have_count(1)
    expect(card.get_by_text("Active")).to_be_in_viewport()
    days = card.locator("td[data-label='Days left']")
    expect(days).to_contain_text("12")
    expect(days).to_be_in_viewport()
    assert card.evaluate("el => getComputedStyle(el).display") == "grid"
    assert no_sideways_scroll(page)
    screenshot(page, "phone-certificate-cards", full_page=False)

    # The zone form: as wide as the screen at most; "Show its settings" a button, not a bar.
    for viewport in (PHONE, WIDE):
        page.set_viewport_size(viewport)
        page.goto("/dns/zones/new")
        assert no_sideways_scroll(page), viewport
        select = page.get_by_label("DNS provider")
        assert select.evaluate("el => el.getBoundingClientRect().right <= document.documentElement.clientWidth")
        show = page.get_by_role("button", name="Show its settings")
        width = show.evaluate("el => el.getBoundingClientRect().width")
        assert width < 0.6 * min(viewport["width"], 1200), (viewport, width)
        expect(page.get_by_label("TSIG algorithm")).to_have_value("hmac-sha256")
        assert page.get_by_label("TSIG algorithm").evaluate("el => el.tagName") == "SELECT"
    screenshot(page, "zone-form-1366", full_page=False)
