"""The issuance lifecycle end to end against the lab: real Pebble validating through real
Unbound and BIND, the customer's CNAME in BIND, TXT values written by each DNS provider."""
from __future__ import annotations

import subprocess

import pytest
from cryptography import x509

from tests.conftest import add_lab_profile, add_lab_zone
from tests.lab.servers import TECH_ZONE
from webapp import db
from webapp.crypto import key_matches_cert
from webapp.models import Certificate, CertificateVersion, DnsRecord
from webapp.services import ca_profiles, certificates, claims, pipeline, zones


def new_cert(domains, **values):
    cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id, "domains": domains, **values})
    return certificates.request(cert)


def assert_verifies(cert, pebble, tmp_path):
    """The full chain verifies against Pebble's root (openssl), and matches the stored key."""
    files = certificates.export_files(cert)
    assert key_matches_cert(files["privkey.pem"], files["cert.pem"])
    (tmp_path / "root.pem").write_text(pebble.root_pem())
    (tmp_path / "chain.pem").write_text(files["chain.pem"])
    (tmp_path / "cert.pem").write_text(files["cert.pem"])
    out = subprocess.run(["openssl", "verify", "-CAfile", tmp_path / "root.pem", "-untrusted", tmp_path / "chain.pem",
                          tmp_path / "cert.pem"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_apex_and_wildcard_issue_through_one_cname(lab_app, lab_pebble, cnames, tmp_path):
    with lab_app.app_context():
        cert = new_cert("customer.test *.customer.test")
        instructions = certificates.instructions(cert)
        assert len(instructions) == 1 and instructions[0].name == "_acme-challenge.customer.test"
        assert instructions[0].target.endswith("." + TECH_ZONE)
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        cert = certificates.get(cert.id)
        assert_verifies(cert, lab_pebble, tmp_path)
        leaf = x509.load_pem_x509_certificate(certificates.export_files(cert)["cert.pem"].encode())
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
        assert sorted(sans) == ["*.customer.test", "customer.test"]
        lines = [e.message for e in certificates.timeline(cert)]
        assert any(line.startswith("new order") for line in lines)
        assert any("2 TXT values added" in line for line in lines)
        assert any(line.startswith("dns: removed") for line in lines)
        assert db.session().query(DnsRecord).count() == 0  # cleaned up


def test_txt_values_are_removed_from_the_technical_zone_after_issuance(lab_app, lab_bind, cnames):
    with lab_app.app_context():
        cert = new_cert("customer.test")
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        provider = zones.provider_for(TECH_ZONE)
        target = certificates.instructions(cert)[0].target
        assert target not in provider.list_txt()


def test_five_names_across_two_base_domains(lab_app, lab_pebble, cnames, tmp_path):
    with lab_app.app_context():
        cert = new_cert("customer.test www.customer.test *.customer.test other.test *.other.test")
        assert len(certificates.instructions(cert)) == 3  # customer.test, www.customer.test, other.test
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        assert_verifies(certificates.get(cert.id), lab_pebble, tmp_path)


def test_missing_cname_stays_pending_with_the_reason(lab_app, lab_bind):
    with lab_app.app_context():
        lab_bind.clear("_acme-challenge.other.test")
        cert = new_cert("other.test")
        assert pipeline.process(cert.id) == "pending"
        cert = certificates.get(cert.id)
        assert "_acme-challenge.other.test" in cert.last_error
        assert "CNAME" in cert.last_error_hint and certificates.instructions(cert)[0].target in cert.last_error_hint


def test_wrong_cname_target_stays_pending_and_says_where_it_points(lab_app, lab_bind):
    with lab_app.app_context():
        cert = new_cert("other.test")
        lab_bind.set_cname("_acme-challenge.other.test", f"somewhere-else.{TECH_ZONE}")
        try:
            assert pipeline.process(cert.id) == "pending"
            assert f"somewhere-else.{TECH_ZONE}" in certificates.get(cert.id).last_error
        finally:
            lab_bind.clear("_acme-challenge.other.test")


def test_labels_are_stable_so_a_reissue_needs_no_dns_change(lab_app):
    with lab_app.app_context():
        first = new_cert("customer.test")
        second = new_cert("*.customer.test customer.test")
        assert certificates.instructions(first)[0].target == certificates.instructions(second)[0].target


def test_wildcard_refused_when_the_profile_does_not_allow_it(lab_app):
    from webapp.errors import ValidationError
    with lab_app.app_context():
        profile = ca_profiles.by_name("Pebble")
        profile.allow_wildcard = False
        db.session().commit()
        with pytest.raises(ValidationError) as info:
            certificates.create({"profile_id": profile.id, "domains": "*.customer.test"})
        assert "not allowed by this CA profile" in info.value.errors["domains"]


def test_internationalized_names_are_stored_in_punycode(lab_app):
    with lab_app.app_context():
        cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id, "domains": "bücher.customer.test"})
        assert cert.domains == ["xn--bcher-kva.customer.test"]
        rows, total = certificates.search("bücher")
        assert total == 1


def test_eab_profile_issues(app, lab_bind, lab_unbound, lab_pebble_eab, cnames, tmp_path):
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    kid, hmac = next(iter(lab_pebble_eab.eab_keys.items()))
    with app.app_context():
        add_lab_zone(lab_bind)
        add_lab_profile(lab_pebble_eab, eab_kid=kid, eab_hmac=hmac)
        cert = new_cert("customer.test")
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        assert_verifies(certificates.get(cert.id), lab_pebble_eab, tmp_path)


def test_every_certificate_issues_when_pebble_rejects_half_the_nonces(app, lab_bind, lab_unbound, pebble_factory, cnames):
    pebble = pebble_factory(env={"PEBBLE_WFE_NONCEREJECT": "50"})
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
        add_lab_profile(pebble)
        for domains in ("customer.test *.customer.test", "other.test", "www.other.test"):
            cert = new_cert(domains)
            cnames(cert)
            assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error


def test_a_process_killed_after_the_order_resumes_the_same_order_with_the_same_key(lab_app, cnames, monkeypatch):
    """Simulate a kill between "order created" and finalize: the stored order is resumed."""
    from webapp.services import issuance
    with lab_app.app_context():
        cert = new_cert("customer.test")
        cnames(cert)
        key = cert.private_key

        class Killed(BaseException):  # not an SSLManagerError: nothing handles it, like SIGKILL
            pass
        real_answer = issuance.AcmeClient.answer_challenges
        monkeypatch.setattr(issuance.AcmeClient, "answer_challenges",
                            lambda self, challenges: (_ for _ in ()).throw(Killed()))
        with pytest.raises(Killed):
            pipeline.process(cert.id)
        db.session().rollback()
        cert = certificates.get(cert.id)
        order_url = cert.order_url
        assert cert.status == "processing" and order_url and cert.step == "TXT written"
        monkeypatch.setattr(issuance.AcmeClient, "answer_challenges", real_answer)
        claims.release(cert.id)  # the dead process's claim; a real one expires
        assert pipeline.process(cert.id) == "active"
        cert = certificates.get(cert.id)
        version = db.session().query(CertificateVersion).filter_by(certificate_id=cert.id).one()
        assert version.order_url == order_url and version.private_key == key
        assert any(e.message.startswith(f"resume order {order_url}") for e in certificates.timeline(cert))


def test_export_writes_pem_files_with_a_private_key_mode(lab_app, cnames, tmp_path):
    import os
    with lab_app.app_context():
        cert = new_cert("customer.test")
        cnames(cert)
        pipeline.process(cert.id)
        paths = certificates.write_export(certificates.get(cert.id), str(tmp_path / "out"))
        assert sorted(os.path.basename(p) for p in paths) == ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"]
        assert oct(os.stat(tmp_path / "out" / "privkey.pem").st_mode & 0o777) == "0o600"


def test_revoke_marks_it_revoked_at_the_ca(lab_app, cnames):
    with lab_app.app_context():
        cert = new_cert("customer.test")
        cnames(cert)
        pipeline.process(cert.id)
        certificates.revoke(certificates.get(cert.id), reason=4)
        assert certificates.get(cert.id).status == "revoked"


def test_delete_of_an_active_certificate_needs_its_name_typed(lab_app, cnames):
    from webapp.errors import ValidationError
    with lab_app.app_context():
        cert = new_cert("customer.test")
        cnames(cert)
        pipeline.process(cert.id)
        with pytest.raises(ValidationError):
            certificates.delete(certificates.get(cert.id))
        certificates.delete(certificates.get(cert.id), confirm="customer.test")
        assert db.session().get(Certificate, cert.id) is None
