"""Renewals against acme2certifier, an ACME server written by others (ARI, profiles, EAB): the
window from its renewalInfo, `replaces` on renewal orders, a CA that refuses `replaces`, ACME
profiles, a CA that forgot the account, and a running worker that renews within two polls of
the CA forcing early renewal."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from cryptography import x509

from tests.conftest import add_a2c_profile, add_lab_zone
from webapp import db
from webapp.acme.keys import ari_cert_id
from webapp.models import AuditEvent
from webapp.services import ca_profiles, certificates, pipeline


@pytest.fixture
def a2c(app, lab_bind, lab_unbound, a2c_factory):
    """An acme2certifier of this test's own (its switches are flipped) and the app's profile."""
    server = a2c_factory(retry_after_timeout=3600)
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
        assert ca_profiles.test(add_a2c_profile(server)).ok
    return server


def issue(domains, cnames, **values):
    cert = certificates.create({"profile_id": ca_profiles.by_name("acme2certifier").id,
                                "domains": domains, **values})
    cert = certificates.request(cert)
    cnames(cert)
    assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
    return certificates.get(cert.id)


def leaf(cert):
    return x509.load_pem_x509_certificate(certificates.versions(cert)[0].cert_pem.encode())


def test_the_window_comes_from_its_renewal_info_and_the_renewal_replaces(app, a2c, cnames):
    with app.app_context():
        cert = issue("customer.test *.customer.test", cnames)
        assert cert.ari_window_start and cert.ari_window_end == cert.not_after  # a2c: ends at notAfter
        assert cert.ari_window_start <= cert.renew_at <= cert.ari_window_end
        assert "ARI window" in cert.renew_reason
        wait = (cert.ari_next_poll_at - cert.ari_checked_at).total_seconds()
        assert 3600 * 0.9 <= wait <= 3600  # its Retry-After
        old = ari_cert_id(leaf(cert))
        mark = a2c.mark()
        assert pipeline.renew(cert.id, reason="test") == "active"
        assert [o.get("replaces") for o in a2c.new_orders(since=mark)] == [old]


def test_a_ca_that_refuses_replaces_still_renews(app, a2c, cnames):
    with app.app_context():
        cert = issue("customer.test", cnames)
        a2c.refuse_replaces()
        mark = a2c.mark()
        assert pipeline.renew(cert.id, reason="test") == "active", certificates.get(cert.id).last_error
        sent = a2c.new_orders(since=mark)
        assert "replaces" in sent[0] and "replaces" not in sent[-1]
        assert len(certificates.versions(certificates.get(cert.id))) == 2


def test_an_acme_profile_is_ordered_and_its_lifetime_planned(app, a2c, cnames):
    with app.app_context():
        mark = a2c.mark()
        cert = issue("customer.test", cnames, acme_profile="shortlived")
        assert a2c.new_orders(since=mark)[-1]["profile"] == "shortlived"
        assert (cert.not_after - cert.not_before).days == 6
        assert cert.renew_at < cert.not_after


def test_a_ca_that_forgot_the_account_renews_with_no_operator_action(app, a2c, cnames):
    with app.app_context():
        cert = issue("customer.test", cnames)
        lost = ca_profiles.by_name("acme2certifier").account_url
        assert a2c.forget_accounts() >= 1
        assert pipeline.renew(cert.id, reason="test") == "active", certificates.get(cert.id).last_error
        assert ca_profiles.by_name("acme2certifier").account_url not in ("", lost)
        assert db.session().query(AuditEvent).filter_by(action="ACME account recovered").count() == 1


def test_a_running_worker_renews_within_two_polls_when_the_ca_forces_it(app, a2c, cnames,
                                                                      lab_unbound):
    with app.app_context():
        cert = issue("customer.test", cnames)
        cert_id, serial, old_id = cert.id, cert.serial, ari_cert_id(leaf(cert))
    a2c.set_renewal_info(retry_after_timeout=1)
    instance = app.extensions["sslmanager"].instance_path
    env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": instance,
           "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": "1",
           "SSLMANAGER_DNS_RESOLVERS": f"127.0.0.1:{lab_unbound.port}",
           "SSLMANAGER_ARI_POLL_MIN": "1", "SSLMANAGER_ARI_POLL_MAX": "3",
           "SSLMANAGER_CONTROL_SOCKET": "off"}
    script = os.path.join(os.path.dirname(sys.executable), "sslmanager")
    worker = subprocess.Popen([script, "worker"], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with app.app_context():  # the worker polls on its own schedule from now on
            certificates.get(cert_id).ari_next_poll_at = certificates.get(cert_id).ari_checked_at
            db.session().commit()
        deadline = time.monotonic() + 30
        while len(a2c.renewal_info_gets()) < 2:  # the worker polls (and finds nothing to do)
            assert worker.poll() is None and time.monotonic() < deadline, "no ARI poll"
            time.sleep(0.1)
        a2c.set_renewal_info(renewal_force=True)
        mark = a2c.mark()
        while certificates_get(app, cert_id).serial == serial:
            assert worker.poll() is None and time.monotonic() < deadline + 30, "not renewed"
            time.sleep(0.1)
        polls_of_old = [g for g in a2c.renewal_info_gets(since=mark) if g["path"].endswith(old_id)]
        # Within two polls of the window opening (the order may start while a second is sent).
        assert 1 <= len(polls_of_old) <= 2
        assert a2c.new_orders(since=mark)[0]["replaces"] == old_id
    finally:
        a2c.set_renewal_info(renewal_force=False)
        worker.terminate()
        worker.wait(timeout=30)
        worker.stdout.close()


def certificates_get(app, cert_id):
    with app.app_context():
        cert = certificates.get(cert_id)
        db.session().expunge(cert)
        return cert
