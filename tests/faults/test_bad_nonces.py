"""Pebble rejecting half of all nonces: every POST is retried until it lands, and a retried
newOrder never opens a second order."""
from __future__ import annotations

from collections import Counter

from tests.faults.conftest import lab_setup, new_cert
from tests.lab.faultproxy import running_proxy
from webapp import db
from webapp.models import CertificateVersion
from webapp.services import certificates, scheduler

COUNT = 20


def test_twenty_certificates_issue_with_exactly_twenty_orders_when_half_the_nonces_are_rejected(
        app, lab_bind, lab_unbound, pebble_factory, cnames):
    pebble = pebble_factory(env={"PEBBLE_WFE_NONCEREJECT": "50"})
    with running_proxy(pebble) as proxy:
        lab_setup(app, lab_bind, lab_unbound, pebble, proxy)
        with app.app_context():
            ids = []
            for i in range(COUNT):
                cert = new_cert(f"nonce{i}.customer.test")
                cnames(cert)
                ids.append(cert.id)
        nonces_before = proxy.count("HEAD", "/nonce-plz") + proxy.count("GET", "/nonce-plz")
        sched = scheduler.Scheduler(app)  # the app's own pool: four orders in flight at a time
        try:
            sched.tick()
            assert sched.wait_idle(120)
        finally:
            sched.shutdown()
        with app.app_context():
            statuses = {i: (certificates.get(i).status, certificates.get(i).last_error) for i in ids}
            versions = db.session().query(CertificateVersion).filter(
                CertificateVersion.certificate_id.in_(ids)).count()
        rejected = sum(1 for m, _, status in proxy.answered if m == "POST" and status == 400)
        assert all(status == "active" for status, _ in statuses.values()), statuses
        assert versions == COUNT
        assert proxy.new_orders() == COUNT
        assert proxy.ordered_names() == Counter(f"nonce{i}.customer.test" for i in range(COUNT))
        assert rejected > COUNT  # the rejections really happened (about half of all POSTs)
        # Each rejection carries the next nonce: one newNonce request per issuance, no more.
        nonce_fetches = proxy.count("HEAD", "/nonce-plz") + proxy.count("GET", "/nonce-plz") - nonces_before
        assert nonce_fetches <= COUNT, (nonce_fetches, rejected)
