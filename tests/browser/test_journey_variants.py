"""The journey's first half (sign in → create a CA profile → Save and Test → add a certificate →
the CNAME instructions) again, at 375 × 812 with taps, and by keyboard only: Tab reaches each
control, Enter or Space presses it, and the page never sees a pointer event."""
from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, assert_accessible, screenshot
from tests.conftest import ADMIN
from tests.lab.servers import TECH_ZONE

pytestmark = [pytest.mark.browser, pytest.mark.lab]

PHONE_TALL = {"width": 375, "height": 812}
# Counts every pointer press the page sees, across the tab's navigations (sessionStorage).
POINTER_WATCH = """
document.addEventListener("pointerdown", function () {
  sessionStorage.setItem("sslm-pointer", String(Number(sessionStorage.getItem("sslm-pointer") || 0) + 1));
}, true);
"""


class Taps:
    """A phone user: taps, and the folded navigation behind its Menu button."""

    def __init__(self, page):
        self.page = page

    def nav(self, name: str) -> None:
        nav = self.page.get_by_role("navigation", name="SSL Manager")
        menu = nav.get_by_role("button", name="Menu")
        expect(menu).to_have_attribute("aria-expanded", "false")  # folded at 375 px
        menu.click()
        nav.get_by_role("link", name=name, exact=True).click()

    def press(self, control) -> None:
        control.click()

    def fill(self, field, text: str) -> None:
        field.fill(text)

    def choose(self, select, value: str) -> None:
        select.select_option(value=value)

    def set_checked(self, box, checked: bool) -> None:
        box.set_checked(checked)


class Keys:
    """A keyboard-only user: Tab to the control, then Enter, Space or arrows; text is typed."""

    def __init__(self, page):
        self.page = page

    def tab_to(self, control, limit: int = 80) -> None:
        for _ in range(limit):
            if control.evaluate("el => el === document.activeElement"):
                return
            self.page.keyboard.press("Tab")
        raise AssertionError(f"{limit} presses of Tab did not reach {control}")

    def nav(self, name: str) -> None:
        self.press(self.page.get_by_role("navigation", name="SSL Manager").get_by_role("link", name=name, exact=True))

    def press(self, control) -> None:
        self.tab_to(control)
        expect(control).to_be_focused()
        self.page.keyboard.press("Enter")

    def fill(self, field, text: str) -> None:
        self.tab_to(field)
        self.page.keyboard.press("Control+A")
        self.page.keyboard.press("Delete")
        self.page.keyboard.insert_text(text)  # as typed, without a key event per character

    def choose(self, select, value: str) -> None:
        self.tab_to(select)
        count = select.locator("option").count()
        for key in ("ArrowDown", "ArrowUp"):
            for _ in range(count):
                if select.input_value() == value:
                    return
                self.page.keyboard.press(key)
        assert select.input_value() == value, f"the arrows never chose option {value} of {select}"

    def set_checked(self, box, checked: bool) -> None:
        self.tab_to(box)
        if box.is_checked() != checked:
            self.page.keyboard.press("Space")
        expect(box).to_be_checked(checked=checked)


@pytest.mark.parametrize("mode", ["phone", "keyboard"])
def test_the_journey_to_the_cname_instructions_at_375_px_and_by_keyboard_only(mode, new_page, live_server, lab_pebble):
    page = new_page(PHONE_TALL if mode == "phone" else DESKTOP)
    page.add_init_script(POINTER_WATCH)
    user = Taps(page) if mode == "phone" else Keys(page)
    profile, domain = f"Pebble {mode}", f"{mode}.journey.test"

    # -- sign in ----------------------------------------------------------------------------
    page.goto("/login")
    assert_accessible(page, f"sign-in page ({mode})")
    user.fill(page.get_by_label("Username"), ADMIN[0])
    user.fill(page.get_by_label("Password"), ADMIN[1])
    user.press(page.get_by_role("button", name="Sign in", exact=True))
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()

    # -- a CA profile for Pebble ------------------------------------------------------------
    user.nav("Certificate Authorities")
    user.press(page.get_by_role("button", name="+ Create"))
    user.fill(page.get_by_label("Name"), profile)
    module = page.get_by_label("Module")
    user.choose(module, module.locator("option", has_text="Custom ACME").get_attribute("value"))
    user.press(page.get_by_role("button", name="Save", exact=True))
    expect(page.get_by_role("heading", name="Edit CA profile")).to_be_visible()
    user.fill(page.get_by_label("Certificate Authority: ACME directory URL"), lab_pebble.directory_url)
    user.fill(page.get_by_label("CA bundle for the directory's TLS certificate (PEM, optional)"),
              Path(lab_pebble.ca_bundle).read_text())
    user.fill(page.get_by_label("Email address for the ACME account"), "ops@example.com")
    user.fill(page.get_by_label("DNS Zone (technical zone)"), TECH_ZONE)
    user.set_checked(page.get_by_label("Allow wildcard certificates"), False)
    user.fill(page.get_by_label("DNS Record TTL (seconds)"), "30")
    user.fill(page.get_by_label("API Timeout (seconds)"), "10")

    # -- Save and Test: the verdict, then back --------------------------------------------------
    save_and_test = page.get_by_role("button", name="Save and Test")
    user.press(save_and_test)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=20_000)
    expect(dialog.get_by_text("API is available")).to_be_visible()
    screenshot(page, f"{mode}-ca-save-and-test", full_page=False)
    assert_accessible(page, f"Save and Test dialog ({mode})")
    if mode == "phone":
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        user.press(dialog.get_by_role("button", name="Close").last)
    else:
        page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.get_by_text("Saved. Test: API is available.")).to_be_visible()

    # -- a certificate, and the CNAME to create ------------------------------------------------
    user.nav("Certificates")
    user.press(page.get_by_role("button", name="+ Create"))
    user.fill(page.get_by_label("Domains"), domain)
    choice = page.get_by_label("CA profile")
    user.choose(choice, choice.locator("option", has_text=profile).get_attribute("value"))
    user.press(page.get_by_role("button", name="Create and request"))
    expect(page.get_by_role("heading", name=domain, level=1)).to_be_visible()
    expect(page.locator("#cert-status")).to_contain_text("Pending (CNAME)")
    expect(page.get_by_role("heading", name="Create this CNAME record")).to_be_visible()
    record = page.locator("#cnames table tbody tr")
    expect(record).to_have_count(1)
    expect(record.locator("td").nth(0).locator("code")).to_have_text(f"_acme-challenge.{domain}")
    expect(record.locator("td").nth(2).locator("code")).to_contain_text("." + TECH_ZONE)
    screenshot(page, f"{mode}-certificate-cname")
    assert_accessible(page, f"Pending certificate ({mode})")
    if mode == "phone":
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        expect(record.locator("td").nth(0).locator("code")).to_be_in_viewport()

    pointer = int(page.evaluate("sessionStorage.getItem('sslm-pointer') || '0'"))
    assert (pointer == 0) if mode == "keyboard" else (pointer > 0), f"{mode}: {pointer} pointer presses"
