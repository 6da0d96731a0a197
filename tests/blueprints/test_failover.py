"""The failover fields and facts on the pages: fallbacks chosen on the certificate form (another
technical zone flagged), a CA profile's default list, the detail page's list, its own-list form
and which profile issued each version."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab.servers import TECH_ZONE
from webapp import db
from webapp.models import CertificateVersion, utcnow
from webapp.services import ca_profiles, certificates, failover


def make(name: str, zone: str = TECH_ZONE) -> int:
    return ca_profiles.create({"name": name, "module": "letsencrypt", "email": "ops@example.com",
                               "dns_zone": zone}, complete=True).id


def self_signed_pem() -> str:
    """A real certificate for the page to parse (which CA issued it is the profile's to say)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + timedelta(days=90)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def text(resp) -> str:
    return resp.get_data(as_text=True)


def test_the_certificate_form_saves_fallbacks_in_order_and_flags_another_zone(admin_client, app):
    with app.app_context():
        primary, same, other = make("LE"), make("Backup CA"), make("Far CA", "acme2.tech.test")
        ca_profiles.get(primary).last_test_ok = True  # the form preselects it: the primary
        db.session().commit()
    page = text(admin_client.get("/certificates/new"))
    assert 'name="fallback_1"' in page and "Far CA (technical zone acme2.tech.test): other zone, needs other CNAMEs" in page
    resp = admin_client.post("/certificates/new", data={
        "domains": "shop.example", "profile_id": str(primary), "key_type": "ec-p256", "action": "draft",
        "fallback_1": str(other), "fallback_2": str(same), "fallback_3": ""}, follow_redirects=True)
    assert resp.status_code == 200
    page = text(resp)
    assert "Fallback Far CA uses the technical zone acme2.tech.test" in page  # the flash
    assert re.search(r'id="fallback-list"><ol class="sslm-chain"><li>Far CA <span class="sslm-bad">other technical zone', page)
    with app.app_context():
        cert = certificates.search()[0][0]
        assert [p.name for p in failover.fallbacks(cert)] == ["Far CA", "Backup CA"]


def test_a_wrong_fallback_is_shown_beside_the_field_and_nothing_is_created(admin_client, app):
    with app.app_context():
        primary = make("LE")
    resp = admin_client.post("/certificates/new", data={
        "domains": "shop.example", "profile_id": str(primary), "key_type": "ec-p256", "action": "draft",
        "fallback_1": str(primary)})
    assert resp.status_code == 422 and "LE is the primary CA profile" in text(resp)
    with app.app_context():
        assert certificates.search()[1] == 0


def test_a_profile_saves_its_default_fallbacks_and_its_certificates_show_them(admin_client, app):
    with app.app_context():
        primary, backup = make("LE"), make("Backup CA")
        values = {"name": "LE", "ca_key": "staging", "email": "ops@example.com", "dns_zone": TECH_ZONE,
                  "dns_ttl": "60", "api_timeout": "20", "action": "save", "fallback_1": str(backup)}
    assert admin_client.post(f"/ca/{primary}/edit", data=values).status_code == 302
    with app.app_context():
        ca_profiles.get(primary).server_errors = 3
        db.session().commit()
    page = text(admin_client.get(f"/ca/{primary}/edit"))
    assert re.search(rf'<option value="{backup}" selected>Backup CA', page)
    assert "As failover sees this CA: 3 serverInternal in a row." in page
    with app.app_context():
        cert = certificates.create({"profile_id": primary, "domains": "shop.example"})
        cert_id = cert.id
        assert [p.name for p in failover.fallbacks(cert)] == ["Backup CA"]
    page = text(admin_client.get(f"/certificates/{cert_id}"))
    assert "<li>Backup CA</li>" in page and "the CA profile&#39;s default" in page


def test_the_detail_page_changes_the_list_and_names_the_issuing_profile_of_each_version(admin_client, app):
    with app.app_context():
        primary, backup = make("LE"), make("Backup CA")
        cert = certificates.create({"profile_id": primary, "domains": "shop.example"})
        cert_id = cert.id
        for number, profile, why in ((1, primary, ""), (2, backup, "LE refused the ACME account (x)")):
            db.session().add(CertificateVersion(
                certificate_id=cert.id, number=number, cert_pem=self_signed_pem(), chain_pem="", private_key="KEY",
                serial=f"0{number}", not_before=utcnow(), not_after=utcnow(), profile_id=profile,
                failover_reason=why))
        db.session().commit()
    resp = admin_client.post(f"/certificates/{cert_id}/fallbacks", data={"fallback_1": str(backup)},
                             follow_redirects=True)
    page = text(resp)
    assert "Fallbacks saved: Backup CA." in page and "this certificate&#39;s own list" in page
    issued_by = re.findall(r'<td class="sslm-issued-by">([^<]*)(?:<br><small class="sslm-bad">([^<]*))?', page)
    assert issued_by == [("Backup CA", "failover: LE refused the ACME account (x)"), ("LE", "")]
