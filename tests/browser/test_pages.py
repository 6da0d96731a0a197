"""Actions an operator looked for, in a real browser (after the journey: they issue and revoke
certificates of their own): editing and deleting a DNS zone, Test without saving and the
question before a failing Save and Test replaces a profile that Active certificates use,
Renew now on the page and for ticked rows, and a revoked certificate that looks revoked and
offers to issue again under its profile."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in
from tests.conftest import add_lab_profile, make_certificate
from tests.lab.servers import TECH_ZONE
from webapp import db
from webapp.services import ca_profiles, certificates, pipeline

pytestmark = [pytest.mark.browser, pytest.mark.lab]


def busy_profile(live_server, lab_pebble, name: str) -> int:
    """A tested Pebble profile with one Active certificate on it."""
    with live_server.app.app_context():
        profile = add_lab_profile(lab_pebble, name=name)
        assert ca_profiles.test(profile).ok
        pid = profile.id
        db.session().remove()
    make_certificate(live_server.app, pid, f"{name.lower().replace(' ', '-')}.customer.test", status="active")
    return pid


def test_test_without_saving_then_a_failing_save_and_test_asks_first(page, live_server, lab_pebble):
    pid = busy_profile(live_server, lab_pebble, "Busy CA")
    sign_in(page)
    page.goto(f"/ca/{pid}/edit")
    url = page.get_by_label("Certificate Authority: ACME directory URL")
    wrong = lab_pebble.directory_url.replace("/dir", "/directory")
    url.fill(wrong)
    page.get_by_role("button", name="Test without saving").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible(timeout=20_000)
    expect(dialog.get_by_role("heading", name="Test: Busy CA (not saved)")).to_be_visible()
    expect(dialog).to_contain_text("nothing was saved")
    expect(dialog.get_by_role("alert")).to_contain_text("Test failed at “fetch directory”")
    dialog.get_by_role("button", name="Close").last.click()
    expect(dialog).to_be_hidden()
    expect(url).to_have_value(wrong)  # the form is as typed: nothing was swapped or lost

    page.get_by_role("button", name="Save and Test").click()
    expect(dialog).to_be_visible(timeout=20_000)
    expect(dialog.locator("#save-refused")).to_contain_text("Nothing was saved: 1 Active certificate renews")
    screenshot(page, "ca-save-and-test-asks", full_page=False)
    with live_server.app.app_context():
        assert ca_profiles.get(pid).directory_url == lab_pebble.directory_url
    dialog.get_by_role("button", name="Save anyway").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_text("Saved.", exact=True)).to_be_visible()
    with live_server.app.app_context():
        assert ca_profiles.get(pid).directory_url == wrong
        db.session().remove()


def test_a_zone_is_edited_and_its_delete_is_refused_naming_what_depends_on_it(page, live_server):
    sign_in(page)
    page.goto("/dns/")
    zone = page.locator("article").filter(has=page.get_by_role("heading", name=TECH_ZONE, exact=True))
    zone.get_by_role("link", name=f"Edit {TECH_ZONE}").click()
    expect(page.get_by_role("heading", name=f"Edit zone {TECH_ZONE}", level=1)).to_be_visible()
    secret = page.get_by_label("TSIG secret")
    expect(secret).to_have_value("")  # write-only
    expect(secret).to_have_attribute("placeholder", "•••••• (set)")
    page.get_by_role("button", name="Save and check").click()
    expect(page.get_by_text(re.compile(rf"Zone {re.escape(TECH_ZONE)} saved\. Health check: .*accepts updates"))).to_be_visible()
    page.once("dialog", lambda d: d.accept())
    zone.get_by_role("button", name=f"Delete {TECH_ZONE}").click()
    expect(page.get_by_text(re.compile(rf"The zone {re.escape(TECH_ZONE)} cannot be deleted: \d+ certificates? orders? "
                                       r"through it: #\d+"))).to_be_visible()
    screenshot(page, "dns-delete-refused")


def issue(live_server, profile_id: int, domain: str, cnames: list[str]) -> int:
    """An Active certificate issued by Pebble through the lab's DNS; its CNAMEs stay (renewals
    need them) until the caller clears `cnames`."""
    with live_server.app.app_context():
        cert = certificates.request(certificates.create({"profile_id": profile_id, "domains": domain}))
        cert_id, made = cert.id, certificates.instructions(cert)
        for item in made:
            live_server.bind.set_cname(item.name, item.target)
            cnames.append(item.name)
        assert pipeline.process(cert_id) == "active", certificates.get(cert_id).last_error
        db.session().remove()
        return cert_id


def test_renew_now_revoke_and_issue_again(page, live_server, lab_pebble):
    with live_server.app.app_context():
        profile = add_lab_profile(lab_pebble, name="Renewing CA")
        assert ca_profiles.test(profile).ok
        pid = profile.id
        db.session().remove()
    made: list[str] = []
    try:
        renew_revoke_and_issue_again(page, live_server, pid, made)
    finally:
        for name in made:
            live_server.bind.clear(name)


def renew_revoke_and_issue_again(page, live_server, pid: int, made: list[str]) -> None:
    first = issue(live_server, pid, "renew1.customer.test", made)
    second = issue(live_server, pid, "renew2.customer.test", made)
    sign_in(page)
    page.goto(f"/certificates/{first}")
    page.get_by_role("button", name="Renew now").click()
    expect(page.get_by_text(re.compile(r"Renewing 1 certificate now"))).to_be_visible()
    expect(page.locator("#cert-status h2")).to_contain_text("Active", timeout=40_000)
    page.reload()
    versions = page.locator("section[aria-labelledby='versions-title'] tbody tr")
    expect(versions).to_have_count(2)

    # The list's bulk action: tick both, Renew now.
    page.goto("/certificates/?q=renew")
    for cert_id in (first, second):
        page.locator(f"#cert-{cert_id}").get_by_role("checkbox").check()
    page.get_by_role("button", name="Renew now").click()
    expect(page.get_by_text(re.compile(r"Renewing 2 certificates now \(at most \d+ at a time per CA\)"))).to_be_visible()
    with live_server.app.app_context():
        def renewed():
            db.session().remove()
            return [len(certificates.versions(certificates.get(i))) for i in (first, second)] == [3, 2]
        for _ in range(200):
            if renewed():
                break
            page.wait_for_timeout(200)
        assert renewed()

    # Revoke: then it looks revoked, and offers to issue again under the same profile.
    page.goto(f"/certificates/{second}")
    expect(page.locator("#cert-status h2")).to_contain_text("Active", timeout=40_000)
    page.get_by_label("Revocation reason").select_option(label="superseded")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke").click()
    expect(page.locator("#cert-status h2")).to_contain_text("Revoked")
    facts = page.locator("table.sslm-facts").first
    expect(facts.get_by_role("row", name=re.compile("Auto-renew"))).to_contain_text("No: revoked")
    expect(page.get_by_role("row", name=re.compile("Days remaining"))).to_contain_text("revoked")
    for gone in ("Save and deploy now", "Renew now", "Download PKCS#12"):
        expect(page.get_by_role("button", name=gone)).to_have_count(0)
    screenshot(page, "certificate-revoked")
    page.get_by_role("button", name="Issue again under Renewing CA").click()
    expect(page.get_by_role("heading", name="renew2.customer.test", level=1)).to_be_visible()
    expect(page.locator("#cert-status")).to_contain_text("Pending (CNAME)")
    expect(page.get_by_text(re.compile(rf"#{second} is Revoked and stays as a record"))).to_be_visible()
    page.goto("/certificates/?q=renew2")
    row = page.locator(f"#cert-{second}")
    expect(row).to_contain_text("revoked")
    expect(row.get_by_role("checkbox")).to_have_count(0)
    page.goto("/audit/")  # leave no page polling while the server stops after the last test
