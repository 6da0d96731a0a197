"""ACME Renewal Information (RFC 9773) through a proxy in front of Pebble (Pebble 2.4 has no
ARI): the window is polled again as Retry-After says within bounds, a moved window re-plans,
a window moved into the past renews at once, renewals carry `replaces`, and a CA that refuses
`replaces` still renews."""
from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509

from tests.conftest import add_lab_profile, add_lab_zone
from tests.lab.faultproxy import NEW_ORDER, running_proxy
from webapp import db
from webapp.acme.keys import ari_cert_id
from webapp.models import utcnow
from webapp.services import certificates, pipeline, renewals
from webapp.services.scheduler import Scheduler
from tests.services.test_renewals import issued


def _z(when):
    return when.isoformat().replace("+00:00", "Z")


class Ari(dict):
    """Answers every certID with the window it currently holds."""

    def __init__(self):
        super().__init__()
        self.window = (utcnow() + timedelta(days=30), utcnow() + timedelta(days=32))
        self.headers = {"Retry-After": "21600"}
        self.asked = 0

    def __contains__(self, key):
        return key.startswith("/ari/")

    def __getitem__(self, key):
        self.asked += 1
        start, end = self.window
        return {"suggestedWindow": {"start": _z(start), "end": _z(end)}}, self.headers


@pytest.fixture
def ari_app(app, lab_bind, lab_unbound, lab_pebble):
    """An app whose profile talks to Pebble through a proxy that serves ARI."""
    app.config.update(SSLMANAGER_DNS_RESOLVERS=[f"127.0.0.1:{lab_unbound.port}"],
                      SSLMANAGER_ARI_POLL_MIN=3600, SSLMANAGER_ARI_POLL_MAX=86400)
    with running_proxy(lab_pebble) as proxy, app.app_context():
        proxy.directory_extra["renewalInfo"] = "/ari/"
        proxy.ari = Ari()
        add_lab_zone(lab_bind)
        add_lab_profile(lab_pebble, directory_url=f"{proxy.base}/dir")
        yield app, proxy


def test_renewal_time_is_in_the_first_half_of_a_future_window():
    now = utcnow()
    start, end = now + timedelta(days=10), now + timedelta(days=12)
    for _ in range(50):
        at, why = renewals.ari_time(start, end, now + timedelta(days=90), now, fresh=False)
        assert start <= at <= start + timedelta(days=1) and "ARI window" in why


def test_a_window_is_cut_at_expiry_and_an_open_one_means_now(app):
    now = utcnow()
    start, end = now + timedelta(days=10), now + timedelta(days=40)
    with app.app_context():
        at, _ = renewals.ari_time(start, end, now + timedelta(days=12), now, fresh=False)
        assert at <= start + timedelta(days=1)  # half of the window that ends at not-after
        at, why = renewals.ari_time(now - timedelta(days=1), now + timedelta(days=1),
                                    now + timedelta(days=5), now, fresh=False)
        assert at == now and "renewing now" in why
        # Just issued and already "renew now": not a loop, the next poll decides.
        at, why = renewals.ari_time(now - timedelta(days=1), now + timedelta(days=1),
                                    now + timedelta(days=5), now, fresh=True)
        assert at == now + timedelta(seconds=3600) and "not in a loop" in why


@pytest.mark.parametrize("retry_after, low, high", [
    ("21600", 21600 * 0.9, 21600), ("5", 3600 * 0.9, 3600), ("8640000", 86400 * 0.9, 86400),
    (None, 6 * 3600 * 0.9, 6 * 3600)])
def test_the_next_poll_follows_retry_after_within_an_hour_and_a_day(ari_app, cnames, retry_after,
                                                                   low, high):
    app, proxy = ari_app
    proxy.ari.headers = {"Retry-After": retry_after} if retry_after else {}
    cert = issued("customer.test", cnames)
    wait = (cert.ari_next_poll_at - cert.ari_checked_at).total_seconds()
    assert low <= wait <= high
    cert.ari_next_poll_at = utcnow()
    db.session().commit()
    assert renewals.ari_due() == [cert.id]
    assert renewals.poll_ari(cert.id) == "polled"
    cert = certificates.get(cert.id)
    assert low <= (cert.ari_next_poll_at - cert.ari_checked_at).total_seconds() <= high
    assert renewals.ari_due() == []


def test_a_moved_window_re_plans_and_a_past_one_renews_within_one_poll(ari_app, cnames):
    app, proxy = ari_app
    cert = issued("customer.test", cnames)
    first_plan = cert.renew_at
    assert proxy.ari.window[0] <= first_plan and cert.id not in renewals.due()
    # The CA moves the window into the past: "renew now" (a mass revocation).
    proxy.ari.window = (utcnow() - timedelta(days=2), utcnow() - timedelta(hours=1))
    scheduler = Scheduler(app)
    try:
        cert.ari_next_poll_at = utcnow()  # the poll is due
        db.session().commit()
        asked = proxy.ari.asked
        scheduler.tick()  # polls ARI; the freed slot looks again at once and renews
        assert scheduler.wait_idle(60)
    finally:
        scheduler.shutdown()
    db.session().expire_all()
    cert = certificates.get(cert.id)
    assert [v.number for v in certificates.versions(cert)] == [2, 1], cert.last_error
    lines = [e.message for e in certificates.timeline(cert)]
    assert any(line.startswith("the CA moved the renewal window") and "renewing now" in line
               for line in lines)
    # One poll, then the new version's plan asked once: still "open", so no renewal loop.
    assert proxy.ari.asked == asked + 2
    assert cert.renew_at > utcnow() and "not in a loop" in cert.renew_reason


def test_a_renewal_order_carries_replaces_with_the_ari_cert_id(ari_app, cnames):
    app, proxy = ari_app
    cert = issued("customer.test", cnames)
    leaf = x509.load_pem_x509_certificate(certificates.versions(cert)[0].cert_pem.encode())
    assert "replaces" not in proxy.posted_payloads(NEW_ORDER)[-1]  # a first order replaces nothing
    assert pipeline.renew(cert.id, reason="test") == "active"
    assert proxy.posted_payloads(NEW_ORDER)[-1]["replaces"] == ari_cert_id(leaf)


def test_a_ca_that_refuses_replaces_still_renews_without_it(ari_app, cnames):
    app, proxy = ari_app
    cert = issued("customer.test", cnames)
    proxy.inject("POST", NEW_ORDER, 409, problem={
        "type": "urn:ietf:params:acme:error:alreadyReplaced",
        "detail": "the certificate has already been replaced"})
    assert pipeline.renew(cert.id, reason="test") == "active", certificates.get(cert.id).last_error
    # (Pebble refuses a share of nonces, so a newOrder may be sent twice: compare kinds.)
    kinds = ["replaces" in p for p in proxy.posted_payloads(NEW_ORDER)]
    first_replacing = kinds.index(True)  # the renewal's first try (the issuance's had none)
    assert not kinds[-1] and False in kinds[first_replacing:]
    lines = [e.message for e in certificates.timeline(certificates.get(cert.id))]
    assert any("refused replaces" in line for line in lines)


def test_a_ca_without_renewal_info_is_not_polled(lab_app, cnames):
    with lab_app.app_context():
        cert = issued("customer.test", cnames)
        assert cert.ari_next_poll_at is None and cert.ari_window_start is None
        assert "rule:" in cert.renew_reason
