"""The Certificate Authorities pages: list, + Create, Edit with errors beside fields, Save and
Test's modal, duplicate and delete; secrets never in HTML."""
from __future__ import annotations

import re
from pathlib import Path

from webapp import db
from webapp.models import CAProfile

HX = {"HX-Request": "true"}


def create(client, name="LE STAGING", module="letsencrypt"):
    resp = client.post("/ca/new", data={"name": name, "module": module})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return int(re.search(r"/ca/(\d+)/edit", resp.headers["Location"]).group(1))


def form(**over):
    data = {"name": "LE STAGING", "description": "sandbox", "ca_key": "staging",
            "email": "it@company.test", "dns_zone": "acme.tech.test", "dns_ttl": "60",
            "api_timeout": "20", "action": "save"}
    data.update(over)
    return data


def test_list_shows_profiles_with_their_columns(admin_client):
    pid = create(admin_client)
    admin_client.post(f"/ca/{pid}/edit", data=form())
    html = admin_client.get("/ca/").get_data(as_text=True)
    for text in ("LE STAGING", "Let&#39;s Encrypt Staging", "it@company.test", "acme.tech.test", "never", "+ Create"):
        assert text in html


def test_create_asks_name_and_module_then_opens_edit_with_every_field(admin_client):
    html = admin_client.get("/ca/new").get_data(as_text=True)
    assert 'name="name"' in html and 'name="module"' in html
    pid = create(admin_client)
    html = admin_client.get(f"/ca/{pid}/edit").get_data(as_text=True)
    for field in ("name", "description", "ca_key", "email", "eab_kid", "eab_hmac", "dns_zone",
                  "allow_wildcard", "dns_ttl", "api_timeout"):
        assert f'name="{field}"' in html, field
    assert "Save and Test" in html
    assert re.search(r'<option value="staging"\s+selected', html)


def test_create_with_a_taken_name_shows_the_error_beside_the_field(admin_client):
    create(admin_client)
    resp = admin_client.post("/ca/new", data={"name": "LE STAGING", "module": "letsencrypt"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="err-name"' in html and "already exists" in html


def test_invalid_edit_keeps_what_was_typed_and_marks_each_field(admin_client):
    pid = create(admin_client)
    resp = admin_client.post(f"/ca/{pid}/edit", data=form(email="nope", dns_ttl="5",
                                                          description="typed text"), headers=HX)
    html = resp.get_data(as_text=True)
    assert 'id="err-email"' in html and 'id="err-dns_ttl"' in html
    assert "typed text" in html and 'value="nope"' in html
    assert "Nothing was saved" in html


def test_hmac_and_api_key_are_never_rendered_back(admin_client, app):
    pid = create(admin_client, "ZeroSSL", "zerossl")
    admin_client.post(f"/ca/{pid}/edit", data=form(name="ZeroSSL", ca_key="production", eab_kid="kid-9",
                                                   eab_hmac="SUPERSECRETHMAC", api_key="SECRETAPIKEY"))
    html = admin_client.get(f"/ca/{pid}/edit").get_data(as_text=True)
    assert "SUPERSECRETHMAC" not in html and "SECRETAPIKEY" not in html
    assert "An HMAC key is set" in html and "An API key is set" in html
    # Saved again with the secret fields blank: both are kept.
    admin_client.post(f"/ca/{pid}/edit", data=form(name="ZeroSSL", ca_key="production", eab_kid="kid-9"))
    with app.app_context():
        profile = db.session().get(CAProfile, pid)
        assert profile.eab_hmac == "SUPERSECRETHMAC" and profile.api_key == "SECRETAPIKEY"
    # Failing validation does not echo them either.
    html = admin_client.post(f"/ca/{pid}/edit", data=form(name="ZeroSSL", email="x", eab_hmac="NEWSECRETHMAC"),
                             headers=HX).get_data(as_text=True)
    assert "NEWSECRETHMAC" not in html
    audit = admin_client.get("/ca/").get_data(as_text=True)
    assert "SUPERSECRETHMAC" not in audit


def test_save_and_test_opens_the_modal_with_api_is_available_and_endpoints(admin_client, lab_pebble):
    pid = create(admin_client, "Pebble", "custom")
    resp = admin_client.post(f"/ca/{pid}/edit", headers=HX, data=form(
        name="Pebble", directory_url=lab_pebble.directory_url,
        ca_bundle=Path(lab_pebble.ca_bundle).read_text(), action="test"))
    html = resp.get_data(as_text=True)
    assert 'id="sslm-modal" hx-swap-oob' in html and "<dialog data-modal" in html
    assert "API is available" in html
    for endpoint in ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"):
        assert endpoint in html
    assert "ACME account" in html and "valid" in html
    listing = admin_client.get("/ca/").get_data(as_text=True)
    assert "API is available" in listing


def test_save_and_test_failure_shows_the_step_and_what_to_do(admin_client, lab_pebble):
    pid = create(admin_client, "Pebble", "custom")
    html = admin_client.post(f"/ca/{pid}/edit", headers=HX, data=form(
        name="Pebble", directory_url=lab_pebble.directory_url, action="test")).get_data(as_text=True)
    assert "Test failed" in html and "What to do" in html and "TLS" in html


def test_save_and_test_without_javascript_renders_the_result_on_the_page(admin_client, lab_pebble):
    pid = create(admin_client, "Pebble", "custom")
    html = admin_client.post(f"/ca/{pid}/edit", data=form(
        name="Pebble", directory_url=lab_pebble.directory_url,
        ca_bundle=Path(lab_pebble.ca_bundle).read_text(), action="test")).get_data(as_text=True)
    assert "<dialog data-modal open" in html and "API is available" in html


def test_duplicate_and_delete(admin_client, app):
    pid = create(admin_client)
    resp = admin_client.post(f"/ca/{pid}/duplicate")
    assert resp.status_code == 302
    html = admin_client.get("/ca/").get_data(as_text=True)
    assert "LE STAGING (copy)" in html
    assert 'data-confirm="Delete the CA profile' in html
    admin_client.post(f"/ca/{pid}/delete")
    with app.app_context():
        assert db.session().get(CAProfile, pid) is None


def test_edit_of_a_missing_profile_is_404(admin_client):
    assert admin_client.get("/ca/999/edit").status_code == 404


def pebble_form(lab_pebble, **over):
    return form(**{"name": "Pebble", "directory_url": lab_pebble.directory_url,
                   "ca_bundle": Path(lab_pebble.ca_bundle).read_text(), **over})


def test_test_without_saving_tests_the_typed_values_and_changes_nothing(admin_client, app, lab_pebble):
    pid = create(admin_client, "Pebble", "custom")
    admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, action="test"))
    with app.app_context():
        before = db.session().get(CAProfile, pid)
        tested_at, account = before.last_test_at, before.account_url
    wrong = lab_pebble.directory_url.replace("/dir", "/directory")
    resp = admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, directory_url=wrong,
                                                                             action="try"))
    html = resp.get_data(as_text=True)
    assert resp.headers["HX-Reswap"] == "none"  # the form stays as typed, secrets included
    assert 'id="profile-form"' not in html and 'id="sslm-modal" hx-swap-oob' in html
    assert "(not saved)" in html and "nothing was saved" in html and "Test failed" in html and "404" in html
    ok = admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, email="new@example.com",
                                                                            action="try")).get_data(as_text=True)
    assert "API is available" in ok and account in ok  # the stored key's account, found, not re-registered
    with app.app_context():
        after = db.session().get(CAProfile, pid)
        assert after.directory_url == lab_pebble.directory_url and after.email == "it@company.test"
        assert after.last_test_at == tested_at and after.last_test_ok is True
    bad = admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, email="", action="try"))
    assert 'id="err-email"' in bad.get_data(as_text=True)  # a wrong field: beside it, as on Save


def test_save_and_test_asks_before_saving_a_failing_profile_with_active_certificates(admin_client, app, lab_pebble):
    from tests.conftest import make_certificate
    pid = create(admin_client, "Pebble", "custom")
    admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, dns_zone="acme.tech.test",
                                                                      action="test"))
    make_certificate(app, pid, "shop.customer.test", status="active")
    wrong = lab_pebble.directory_url.replace("/dir", "/directory")
    resp = admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, directory_url=wrong,
                                                                             action="test"))
    html = resp.get_data(as_text=True)
    assert resp.headers["HX-Reswap"] == "none"
    assert "Nothing was saved:</strong> 1 Active" in html and "certificate renews through this profile" in html
    assert re.search(r'<button type="submit" form="profile-form" name="action" value="save"[^>]*>Save anyway', html)
    with app.app_context():
        assert db.session().get(CAProfile, pid).directory_url == lab_pebble.directory_url
    # Without JavaScript: the page, the verdict open on it, the typed URL kept for Save anyway.
    page = admin_client.post(f"/ca/{pid}/edit", data=pebble_form(lab_pebble, directory_url=wrong,
                                                                 action="test")).get_data(as_text=True)
    assert "<dialog data-modal open" in page and "Save anyway" in page and f'value="{wrong}"' in page
    # Save anyway: the operator's call.
    admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, directory_url=wrong, action="save"))
    with app.app_context():
        assert db.session().get(CAProfile, pid).directory_url == wrong
    # A passing test saves as before.
    html = admin_client.post(f"/ca/{pid}/edit", headers=HX, data=pebble_form(lab_pebble, action="test")).get_data(as_text=True)
    assert "Saved. Test: API is available." in html
    with app.app_context():
        assert db.session().get(CAProfile, pid).directory_url == lab_pebble.directory_url


def test_a_description_over_500_characters_is_refused_beside_its_field(admin_client, profile_id):
    form = {"name": "LE STAGING", "ca_key": "staging", "email": "ops@example.com", "dns_zone": "acme.tech.test",
            "dns_ttl": "60", "api_timeout": "10", "action": "save", "description": "d" * 501}
    resp = admin_client.post(f"/ca/{profile_id}/edit", data=form)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422 and 'id="err-description"' in html
    assert "Keep the description to 500 characters (it has 501)" in html and "d" * 501 in html
    form["description"] = "d" * 500
    assert admin_client.post(f"/ca/{profile_id}/edit", data=form).status_code == 302


def test_the_preferred_chain_is_saved_by_issuer_name_and_a_fingerprint_is_refused(admin_client, app):
    pid = create(admin_client)
    assert 'name="preferred_chain"' in admin_client.get(f"/ca/{pid}/edit").get_data(as_text=True)
    admin_client.post(f"/ca/{pid}/edit", data=form(preferred_chain="  ISRG Root   X1 "))
    with app.app_context():
        assert db.session().get(CAProfile, pid).preferred_chain == "ISRG Root X1"
    pin = ":".join(["ab"] * 32)  # an intermediate's SHA-256 fingerprint: pinning, refused
    html = admin_client.post(f"/ca/{pid}/edit", data=form(preferred_chain=pin), headers=HX).get_data(as_text=True)
    assert 'id="err-preferred_chain"' in html and "never by pinning an intermediate" in html
    with app.app_context():
        assert db.session().get(CAProfile, pid).preferred_chain == "ISRG Root X1"
