"""A CA that misbehaves on the wire: 503s with Retry-After on the directory, a slow newOrder,
a connection reset on finalize, a certificate download that stalls past the API timeout. Each
failed attempt keeps the stored order, so the certificate is issued in the end from that one
order."""
from __future__ import annotations

from datetime import timedelta

from tests.faults.conftest import PROFILE, new_cert, txt_left
from tests.lab.faultproxy import CERTIFICATE, FINALIZE, NEW_ORDER, ORDER
from webapp import db
from webapp.crypto import key_matches_cert
from webapp.models import CertificateVersion, utcnow
from webapp.services import ca_profiles, certificates, pipeline

API_TIMEOUT = 2  # seconds: the smallest the form allows, so a stall outlasts it quickly


def lines(cert) -> list[str]:
    return [e.message for e in certificates.timeline(cert)]


def test_503s_a_reset_finalize_and_a_stalled_download_still_issue_from_one_order(
        proxied_app, proxy, cnames):
    with proxied_app.app_context():
        profile = ca_profiles.by_name(PROFILE)
        profile.api_timeout = API_TIMEOUT
        db.session().commit()
        cert = new_cert("flaky.customer.test")
        cnames(cert)
        key = cert.private_key
        proxy.inject("GET", "/dir", 503, times=2, headers={"Retry-After": "1"})
        slow = proxy.delay("POST", NEW_ORDER, API_TIMEOUT / 2)  # slow, but in time: not a failure
        proxy.reset("POST", FINALIZE)                      # before Pebble sees it
        stall = proxy.stall("POST", CERTIFICATE, API_TIMEOUT + 0.5)
        status = pipeline.process_until_final(cert.id, wait=60)
        cert = certificates.get(cert.id)
        assert status == "active", cert.last_error
        versions = db.session().query(CertificateVersion).filter_by(certificate_id=cert.id).all()
        assert len(versions) == 1 and versions[0].private_key == key
        assert key_matches_cert(key, versions[0].cert_pem)
        assert proxy.new_orders() == 1
        assert proxy.count("GET", "/dir") >= 3 and proxy.count("POST", FINALIZE) >= 2
        assert len(stall.hits) == 1 and proxy.count("POST", CERTIFICATE) >= 2
        assert len(slow.hits) == 1
        timeline = lines(cert)
        order_url = versions[0].order_url
        assert sum(line.startswith("new order:") for line in timeline) == 1
        assert any(line.startswith(f"resume order {order_url}") for line in timeline)
        assert any("HTTP status 503" in line for line in timeline)
        assert any(f"timed out after {API_TIMEOUT} seconds" in line for line in timeline), "\n".join(timeline)
        assert txt_left(cert) == []


def test_a_directory_503_asking_for_minutes_moves_the_next_attempt_past_it(proxied_app, proxy, cnames):
    with proxied_app.app_context():
        cert = new_cert("later.customer.test")
        cnames(cert)
        proxy.inject("GET", "/dir", 503, times=1, headers={"Retry-After": "600"})
        before, fetches = utcnow(), proxy.count("GET", "/dir")
        assert pipeline.process(cert.id) == "processing"  # not Failed: tried again later
        cert = certificates.get(cert.id)
        assert cert.next_run_at >= before + timedelta(seconds=599)
        assert "HTTP status 503" in cert.last_error and "in 600 seconds" in cert.last_error_hint
        assert proxy.count("GET", "/dir") == fetches + 1 and proxy.new_orders() == 0


def test_a_finalize_whose_answer_is_lost_is_not_sent_twice_after_the_order_went_valid(
        proxied_app, proxy, cnames):
    with proxied_app.app_context():
        cert = new_cert("lost-answer.customer.test")
        cnames(cert)
        proxy.drop("POST", FINALIZE, forward=True)  # Pebble finalizes; the client hears nothing
        assert pipeline.process_until_final(cert.id, wait=30) == "active", \
            certificates.get(cert.id).last_error
        assert proxy.new_orders() == 1
        assert proxy.count("POST", FINALIZE, status=200) == 1  # the resumed run saw it valid


def test_a_stored_order_the_ca_reports_invalid_is_abandoned_for_a_new_one(proxied_app, proxy, cnames):
    with proxied_app.app_context():
        cert = new_cert("expired-order.customer.test")
        cnames(cert)
        proxy.reset("POST", FINALIZE)
        assert pipeline.process(cert.id) == "processing"
        stale = certificates.get(cert.id).order_url
        assert stale
        proxy.rewrite_status("POST", ORDER, "invalid")  # RFC 8555 7.1.6: an order past its expiry is invalid
        assert pipeline.process_until_final(cert.id, wait=30) == "active", \
            certificates.get(cert.id).last_error
        version = db.session().query(CertificateVersion).filter_by(certificate_id=cert.id).one()
        assert version.order_url != stale and proxy.new_orders() == 2
        assert any("stored order is invalid; opening a new one" in line for line in lines(cert)), "\n".join(lines(cert))
        assert txt_left(cert) == []
