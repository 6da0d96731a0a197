"""The certificate actions an operator looked for: Renew now on the page and for ticked rows
(within the per-CA bound), Issue again after a revoke, Revoked and Expired shown as such with
their senseless actions hidden, and the forms preselecting a working CA profile or none.
Issuance runs against the lab (real Pebble, BIND and Unbound)."""
from __future__ import annotations

import html as htmllib
import re
import time
from datetime import timedelta

from tests.blueprints.test_certificates import issued, pebble_id, text
from tests.conftest import make_certificate as make
from webapp import db
from webapp.models import CertificateVersion, utcnow
from webapp.services import ca_profiles, certificates
from webapp.services.bulk import ca_slots


def versions(app, cert_id: int) -> int:
    with app.app_context():
        return db.session().query(CertificateVersion).filter_by(certificate_id=cert_id).count()


def wait_for(predicate, seconds: float = 60) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_renew_now_on_the_page_makes_a_new_version_in_the_background(admin_client, lab_app, cnames):
    cid = issued(lab_app, cnames)
    html = text(admin_client.get(f"/certificates/{cid}"))
    assert 'id="renew-now"' in html
    resp = admin_client.post(f"/certificates/{cid}/renew", follow_redirects=True)
    page = htmllib.unescape(text(resp))
    assert "Renewing 1 certificate now" in page
    assert 'id="cert-status" aria-labelledby="status-title"\n  hx-get=' in page or "every 1s" in page  # it polls
    assert wait_for(lambda: versions(lab_app, cid) == 2)
    with lab_app.app_context():
        assert wait_for(lambda: certificates.get(cid).status == "active" and db.session().rollback() is None)


def test_renew_now_waits_for_a_free_slot_of_the_ca_like_the_scheduler(admin_client, lab_app, cnames):
    lab_app.config["SSLMANAGER_CONCURRENCY_PER_CA"] = 1
    cid = issued(lab_app, cnames)
    slots = ca_slots(lab_app)
    assert slots.try_take(pebble_id(lab_app))  # the scheduler works on another of this CA
    try:
        admin_client.post(f"/certificates/{cid}/renew")
        time.sleep(1.5)
        assert versions(lab_app, cid) == 1
        with lab_app.app_context():
            assert certificates.get(cid).status == "processing"  # started, waiting for the slot
    finally:
        slots.give(pebble_id(lab_app))
    assert wait_for(lambda: versions(lab_app, cid) == 2)


def test_bulk_renew_renews_the_ticked_active_ones_and_names_the_others(admin_client, lab_app, cnames):
    a = issued(lab_app, cnames, "a.customer.test")
    b = issued(lab_app, cnames, "b.customer.test")
    draft = make(lab_app, pebble_id(lab_app), "draft.customer.test")
    page = text(admin_client.get("/certificates/"))
    for cid in (a, b):
        assert re.search(rf'<input type="checkbox" name="ids" value="{cid}" form="bulk-renew"', page)
    assert f'value="{draft}" form="bulk-renew"' not in page  # only Active rows can be ticked
    resp = admin_client.post("/certificates/renew", data={"ids": [str(a), str(b), str(draft)],
                                                          "next": "/certificates/?status=active"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/certificates/?status=active"
    page = htmllib.unescape(text(admin_client.get("/certificates/")))
    assert "Renewing 2 certificates now (at most" in page
    assert f"Not renewed: #{draft}: it is Draft, only Active ones renew." in page
    assert wait_for(lambda: versions(lab_app, a) == 2 and versions(lab_app, b) == 2)
    page = text(admin_client.post("/certificates/renew", data={}, follow_redirects=True))
    assert "Tick the Active certificates to renew" in page


def test_a_revoked_certificate_looks_revoked_and_offers_to_issue_again_under_its_profile(admin_client, lab_app, cnames):
    cid = issued(lab_app, cnames)
    admin_client.post(f"/certificates/{cid}/revoke", data={"reason": "4"})
    html = htmllib.unescape(text(admin_client.get(f"/certificates/{cid}")))
    assert "No: revoked" in html  # auto-renew
    assert re.search(r'Days remaining</th><td>\s*<span class="sslm-bad">revoked</span>', html)
    for hidden in ('id="deploy-now"', 'id="renew-now"', 'id="revoke-form"', 'id="pkcs12-form"'):
        assert hidden not in html, hidden
    assert "clients no longer trust it" in html
    assert "Issue again under Pebble" in html
    row = re.search(rf'<tr id="cert-{cid}".*?</tr>', text(admin_client.get("/certificates/")), re.S).group(0)
    assert "revoked</span>" in row and ">Yes<" not in row and 'type="checkbox"' not in row
    resp = admin_client.post(f"/certificates/{cid}/reissue", data={"profile_id": str(pebble_id(lab_app))})
    new_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    with lab_app.app_context():
        new = certificates.get(new_id)
        assert new_id != cid and new.profile_id == pebble_id(lab_app) and new.status == "pending"
    page = htmllib.unescape(text(admin_client.get(resp.headers["Location"])))
    assert f"(#{cid} is Revoked and stays as a record)" in page


def test_an_expired_certificate_shows_expired_in_the_list_and_on_its_page(admin_client, app, profile_id):
    cid = make(app, profile_id, "old.customer.test", status="expired", not_after=utcnow() - timedelta(days=3))
    row = re.search(rf'<tr id="cert-{cid}".*?</tr>', text(admin_client.get("/certificates/")), re.S).group(0)
    assert '<span class="sslm-bad">expired</span>' in row and ">Yes<" not in row
    html = text(admin_client.get(f"/certificates/{cid}"))
    assert "No: expired" in html and 'id="renew-now"' not in html and "Issue again under LE STAGING" in html


def test_create_preselects_a_tested_working_profile_never_an_incomplete_one(admin_client, app, profile_id):
    with app.app_context():
        incomplete = ca_profiles.create({"name": "A incomplete", "module": "letsencrypt"})
        incomplete_id = incomplete.id
    html = text(admin_client.get("/certificates/new"))
    # None is tested yet: nothing is chosen for the user.
    assert re.search(r'<option value="" selected>Choose a CA profile…</option>', html)
    assert not re.search(r'<option value="\d+" selected>', html.split('id="f-profile_id"')[1].split("</select>")[0])
    with app.app_context():
        ca_profiles.get(profile_id).last_test_ok = True
        db.session().commit()
    select = text(admin_client.get("/certificates/new")).split('id="f-profile_id"')[1].split("</select>")[0]
    assert re.search(rf'<option value="{profile_id}" selected>LE STAGING', select)
    assert f'<option value="{incomplete_id}" >A incomplete (incomplete)' in select
    assert "Choose a CA profile" not in select
    refused = admin_client.post("/certificates/new", data={"domains": "x.example.com", "profile_id": ""})
    assert refused.status_code == 422 and "Choose a CA profile." in text(refused)


def test_reissue_preselects_a_tested_profile_or_asks(admin_client, app, profile_id):
    cid = make(app, profile_id, "shop.customer.test", status="active")
    with app.app_context():
        untested = ca_profiles.duplicate(ca_profiles.get(profile_id))
        untested_id = untested.id
    form = re.search(r'id="reissue-form".*?</form>', text(admin_client.get(f"/certificates/{cid}")), re.S).group(0)
    assert '<option value="" selected>Choose a CA profile…</option>' in form
    assert f'<option value="{untested_id}" >LE STAGING (copy) (never tested)' in form
    with app.app_context():
        ca_profiles.get(untested_id).last_test_ok = True
        db.session().commit()
    form = re.search(r'id="reissue-form".*?</form>', text(admin_client.get(f"/certificates/{cid}")), re.S).group(0)
    assert f'<option value="{untested_id}" selected>' in form and "Choose a CA profile" not in form


# DER of the algorithm identifiers a PKCS#12 file names.
PBE_SHA1_3DES = bytes.fromhex("060a2a864886f70d010c0103")  # 1.2.840.113549.1.12.1.3
PBES2 = bytes.fromhex("06092a864886f70d01050d")              # 1.2.840.113549.1.5.13 (AES here)
SHA1 = bytes.fromhex("06052b0e03021a")                         # 1.3.14.3.2.26 (the MAC)


def test_pkcs12_offers_a_legacy_3des_sha1_file_for_older_systems(admin_client, lab_app, cnames):
    from cryptography.hazmat.primitives.serialization import pkcs12
    cid = issued(lab_app, cnames)
    html = text(admin_client.get(f"/certificates/{cid}"))
    assert re.search(r'name="encryption" value="aes"\s+checked', html)
    assert "Legacy (3DES/SHA-1) for older systems" in html
    modern = admin_client.post(f"/certificates/{cid}/pkcs12", data={"password": "correct horse"}).data
    legacy = admin_client.post(f"/certificates/{cid}/pkcs12",
                               data={"password": "correct horse", "encryption": "legacy"}).data
    assert PBES2 in modern and PBE_SHA1_3DES not in modern
    assert PBE_SHA1_3DES in legacy and PBES2 not in legacy and SHA1 in legacy
    key, leaf, chain = pkcs12.load_key_and_certificates(legacy, b"correct horse")
    assert key is not None and leaf is not None and chain
