"""An admin's journey in a real browser, click by click, asserting what the user sees: sign in,
create and Save and Test a CA profile for Pebble, request a certificate for customer.test and
*.customer.test, watch it go Active by itself once the CNAME exists, download the full chain,
find it on the dashboard, with an axe-core audit of each page state. Then the failure journeys,
the phone width, and the keyboard (test_journey_variants.py runs the first half at 375 px and
by keyboard only)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography import x509
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, assert_accessible, screenshot, sign_in
from tests.conftest import add_lab_profile
from tests.lab.servers import TECH_ZONE

pytestmark = [pytest.mark.browser, pytest.mark.lab]


def nav(page, name: str) -> None:
    """Follow a link of the main navigation."""
    page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name=name, exact=True).click()


def create_profile(page, name: str, module_label: str = "Custom ACME (active)") -> None:
    """Certificate Authorities → + Create → Name and Module → Save: lands on Edit."""
    nav(page, "Certificate Authorities")
    page.get_by_role("button", name="+ Create").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Module").select_option(label=module_label)
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("heading", name="Edit CA profile")).to_be_visible()


def fill_custom_profile(page, directory_url: str, ca_bundle: str, *, wildcard: bool) -> None:
    page.get_by_label("Certificate Authority: ACME directory URL").fill(directory_url)
    page.get_by_label("CA bundle for the directory's TLS certificate (PEM, optional)").fill(ca_bundle)
    page.get_by_label("Email address for the ACME account").fill("ops@example.com")
    page.get_by_label("DNS Zone (technical zone)").fill(TECH_ZONE)
    switch = page.get_by_label("Allow wildcard certificates")
    if wildcard:
        switch.check()
    else:
        switch.uncheck()
    page.get_by_label("DNS Record TTL (seconds)").fill("30")
    page.get_by_label("API Timeout (seconds)").fill("10")


def status_count(page, status: str) -> int:
    return int(page.locator(f"#count-{status} .sslm-count").inner_text())


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")


def test_admin_journey_from_ca_profile_to_an_active_wildcard_certificate(page, new_page, live_server, lab_pebble):
    # -- sign in ----------------------------------------------------------------------------
    page.goto("/login")
    screenshot(page, "login")
    assert_accessible(page, "sign-in page")
    sign_in(page)
    assert_accessible(page, "dashboard, before")
    active_before = status_count(page, "active")

    # -- a CA profile for Pebble, Save and Test ----------------------------------------------
    create_profile(page, "Pebble lab")
    fill_custom_profile(page, lab_pebble.directory_url, Path(lab_pebble.ca_bundle).read_text(), wildcard=True)

    # Keyboard: from the last field, Tab reaches Save and Test, and the focus is visible.
    page.get_by_label("API Timeout (seconds)").focus()
    save_and_test = page.get_by_role("button", name="Save and Test")
    for _ in range(5):
        page.keyboard.press("Tab")
        if save_and_test.evaluate("el => el === document.activeElement"):
            break
    expect(save_and_test).to_be_focused()
    focus = save_and_test.evaluate("""el => {
        const s = getComputedStyle(el);
        return {visible: el.matches(':focus-visible'), style: s.outlineStyle, width: parseFloat(s.outlineWidth)};
    }""")
    assert focus["visible"] and focus["style"] != "none" and focus["width"] >= 2, focus
    screenshot(page, "ca-edit-focus", full_page=False)
    page.keyboard.press("Enter")  # Save and Test, from the keyboard

    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=20_000)
    expect(dialog.get_by_text("API is available")).to_be_visible()
    expect(dialog.get_by_role("heading", name="ACME directory endpoints")).to_be_visible()
    for endpoint in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        expect(dialog.get_by_role("cell", name=endpoint, exact=True)).to_be_visible()
    expect(dialog.get_by_text(re.compile(r"/my-account/"))).to_be_visible()  # the ACME account
    dialog.evaluate("d => { d.scrollTop = 0; d.querySelectorAll('article').forEach(a => a.scrollTop = 0); }")
    screenshot(page, "ca-save-and-test", full_page=False)
    assert_accessible(page, "CA edit with the Save and Test dialog open")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(save_and_test).to_be_focused()  # back where the keyboard user was
    expect(page.get_by_text("Saved. Test: API is available.")).to_be_visible()

    nav(page, "Certificate Authorities")
    row = page.get_by_role("row").filter(has_text="Pebble lab")
    expect(row.get_by_text("API is available")).to_be_visible()
    screenshot(page, "ca-list")
    assert_accessible(page, "CA list")

    # -- a certificate for customer.test and *.customer.test ---------------------------------
    nav(page, "Certificates")
    page.get_by_role("button", name="+ Create").click()
    page.get_by_label("Domains").fill("customer.test\n*.customer.test")
    page.get_by_label("CA profile").select_option(label="Pebble lab (wildcards allowed)")
    screenshot(page, "certificate-new")
    assert_accessible(page, "certificate create")
    page.get_by_role("button", name="Create and request").click()

    expect(page.get_by_role("heading", name="customer.test", level=1)).to_be_visible()
    expect(page.locator("#cert-status")).to_contain_text("Pending (CNAME)")
    expect(page.get_by_role("heading", name="Create this CNAME record")).to_be_visible()
    records = page.locator("#cnames table tbody tr")
    expect(records).to_have_count(1)  # the apex and its wildcard share one _acme-challenge name
    name = records.locator("td").nth(0).locator("code").inner_text()
    target = records.locator("td").nth(2).locator("code").inner_text()
    assert name == "_acme-challenge.customer.test" and target.endswith("." + TECH_ZONE)
    expect(page.locator("#cname-checks")).to_contain_text("_acme-challenge.customer.test")
    screenshot(page, "certificate-cname")
    assert_accessible(page, "Pending certificate, CNAME instructions")
    detail_url = page.url

    # -- the domain owner creates the CNAME; the status moves to Active by itself -------------
    live_server.bind.set_cname(name, target)
    try:
        expect(page.locator("#cert-status h2")).to_contain_text("Active", timeout=40_000)
    finally:
        live_server.bind.clear(name)
    assert page.url == detail_url
    expect(page.locator("#cert-step")).to_contain_text("Issued and valid until")
    expect(page.get_by_role("heading", name="Downloads")).to_be_visible()
    screenshot(page, "certificate-active")
    assert_accessible(page, "Active certificate")

    # -- download the full chain: it parses, and it is for both names ------------------------
    with page.expect_download() as info:
        page.locator(".sslm-downloads").get_by_role("link", name="fullchain.pem").click()
    download = info.value
    assert download.suggested_filename == "customer.test-fullchain.pem"
    chain = x509.load_pem_x509_certificates(Path(download.path()).read_bytes())
    assert len(chain) >= 2
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"customer.test", "*.customer.test"}
    assert chain[0].issuer == chain[1].subject

    # -- the dashboard counts it ------------------------------------------------------------
    nav(page, "Dashboard")
    expect(page.locator("#count-active .sslm-count")).to_have_text(str(active_before + 1))
    expect(page.get_by_role("heading", name="Expiry timeline: the next 90 days")).to_be_visible()
    expect(page.locator("#scheduler")).to_contain_text("Last run:")
    expect(page.locator("#scheduler")).not_to_contain_text("never")
    screenshot(page, "dashboard")
    assert_accessible(page, "dashboard, after")

    # -- the zone page and the notifications, as they stand now ------------------------------
    nav(page, "DNS Manager")
    expect(page.locator("main h1")).to_be_visible()
    assert_accessible(page, "DNS Manager (zones)")
    nav(page, "Notifications")
    expect(page.locator("main h1")).to_be_visible()
    assert_accessible(page, "notifications")

    # -- and the audit log tells the story ---------------------------------------------------
    nav(page, "Audit log")
    table = page.locator("#audit-rows")
    for action in ("signed in", "CA profile created", "CA profile edited", "CA profile tested",
                   "certificate created", "certificate issued"):
        expect(table.get_by_role("cell", name=action, exact=True).first).to_be_visible()
    screenshot(page, "audit-log")
    assert_accessible(page, "audit log")
    page.get_by_label("Action").select_option("certificate issued")
    expect(table.get_by_role("row")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"action=certificate(\+|%20)issued"))  # the filter is in the URL
    screenshot(page, "audit-log-filtered")

    # -- the same pages at 375 px: usable, no horizontal scroll ------------------------------
    phone = new_page(PHONE)
    sign_in(phone)
    cert_path = detail_url.removeprefix(live_server.url)
    profile_path = profile_edit_path(page, "Pebble lab")
    for shot, path in (("phone-dashboard", "/"), ("phone-ca-list", "/ca/"), ("phone-ca-edit", profile_path),
                       ("phone-certificates", "/certificates/"), ("phone-certificate-new", "/certificates/new"),
                       ("phone-certificate-active", cert_path),
                       ("phone-dns", "/dns/"), ("phone-audit-log", "/audit/")):
        phone.goto(path)
        expect(phone.locator("main h1")).to_be_visible()
        screenshot(phone, shot)
        assert no_horizontal_scroll(phone), f"{path} scrolls sideways at 375 px"
        assert_accessible(phone, f"{shot} at 375 px")


def profile_edit_path(page, name: str) -> str:
    """The Edit link of a CA profile, as the list shows it."""
    page.goto("/ca/")
    return page.get_by_role("row").filter(has_text=name).get_by_role("link", name="Edit").get_attribute("href")


def test_a_wrong_directory_url_shows_the_diagnosis_in_the_modal(page, lab_pebble):
    sign_in(page)
    create_profile(page, "Wrong URL")
    wrong = lab_pebble.directory_url.replace("/dir", "/directory")  # the right CA, a wrong path
    fill_custom_profile(page, wrong, Path(lab_pebble.ca_bundle).read_text(), wildcard=False)
    page.get_by_role("button", name="Save and Test").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=20_000)
    expect(dialog.get_by_role("alert")).to_contain_text("Test failed at “fetch directory”")
    expect(dialog).to_contain_text("404")
    expect(dialog).to_contain_text(f"URL: {wrong}")
    expect(dialog).to_contain_text("What to do:")
    expect(dialog.get_by_text("API is available")).to_have_count(0)
    screenshot(page, "ca-test-failed", full_page=False)
    dialog.get_by_role("button", name="Close").last.click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("button", name="Save and Test")).to_be_focused()  # focus comes back
    nav(page, "Dashboard")
    expect(page.locator("#failing-profiles")).to_contain_text("Wrong URL")


def test_a_wildcard_on_a_profile_without_wildcards_shows_the_reason_beside_the_field(page, live_server, lab_pebble):
    with live_server.app.app_context():
        add_lab_profile(lab_pebble, name="No wildcards", allow_wildcard="")
    sign_in(page)
    nav(page, "Certificates")
    page.get_by_role("button", name="+ Create").click()
    page.get_by_label("Domains").fill("*.other.test")
    page.get_by_label("CA profile").select_option(label="No wildcards (never tested)")
    page.get_by_role("button", name="Create and request").click()

    expect(page.get_by_role("alert").first).to_contain_text("Nothing was created")
    domains = page.get_by_label("Domains")
    expect(domains).to_have_attribute("aria-invalid", "true")
    expect(domains).to_have_value("*.other.test")  # what was typed is kept
    error = page.locator("#err-domains")
    expect(error).to_contain_text("wildcards are not allowed by this CA profile")
    expect(error).to_contain_text("Allow wildcard certificates")
    assert "err-domains" in domains.get_attribute("aria-describedby")
    # Beside the field: the error follows the textarea directly, before the next field.
    assert domains.evaluate("el => el.nextElementSibling.id") == "err-domains"
    screenshot(page, "certificate-wildcard-refused")


def test_the_csp_watch_catches_an_inline_style(page, console):
    """The watch the other tests rely on does see a violation (then forgets it)."""
    sign_in(page)
    page.evaluate("""document.body.insertAdjacentHTML("beforeend", '<p style="color: red">x</p>')""")
    # Chrome's own report and the page's securitypolicyviolation event, both collected.
    assert wait_until(page, lambda: any("CSP violation: style-src-attr" in line for line in console.csp)
                      and any("Applying inline style violates" in line for line in console.csp)), console.csp
    console.csp.clear()


def wait_until(page, predicate, timeout_ms: int = 2000) -> bool:
    """Poll a Python-side condition while the page's events flow in."""
    for _ in range(timeout_ms // 25):
        if predicate():
            return True
        page.wait_for_timeout(25)
    return predicate()


def test_the_axe_audit_fails_on_a_serious_violation(page):
    """The audit the journey relies on does run and does fail: a button without a name is
    axe-core's "button-name", critical."""
    sign_in(page)
    assert_accessible(page, "dashboard")
    page.evaluate("""document.querySelector("main")
                     .insertAdjacentHTML("beforeend", '<button id="nameless"></button>')""")
    with pytest.raises(AssertionError) as failed:
        assert_accessible(page, "dashboard with a nameless button")
    assert "[critical] button-name: Buttons must have discernible text at #nameless" in str(failed.value)
