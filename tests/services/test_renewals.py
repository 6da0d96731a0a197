"""Renewals: when (ARI, lifetime rule, override), a renewal as a new version, failures that
keep the current version serving, and many processes renewing each certificate once."""
from __future__ import annotations

import threading
import time
from datetime import timedelta


from tests.lab.faultproxy import running_proxy
from tests.conftest import add_lab_profile, add_lab_zone, make_app, run_scheduler_processes
from tests.services.test_issuance import new_cert
from webapp import db
from webapp.models import CertificateVersion, utcnow
from webapp.services import ca_profiles, certificates, claims, pipeline, renewals


def issued(domains, cnames):
    cert = new_cert(domains)
    cnames(cert)
    assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
    return certificates.get(cert.id)


def ca_unreachable() -> None:
    """Make the next renewal fail: the CA does not answer. (Not a removed CNAME: Pebble still
    reuses ~1 % of authorizations, and a reused one renews without asking DNS at all.)"""
    profile = ca_profiles.by_name("Pebble")
    profile.directory_url = "https://127.0.0.1:9/dir"
    db.session().commit()


def test_lifetime_rule_renews_with_a_third_left_or_half_when_short():
    start = utcnow()
    at, reason = renewals.lifetime_rule(start, start + timedelta(days=90))
    assert at == start + timedelta(days=60) and reason == "rule: a third of the 90-day lifetime remains"
    at, reason = renewals.lifetime_rule(start, start + timedelta(hours=160))
    assert at == start + timedelta(hours=80) and reason == "rule: half of the 6-day lifetime remains"
    at, reason = renewals.lifetime_rule(start, start + timedelta(minutes=40))
    assert at == start + timedelta(minutes=20) and "half of the 40-minute lifetime" in reason


def test_lifetime_rule_jitter_renews_up_to_a_twentieth_of_the_lifetime_earlier_never_later():
    start = utcnow()
    at, reason = renewals.lifetime_rule(start, start + timedelta(days=90), spread=1.0)
    assert at == start + timedelta(days=60) - timedelta(days=4.5) and "4 days earlier at random" in reason
    at, _ = renewals.lifetime_rule(start, start + timedelta(days=6), spread=0.5)
    assert at == start + timedelta(days=3) - timedelta(hours=3.6)


def test_issued_certificate_gets_its_renewal_time_and_why(lab_app, cnames):
    with lab_app.app_context():
        cert = issued("customer.test", cnames)
        assert cert.renew_at is not None and "rule: a third" in cert.renew_reason
        assert cert.renew_at < cert.not_after


def test_renewal_is_a_new_version_with_a_new_key_and_no_dns_change(lab_app, cnames):
    with lab_app.app_context():
        cert = issued("customer.test *.customer.test", cnames)
        target = certificates.instructions(cert)[0].target
        first_key = cert.private_key
        assert pipeline.renew(cert.id, reason="test") == "active"
        cert = certificates.get(cert.id)
        versions = certificates.versions(cert)
        assert [v.number for v in versions] == [2, 1]
        assert versions[0].private_key != first_key and versions[1].private_key == first_key
        assert versions[0].serial != versions[1].serial
        assert certificates.instructions(cert)[0].target == target  # same CNAME
        assert certificates.export_files(cert, versions[1])["cert.pem"]  # old one still downloadable


def test_profile_override_sets_the_renewal_time(lab_app, cnames):
    with lab_app.app_context():
        profile = ca_profiles.by_name("Pebble")
        profile.renew_days_before = 30
        db.session().commit()
        cert = issued("customer.test", cnames)
        assert "override: 30 days" in cert.renew_reason
        assert abs((cert.not_after - cert.renew_at) - timedelta(days=30)) < timedelta(seconds=1)


def test_an_override_longer_than_the_lifetime_cannot_renew_in_a_loop(lab_app, cnames):
    with lab_app.app_context():
        profile = ca_profiles.by_name("Pebble")
        profile.renew_days_before = 365 * 10
        db.session().commit()
        cert = issued("customer.test", cnames)
        assert "capped" in cert.renew_reason and cert.renew_at > utcnow() and cert.id not in renewals.due()


def test_failed_renewal_keeps_serving_and_says_since_when(lab_app, lab_bind, cnames):
    with lab_app.app_context():
        cert = issued("other.test", cnames)
        serial = cert.serial
        ca_unreachable()
        status = pipeline.renew(cert.id, reason="test")
        cert = certificates.get(cert.id)
        assert status == "active" and cert.serial == serial
        assert cert.failing_since is not None and cert.last_error and cert.next_run_at > utcnow()
        assert cert.id not in renewals.due()  # backing off, not hammering the CA


def test_renewal_time_comes_from_ari_when_the_ca_offers_it(app, lab_bind, lab_unbound, lab_pebble, cnames):
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with running_proxy(lab_pebble) as proxy, app.app_context():
        proxy.directory_extra["renewalInfo"] = "/ari/"
        add_lab_zone(lab_bind)
        add_lab_profile(lab_pebble, directory_url=f"{proxy.base}/dir")
        start, end = utcnow() + timedelta(days=1), utcnow() + timedelta(days=2)
        window = {"suggestedWindow": {"start": start.isoformat().replace("+00:00", "Z"),
                                      "end": end.isoformat().replace("+00:00", "Z")},
                  "explanationURL": "https://ca.example/why"}

        class AnyAri(dict):  # answer every certID with the same window
            def __contains__(self, key):
                return key.startswith("/ari/")

            def __getitem__(self, key):
                return window, {"Retry-After": "21600"}
        proxy.ari = AnyAri()
        cert = issued("customer.test", cnames)
        assert start <= cert.renew_at <= end
        assert "ARI window" in cert.renew_reason and "https://ca.example/why" in cert.renew_reason


def test_expired_certificates_are_marked_expired(lab_app, cnames):
    with lab_app.app_context():
        cert = issued("customer.test", cnames)
        cert.not_after = utcnow() - timedelta(seconds=1)
        db.session().commit()
        assert renewals.expire() == 1 and certificates.get(cert.id).status == "expired"


def test_a_dead_holders_claim_expires_and_another_process_takes_over(lab_app):
    with lab_app.app_context():
        cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id, "domains": "customer.test"})
        assert claims.claim(cert.id, holder="dead-process", seconds=1)
        assert pipeline.process(cert.id) == "busy"
        time.sleep(1.1)
        assert claims.claim(cert.id)


def test_a_live_holders_claim_is_kept_alive_by_its_heartbeat(lab_app, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_SECONDS", 0.2)
    with lab_app.app_context():
        cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id, "domains": "customer.test"})
        assert claims.claim(cert.id, holder="worker-a", seconds=1)
        time.sleep(1.6)  # past the claim's own second: only the heartbeat keeps it
        assert not claims.claim(cert.id, holder="worker-b")
        claims.release(cert.id, holder="worker-a")
        assert claims.claim(cert.id, holder="worker-b")
        claims.release(cert.id, holder="worker-b")


def test_two_threads_of_one_process_never_work_on_one_certificate(lab_app):
    with lab_app.app_context():
        cert_id = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id,
                                       "domains": "customer.test"}).id
        assert claims.claim(cert_id)
    seen = []

    def other_thread():
        with lab_app.app_context():
            seen.append(pipeline.process(cert_id))
            db.session().remove()
    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == ["busy"]
    with lab_app.app_context():
        claims.release(cert_id)


# -- many processes, one database ---------------------------------------------------------------

def test_three_processes_renew_fifty_due_certificates_exactly_once(tmp_path, shared_db_url, lab_bind,
                                                                   lab_unbound, lab_pebble, cnames):
    app = make_app(tmp_path, SSLMANAGER_DATABASE_URL=shared_db_url,
                   SSLMANAGER_DNS_RESOLVERS=[f"127.0.0.1:{lab_unbound.port}"])
    with app.app_context():
        add_lab_zone(lab_bind)
        add_lab_profile(lab_pebble)
        ids = []
        for i in range(50):
            cert = new_cert(f"r{i}.customer.test")
            cnames(cert)
            assert pipeline.process(cert.id) == "active"
            ids.append(cert.id)
        for cert_id in ids:  # Pebble's certificates live for years: make them all due now
            cert = certificates.get(cert_id)
            cert.renew_at = utcnow()
        db.session().commit()
        app.extensions["sslmanager"].engine.dispose()
    run_scheduler_processes(str(tmp_path / "instance"), shared_db_url, f"127.0.0.1:{lab_unbound.port}")
    with app.app_context():
        counts = [db.session().query(CertificateVersion).filter_by(certificate_id=i).count() for i in ids]
        unrenewed = {i: certificates.get(i).last_error for i, n in zip(ids, counts) if n != 2}
        db.session().remove()
        app.extensions["sslmanager"].engine.dispose()
        assert counts == [2] * 50, unrenewed  # every certificate renewed, none twice


def test_certificate_page_shows_the_next_renewal_and_a_failing_renewal(lab_app, lab_bind, cnames, admin_client):
    with lab_app.app_context():
        cert = issued("other.test", cnames)
        html = admin_client.get(f"/certificates/{cert.id}").get_data(as_text=True)
        assert "Next renewal" in html and "rule: a third" in html
        ca_unreachable()
        pipeline.renew(cert.id, reason="test")
        html = admin_client.get(f"/certificates/{cert.id}").get_data(as_text=True)
        assert "renewal failing since" in html and "next attempt" in html
