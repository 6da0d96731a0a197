"""Chain choice against Pebble's alternate roots (PEBBLE_ALTERNATE_ROOTS): the profile's
preferred issuer name picks the stored chain by its top certificate's issuer; no match keeps
the CA's default and says so; the page shows which chain was chosen."""
from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.conftest import add_lab_profile, add_lab_zone, signed_in
from tests.services.test_issuance import new_cert
from webapp import db
from webapp.services import certificates, chains, pipeline


def _cn(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


@pytest.fixture
def alternates(app, lab_bind, lab_unbound, pebble_factory):
    """An app on a Pebble that offers every certificate under 3 roots (default + 2 alternates)."""
    pebble = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "2"})
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
    return app, pebble


def _issue(app, pebble, cnames, preferred: str):
    with app.app_context():
        add_lab_profile(pebble, preferred_chain=preferred)
        cert = new_cert("customer.test")
        cnames(cert)
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        cert = certificates.get(cert.id)
        version = certificates.current_version(cert)
        lines = [e.message for e in certificates.timeline(cert)]
        db.session().expunge_all()
        return cert.id, version, lines


def test_the_preferred_root_picks_the_alternate_chain_it_issues(alternates, cnames):
    app, pebble = alternates
    wanted = _cn(pebble.root_pem(2))  # "Pebble Root CA 1a2b3c": new at every Pebble start
    cert_id, version, lines = _issue(app, pebble, cnames, wanted.lower())  # any case
    stored = x509.load_pem_x509_certificates(version.chain_pem.encode())
    assert chains.describe(stored[-1].issuer) == wanted
    # The top certificate really is signed by that root, and the leaf is the same in every chain.
    stored[-1].verify_directly_issued_by(x509.load_pem_x509_certificate(pebble.root_pem(2).encode()))
    assert len(version.alternates) == 2 and all(version.cert_pem.strip() in c for c in version.alternates)
    assert wanted not in {chains.describe(chains.top_issuer(c)) for c in version.alternates}
    assert any(line.startswith("chain: alternate chain") and wanted in line for line in lines), lines
    html = signed_in(app).get(f"/certificates/{cert_id}").get_data(as_text=True)
    assert 'id="chain-choice"' in html and f"top certificate issued by {wanted}" in html


def test_a_preferred_name_no_chain_matches_keeps_the_default_and_says_so(alternates, cnames):
    app, pebble = alternates
    _, version, lines = _issue(app, pebble, cnames, "ISRG Root X2")
    default = _cn(pebble.root_pem(0))
    assert chains.describe(chains.top_issuer(version.cert_pem + version.chain_pem)) == default
    assert "no chain's top certificate is issued by 'ISRG Root X2'" in version.chain_choice
    assert any(line.startswith("chain: no chain's top certificate") and default in line for line in lines)


def test_no_preference_keeps_the_cas_default_chain(alternates, cnames):
    app, pebble = alternates
    _, version, lines = _issue(app, pebble, cnames, "")
    assert chains.describe(chains.top_issuer(version.cert_pem + version.chain_pem)) == _cn(pebble.root_pem(0))
    assert version.chain_choice.startswith("the CA's default") and "2 alternate chains kept" in version.chain_choice


def test_a_name_matches_the_issuers_cn_exactly_or_a_part_of_its_dn():
    name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Internet Security Research Group"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "ISRG Root X1")])
    assert chains.matches(name, "isrg root x1") and chains.matches(name, "O=Internet Security Research Group")
    assert not chains.matches(name, "ISRG Root X2") and not chains.matches(name, "")
    assert chains.validate("-----BEGIN CERTIFICATE-----\nMII...")[1]
    assert chains.validate("A" * 64)[1] and chains.validate("ISRG Root X1") == ("ISRG Root X1", "")
