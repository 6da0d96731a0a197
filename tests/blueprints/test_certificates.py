"""The Certificates pages: list with server-side search, filter and pagination; create with errors
beside fields; the detail page's self-polling status, CNAME instructions, downloads, revoke,
delete and reissue. Issuance paths run against the lab (real Pebble, BIND and Unbound)."""
from __future__ import annotations

import html as htmllib
import re
import threading
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from sqlalchemy import event, insert
from sqlalchemy.engine import Engine

from tests.lab.servers import TECH_ZONE
from tests.conftest import make_certificate as make
from webapp import db
from webapp.crypto import KEY_TYPES, generate_private_key, key_matches_cert
from webapp.models import Certificate, utcnow
from webapp.services import ca_profiles, certificates, pipeline

HX = {"HX-Request": "true"}
ROWS = {**HX, "HX-Target": "cert-rows"}


# -- fixtures ----------------------------------------------------------------------------------



# -- helpers -----------------------------------------------------------------------------------



def pebble_id(app) -> int:
    with app.app_context():
        return ca_profiles.by_name("Pebble").id


def issued(app, cnames, domains="customer.test") -> int:
    """An Active certificate issued by Pebble."""
    with app.app_context():
        cert = certificates.request(certificates.create({"profile_id": ca_profiles.by_name("Pebble").id,
                                                         "domains": domains}))
        cnames(cert)
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        return cert.id


def row_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="cert-(\d+)"', html)]


def text(resp) -> str:
    return resp.get_data(as_text=True)


def create_form(profile, **over):
    data = {"domains": "customer.test", "profile_id": str(profile), "key_type": "ec-p256",
            "auto_renew": "1", "action": "draft"}
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


# -- list ----------------------------------------------------------------------------------------

def test_list_shows_names_in_unicode_and_punycode_with_profile_status_and_days(admin_client, app, profile_id):
    make(app, profile_id, "bücher.customer.test")
    make(app, profile_id, "shop.customer.test", status="active", auto_renew=False,
         not_after=utcnow() + timedelta(days=40, hours=1))
    html = text(admin_client.get("/certificates/"))
    assert "bücher.customer.test" in html and "xn--bcher-kva.customer.test" in html
    assert "LE STAGING" in html and "sslm-badge-active" in html and "sslm-badge-draft" in html
    assert re.search(r">\s*40\s*<", html)  # days remaining
    assert "+ Create" in html and 'href="/certificates/new"' in html
    assert re.search(r'href="/certificates/"\s+aria-current="page">Certificates<', html)
    assert 'class="sslm-table-wrap"' in html


def test_search_swaps_only_the_table_body_and_matches_unicode_input(admin_client, app, profile_id):
    alpha = make(app, profile_id, "alpha.customer.test")
    make(app, profile_id, "beta.customer.test")
    idn = make(app, profile_id, "bücher.other.test")
    resp = admin_client.get("/certificates/?q=alpha", headers=ROWS)
    html = text(resp)
    assert html.lstrip().startswith('<tbody id="cert-rows"') and "<html" not in html
    assert row_ids(html) == [alpha]
    assert '<tfoot id="cert-pager" hx-swap-oob="true">' in html and "1–1 of 1" in html
    assert row_ids(text(admin_client.get("/certificates/?q=bücher", headers=ROWS))) == [idn]
    assert "No certificate matches" in text(admin_client.get("/certificates/?q=nothing", headers=ROWS))
    # The search box asks the server as the user types; without htmx the same URL is a full page.
    page = text(admin_client.get("/certificates/?q=alpha"))
    assert 'hx-trigger="input changed delay:300ms, search"' in page and 'hx-target="#cert-rows"' in page
    assert "<html" in page and row_ids(page) == [alpha] and 'value="alpha"' in page


def test_status_filter_and_pagination_run_on_the_server(admin_client, app, profile_id):
    app.config["SSLMANAGER_PAGE_SIZE"] = 2
    ids = [make(app, profile_id, f"n{i}.customer.test") for i in range(5)]
    active = make(app, profile_id, "live.customer.test", status="active",
                  not_after=utcnow() + timedelta(days=60))
    first = text(admin_client.get("/certificates/"))
    assert row_ids(first) == [active, ids[4]] and "Page 1 of 3" in first and "1–2 of 6" in first
    assert 'href="/certificates/?page=2"' in first
    third = text(admin_client.get("/certificates/?page=3", headers=ROWS))
    assert row_ids(third) == [ids[1], ids[0]] and "Next" not in third and "Previous" in third
    assert row_ids(text(admin_client.get("/certificates/?page=99"))) == [ids[1], ids[0]]  # past the end: last page
    only_active = text(admin_client.get("/certificates/?status=active", headers=ROWS))
    assert row_ids(only_active) == [active] and "1–1 of 1" in only_active
    drafts = text(admin_client.get("/certificates/?status=draft&page=2"))
    assert row_ids(drafts) == [ids[2], ids[1]] and 'href="/certificates/?status=draft&amp;page=3"' in drafts
    assert len(row_ids(text(admin_client.get("/certificates/?status=bogus")))) == 2  # unknown status: no filter


def test_a_page_of_10000_certificates_is_fast_and_costs_no_query_per_row(admin_client, app, profile_id):
    with app.app_context():
        other = ca_profiles.create({"name": "Other", "module": "letsencrypt", "email": "ops@example.com",
                                    "dns_zone": TECH_ZONE}, complete=True).id
        statuses = ("active", "pending", "draft", "failed")
        key = generate_private_key("ec-p256")  # stored encrypted on every row, as in real use
        db.session().execute(insert(Certificate), [
            {"profile_id": (profile_id, other)[i % 2], "domains": [f"h{i}.customer.test"],
             "common_name": f"h{i}.customer.test", "search_text": f"h{i}.customer.test",
             "status": statuses[i % 4], "key_type": "ec-p256", "auto_renew": True, "private_key": key,
             "not_after": utcnow() + timedelta(days=i % 90)} for i in range(10_000)])
        db.session().commit()
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    def measure(url, per_page):
        app.config["SSLMANAGER_PAGE_SIZE"] = per_page
        statements.clear()
        started = time.perf_counter()
        resp = admin_client.get(url)
        return resp, len(statements), time.perf_counter() - started

    event.listen(Engine, "before_cursor_execute", count)
    try:
        one, one_queries, _ = measure("/certificates/", 1)
        page, page_queries, elapsed = measure("/certificates/?page=37", 50)
        searched, searched_queries, search_elapsed = measure("/certificates/?q=h99&status=failed", 50)
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert len(row_ids(text(one))) == 1 and len(row_ids(text(page))) == 50
    assert page_queries == one_queries  # 50 rows cost what 1 row costs: no per-row query
    assert "LE STAGING" in text(page) and "Other" in text(page) and "of 10000" in text(page)
    # A search with few matches reads their ids instead of counting them (certificates.search).
    assert searched_queries == one_queries and row_ids(text(searched))
    assert elapsed < 1.5 and search_elapsed < 1.5, (elapsed, search_elapsed)


def test_pending_rows_poll_themselves_and_final_rows_do_not(admin_client, app, profile_id):
    pending = make(app, profile_id, "wait.customer.test", status="pending")
    draft = make(app, profile_id, "draft.customer.test")
    html = text(admin_client.get("/certificates/"))
    assert re.search(rf'<tr id="cert-{pending}" hx-get="/certificates/{pending}/row" hx-trigger="every 2s"', html)
    assert f'<tr id="cert-{draft}">' in html
    polled = text(admin_client.get(f"/certificates/{pending}/row", headers=HX))
    assert polled.lstrip().startswith(f'<tr id="cert-{pending}"') and 'hx-trigger="every 2s"' in polled
    with app.app_context():
        cert = certificates.get(pending)
        cert.status, cert.not_after = "active", utcnow() + timedelta(days=89, hours=1)
        db.session().commit()
    final = text(admin_client.get(f"/certificates/{pending}/row", headers=HX))
    assert "hx-trigger" not in final and "sslm-badge-active" in final and re.search(r">\s*89\s*<", final)


# -- create --------------------------------------------------------------------------------------

def test_create_form_offers_every_field_with_its_default(admin_client, profile_id):
    html = text(admin_client.get("/certificates/new"))
    for name in ("domains", "profile_id", "key_type", "auto_renew"):
        assert f'for="f-{name}"' in html, name  # each label tied to its input
        assert re.search(rf'<(input|select|textarea) id="f-{name}"[^>]* name="{name}"', html), name
    for key_type in KEY_TYPES:
        assert f'value="{key_type}"' in html
    assert re.search(r'<option value="ec-p256"\s+selected>ECDSA P-256', html)
    assert re.search(r'name="auto_renew" value="1"\s+checked', html)
    assert "Save as draft" in html and "Create and request" in html
    assert '<div id="acme-profile-field" hidden>' in html  # the CA offers no ACME profiles
    assert 'hx-get="/certificates/acme-profiles"' in html


def test_invalid_create_shows_each_error_beside_its_field_and_keeps_what_was_typed(admin_client, app, profile_id):
    resp = admin_client.post("/certificates/new", data=create_form(
        profile_id, domains="192.0.2.1\nbad_name!.test", key_type="dsa-1024", auto_renew=None, action="request"))
    html = text(resp)
    assert resp.status_code == 422 and "Nothing was created" in html
    assert re.search(r'id="err-domains" role="alert">[^<]*IP addresses cannot be validated by DNS-01', html)
    assert 'id="err-key_type" role="alert"' in html
    assert "192.0.2.1\nbad_name!.test</textarea>" in html  # typed text kept
    assert not re.search(r'name="auto_renew" value="1"\s+checked', html)  # the unticked box stays unticked
    resp = admin_client.post("/certificates/new", data=create_form("", domains="ok.customer.test"))
    assert 'id="err-profile_id" role="alert">Choose a CA profile.' in text(resp)
    with app.app_context():
        assert certificates.search()[1] == 0


def test_a_wildcard_on_a_profile_that_refuses_wildcards_shows_the_reason_beside_domains(admin_client, profile_id):
    resp = admin_client.post("/certificates/new", data=create_form(profile_id, domains="*.customer.test"))
    html = htmllib.unescape(text(resp))
    assert resp.status_code == 422
    assert re.search(r'id="err-domains" role="alert">\*\.customer\.test: wildcards are not allowed by this CA '
                     r'profile \(turn on “Allow wildcard certificates” in the profile\)', html)
    assert 'aria-invalid="true"' in html and "*.customer.test</textarea>" in html


def test_acme_profile_select_follows_the_chosen_ca_profile(admin_client, app, profile_id):
    with app.app_context():
        profile = ca_profiles.get(profile_id)
        profile.directory_meta = {"profiles": {"classic": "90 days", "shortlived": "6 days"}}
        profile.last_test_ok = True  # a tested, working profile is what the form preselects
        plain = ca_profiles.create({"name": "Plain", "module": "letsencrypt", "email": "ops@example.com",
                                    "dns_zone": TECH_ZONE}, complete=True).id
        db.session().commit()
    html = text(admin_client.get("/certificates/new"))  # LE STAGING, the tested one, is chosen
    assert 'id="f-acme_profile" name="acme_profile"' in html and "shortlived — 6 days" in html
    swapped = text(admin_client.get(f"/certificates/acme-profiles?profile_id={plain}", headers=HX))
    assert '<div id="acme-profile-field" hidden>' in swapped and "<select" not in swapped
    swapped = text(admin_client.get(f"/certificates/acme-profiles?profile_id={profile_id}", headers=HX))
    assert "shortlived" in swapped and "hidden" not in swapped
    resp = admin_client.post("/certificates/new", data=create_form(profile_id, acme_profile="bogus"))
    assert resp.status_code == 422 and 'id="err-acme_profile" role="alert">The CA offers no profile' in text(resp)
    assert re.search(r'<option value="shortlived"\s*>', text(resp))
    resp = admin_client.post("/certificates/new", data=create_form(profile_id, acme_profile="shortlived"))
    cid = int(resp.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        assert certificates.get(cid).acme_profile == "shortlived"


def test_draft_then_generate_csr_then_request_each_with_a_flash(admin_client, app, profile_id):
    resp = admin_client.post("/certificates/new", data=create_form(profile_id, domains="www.customer.test",
                                                                   key_type="rsa-2048", auto_renew=None))
    assert resp.status_code == 302
    cid = int(resp.headers["Location"].rsplit("/", 1)[1])
    html = text(admin_client.get(resp.headers["Location"]))
    assert "Draft saved for www.customer.test" in html and "Generate CSR" in html and ">Request<" in html
    assert "hx-trigger" not in html.split('id="cert-status"')[1].split(">")[0]  # a draft does not poll
    with app.app_context():
        cert = certificates.get(cid)
        assert cert.status == "draft" and cert.key_type == "rsa-2048" and cert.auto_renew is False
    html = text(admin_client.post(f"/certificates/{cid}/csr", follow_redirects=True))
    assert "A new RSA 2048 key and CSR were made" in html and "sslm-badge-csr" in html
    html = text(admin_client.post(f"/certificates/{cid}/request", follow_redirects=True))
    assert "Requested www.customer.test" in html and "_acme-challenge.www.customer.test" in html
    assert 'hx-trigger="every 1s"' in html


# -- detail, against the lab ---------------------------------------------------------------------

def test_create_and_request_shows_the_cname_to_copy_and_a_printable_page(admin_client, lab_app):
    resp = admin_client.post("/certificates/new", data=create_form(
        pebble_id(lab_app), domains="customer.test\n*.customer.test\nbücher.customer.test", action="request"))
    assert resp.status_code == 302, text(resp)
    cid = int(resp.headers["Location"].rsplit("/", 1)[1])
    html = text(admin_client.get(resp.headers["Location"]))
    with lab_app.app_context():
        records = certificates.instructions(certificates.get(cid))
    assert len(records) == 2  # the apex and its wildcard share one CNAME
    assert re.findall(r'data-copy="([^"]+)"', html) == [r.record for r in records]
    assert records[0].record == f"_acme-challenge.customer.test. IN CNAME {records[0].target}."
    assert "for bücher.customer.test" in html and "sslm-badge-pending" in html
    assert f'href="/certificates/{cid}/instructions"' in html and "Check now" in html
    assert f'hx-get="/certificates/{cid}/cnames"' in html and 'hx-trigger="load"' in html
    # The live check says what is wrong with each name and how to fix it.
    checks = text(admin_client.get(f"/certificates/{cid}/cnames", headers=HX))
    assert checks.count("<li>") == 2 and checks.count("Fix: ") == 2 and 'class="sslm-bad"' in checks
    assert records[0].target in htmllib.unescape(checks) and 'hx-trigger="every 10s"' in checks
    # The printable page for the domain owner: records and steps, no navigation.
    printable = text(admin_client.get(f"/certificates/{cid}/instructions"))
    for record in records:
        assert record.name in printable and record.target in printable and record.record in printable
    assert "What to do" in printable and "data-print" in printable
    assert "<nav" not in printable and "Certificate Authorities" not in printable


def test_status_polls_while_pending_and_stops_once_active(admin_client, lab_app, cnames):
    resp = admin_client.post("/certificates/new", data=create_form(pebble_id(lab_app), domains="other.test",
                                                                   action="request"))
    cid = int(resp.headers["Location"].rsplit("/", 1)[1])
    status_url = f"/certificates/{cid}/status?shown=pending"
    polled = text(admin_client.get(status_url, headers=HX))
    assert f'hx-get="/certificates/{cid}/status?shown=pending" hx-trigger="every 1s"' in polled
    assert 'aria-current="step">Pending (CNAME)' in polled and "<progress" in polled
    # Check now before the CNAME exists: still pending, and the flash says why.
    html = text(admin_client.post(f"/certificates/{cid}/check", follow_redirects=True))
    assert "Not yet: _acme-challenge.other.test" in htmllib.unescape(html) and "sslm-badge-pending" in html
    with lab_app.app_context():
        cnames(certificates.get(cid))
    html = text(admin_client.post(f"/certificates/{cid}/check", follow_redirects=True))
    assert "the certificate is being issued now" in html
    deadline = time.monotonic() + 30
    while True:
        resp = admin_client.get(status_url, headers=HX)
        if "hx-trigger" not in text(resp) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for thread in threading.enumerate():
        if thread.name == f"sslm-cert-{cid}":
            thread.join(10)
    final = text(resp)
    assert "hx-trigger" not in final and "sslm-badge-active" in final, final
    # The page around it now shows the certificate: swapped in place, no reload.
    assert resp.headers.get("HX-Retarget") == "#cert-page" and resp.headers.get("HX-Reswap") == "outerHTML"
    assert final.strip().startswith('<div id="cert-page">') and "fullchain.pem" in final and "<nav" not in final
    assert "active: serial" in final  # the timeline
    assert "hx-trigger" not in text(admin_client.get(f"/certificates/{cid}/cnames", headers=HX))
    page = text(admin_client.get(f"/certificates/{cid}"))
    with lab_app.app_context():
        version = certificates.current_version(certificates.get(cid))
        assert version.order_url and version.account_url
    for expected in ("SHA-256 fingerprint", version.serial, version.order_url, version.account_url,
                     "Pebble Intermediate", "ECDSA secp256r1", "Versions"):
        assert expected in page, expected
    assert "Check now" not in page and "hx-trigger" not in page.split('id="cert-status"')[1].split(">")[0]


def test_failed_shows_the_error_with_its_hint_and_a_retry(admin_client, app, profile_id):
    cid = make(app, profile_id, "broken.customer.test", status="failed",
               last_error="finalize order: the CA said no", last_error_hint="Check the CAA records.")
    html = text(admin_client.get(f"/certificates/{cid}"))
    assert re.search(r'role="alert">\s*<p><strong>Error:</strong> finalize order: the CA said no', html)
    assert "<strong>What to do:</strong> Check the CAA records." in html and ">Retry<" in html
    html = text(admin_client.post(f"/certificates/{cid}/request", follow_redirects=True))
    assert "sslm-badge-pending" in html and "Requested broken.customer.test" in html


def test_downloads_give_the_pems_and_a_pkcs12_that_opens_with_its_password(admin_client, lab_app, cnames):
    cid = issued(lab_app, cnames, "customer.test *.customer.test")
    files = {}
    for name in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"):
        resp = admin_client.get(f"/certificates/{cid}/download/{name}")
        assert resp.status_code == 200, name
        assert resp.headers["Content-Disposition"] == f"attachment; filename=customer.test-{name}"
        assert resp.headers["Cache-Control"] == "no-store"
        files[name] = text(resp)
    assert files["cert.pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert files["fullchain.pem"] == files["cert.pem"] + files["chain.pem"]
    assert "PRIVATE KEY-----" in files["privkey.pem"] and key_matches_cert(files["privkey.pem"], files["cert.pem"])
    assert admin_client.get(f"/certificates/{cid}/download/cert.pem?version=1").status_code == 200
    assert admin_client.get(f"/certificates/{cid}/download/cert.pem?version=9").status_code == 404
    assert admin_client.get(f"/certificates/{cid}/download/secrets.txt").status_code == 404
    short = admin_client.post(f"/certificates/{cid}/pkcs12", data={"password": "short"})
    assert short.status_code == 422 and 'id="err-password" role="alert">Use a PKCS#12 password' in text(short)
    assert 'value="short"' not in text(short)
    resp = admin_client.post(f"/certificates/{cid}/pkcs12", data={"password": "correct horse"})
    assert resp.mimetype == "application/x-pkcs12"
    assert resp.headers["Content-Disposition"] == "attachment; filename=customer.test.p12"
    key, leaf, chain = pkcs12.load_key_and_certificates(resp.data, b"correct horse")
    assert leaf.public_bytes(Encoding.PEM).decode() == files["cert.pem"] and key is not None and chain
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(resp.data, b"wrong password")


def test_revoke_takes_a_reason_and_a_second_revoke_is_a_flash_not_a_crash(admin_client, lab_app, cnames):
    cid = issued(lab_app, cnames)
    html = text(admin_client.get(f"/certificates/{cid}"))
    assert re.search(r'id="revoke-form" class="sslm-narrow"\s+data-confirm="Revoke', html)
    for code, reason in certificates.REVOCATION_REASONS.items():
        assert f'<option value="{code}"' in html and reason in html
    bad = admin_client.post(f"/certificates/{cid}/revoke", data={"reason": "2"})
    assert bad.status_code == 422 and 'id="err-reason" role="alert"' in text(bad)
    html = text(admin_client.post(f"/certificates/{cid}/revoke", data={"reason": "4"}, follow_redirects=True))
    assert "Revoked at the CA (superseded)" in html and "sslm-badge-revoked" in html
    html = text(admin_client.post(f"/certificates/{cid}/revoke", data={"reason": "4"}, follow_redirects=True))
    assert "Only an Active certificate can be revoked" in html and "Traceback" not in html


def test_delete_of_an_active_certificate_needs_its_first_name_typed(admin_client, lab_app, cnames):
    cid = issued(lab_app, cnames)
    html = text(admin_client.get(f"/certificates/{cid}"))
    assert 'for="f-confirm">To delete this Active certificate, type customer.test' in html
    refused = admin_client.post(f"/certificates/{cid}/delete", data={"confirm": "wrong.test"})
    html = text(refused)
    assert refused.status_code == 422
    assert 'id="err-confirm" role="alert">This certificate is Active: type customer.test to delete it.' in html
    assert 'value="wrong.test"' in html
    resp = admin_client.post(f"/certificates/{cid}/delete", data={"confirm": "customer.test"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/certificates/"
    assert "It was not revoked" in text(admin_client.get("/certificates/"))
    assert admin_client.get(f"/certificates/{cid}").status_code == 404


def test_delete_of_a_draft_is_confirmed_in_the_browser(admin_client, app, profile_id):
    cid = make(app, profile_id, "draft.customer.test")
    html = text(admin_client.get(f"/certificates/{cid}"))
    assert re.search(r'id="delete-form" class="sslm-narrow"\s+data-confirm="Delete the certificate', html)
    assert 'name="confirm"' not in html
    html = text(admin_client.post(f"/certificates/{cid}/delete", follow_redirects=True))
    assert "Certificate for draft.customer.test deleted." in html


def test_reissue_under_another_profile_keeps_the_old_until_the_new_is_active(admin_client, lab_app, cnames):
    cid = issued(lab_app, cnames)
    with lab_app.app_context():
        other = ca_profiles.duplicate(ca_profiles.by_name("Pebble"))
        other_id, other_name = other.id, other.name
    form = re.search(r'id="reissue-form".*?</form>', text(admin_client.get(f"/certificates/{cid}")), re.S).group(0)
    assert f'<option value="{other_id}"' in form and f'<option value="{pebble_id(lab_app)}"' not in form
    same = admin_client.post(f"/certificates/{cid}/reissue", data={"profile_id": str(pebble_id(lab_app))})
    assert same.status_code == 422 and 'id="err-reissue_profile_id" role="alert"' in text(same)
    resp = admin_client.post(f"/certificates/{cid}/reissue", data={"profile_id": str(other_id)})
    new_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    assert new_id != cid
    html = htmllib.unescape(text(admin_client.get(resp.headers["Location"])))
    assert f"under {other_name}" in html and f"The old certificate (#{cid}) stays until the new one is Active" in html
    with lab_app.app_context():
        new, old = certificates.get(new_id), certificates.get(cid)
        assert new.profile_id == other_id and new.domains == old.domains and new.status == "pending"
        assert old.status == "active"


def test_no_private_key_appears_in_any_page(admin_client, lab_app, cnames):
    cid = issued(lab_app, cnames)
    with lab_app.app_context():
        key = certificates.export_files(certificates.get(cid))["privkey.pem"]
    secret_line = key.splitlines()[1]
    pages = ["/certificates/", f"/certificates/{cid}", f"/certificates/{cid}/status", f"/certificates/{cid}/row",
             f"/certificates/{cid}/cnames", f"/certificates/{cid}/instructions", "/certificates/new",
             "/certificates/?q=customer"]
    for url in pages:
        html = text(admin_client.get(url))
        assert "PRIVATE KEY" not in html and secret_line not in html, url
    html = text(admin_client.post(f"/certificates/{cid}/pkcs12", data={"password": "x"}))
    assert "PRIVATE KEY" not in html and secret_line not in html


def test_unknown_certificate_is_404_and_refused_actions_are_flashes(admin_client, app, profile_id):
    assert admin_client.get("/certificates/999").status_code == 404
    assert admin_client.post("/certificates/999/revoke", data={"reason": "0"}).status_code == 404
    cid = make(app, profile_id, "draft.customer.test")
    resp = admin_client.post(f"/certificates/{cid}/revoke", data={"reason": "0"})
    assert resp.status_code == 302 and resp.headers["Location"] == f"/certificates/{cid}"
    html = text(admin_client.get(resp.headers["Location"]))
    assert "Only an Active certificate can be revoked; this one is draft." in html
    resp = admin_client.get(f"/certificates/{cid}/download/cert.pem")
    assert resp.status_code == 302
    assert "has not been issued yet" in text(admin_client.get(resp.headers["Location"]))
    html = text(admin_client.post(f"/certificates/{cid}/check", follow_redirects=True))
    assert "Nothing to check: the certificate is Draft." in html


def test_pages_need_a_signed_in_admin_and_posts_need_the_csrf_token(client, admin_client, app, profile_id):
    assert client.get("/certificates/").status_code == 302
    cid = make(app, profile_id, "draft.customer.test")
    assert admin_client.post(f"/certificates/{cid}/delete", no_csrf=True).status_code == 400


def test_the_lists_colours_scale_to_the_certificates_lifetime(admin_client, app, profile_id):
    """Red within 14 days of a 90-day certificate; a 6-day one just issued is not red (nor
    amber), and in its last day it is, with hours shown instead of "0"."""
    now = utcnow()
    long_ = make(app, profile_id, "long.customer.test", status="active", not_before=now - timedelta(days=85),
                 not_after=now + timedelta(days=5, hours=1))
    fresh = make(app, profile_id, "fresh.customer.test", status="active", not_before=now - timedelta(hours=1),
                 not_after=now + timedelta(days=5, hours=23))
    last = make(app, profile_id, "last.customer.test", status="active", not_before=now - timedelta(days=5, hours=4),
                not_after=now + timedelta(hours=20, minutes=30))
    html = admin_client.get("/certificates/").get_data(as_text=True)

    def days_cell(cert_id):
        row = re.search(rf'<tr id="cert-{cert_id}".*?</tr>', html, re.DOTALL).group(0)
        return re.search(r'data-label="Days left">(.*?)</td>', row, re.DOTALL).group(1).strip()
    assert days_cell(long_) == '<span class="sslm-bad">5</span>'
    assert days_cell(fresh) == "5"
    assert days_cell(last) == '<span class="sslm-bad">20 h</span>'


def test_a_dns_persist_01_certificate_waits_for_its_record_not_a_cname(admin_client, app, profile_id):
    persist = make(app, profile_id, "persist.customer.test", status="pending", validation="dns-persist-01")
    cname = make(app, profile_id, "cname.customer.test", status="pending")
    listing = admin_client.get("/certificates/").get_data(as_text=True)
    row = re.search(r'<tr[^>]*>(?:(?!</tr>).)*persist\.customer\.test.*?</tr>', listing, re.DOTALL).group(0)
    assert "Pending (record)" in row and "Pending (CNAME)" not in row
    page = admin_client.get(f"/certificates/{persist}").get_data(as_text=True)
    assert 'aria-current="step">Pending (record)' in page and "Pending (CNAME)" not in page
    assert 'aria-current="step">Pending (CNAME)' in admin_client.get(f"/certificates/{cname}").get_data(as_text=True)
