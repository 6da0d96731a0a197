"""Short-lived certificates end to end: a Pebble issuing 36-second certificates, the real
scheduler (ticks, pool, claims) renewing them by the lifetime rule, three times in a row, with
the CNAMEs checked before every order and one notification per version, nothing else."""
from __future__ import annotations

import json
import time

from tests.conftest import add_lab_profile, add_lab_zone
from tests.lab.http import http_server
from tests.services.test_issuance import new_cert
from tests.services.test_notifications import Receiver, webhook_channel
from webapp import db
from webapp.models import AuditEvent, CertificateVersion, TimelineEvent
from webapp.services import certificates, notifications, scheduler

VALIDITY = 36  # seconds: renewed after about half of it, so a cycle takes ~20 s


def _versions(cert_id):
    db.session().expire_all()
    return db.session().query(CertificateVersion).filter_by(certificate_id=cert_id) \
        .order_by(CertificateVersion.number).all()


def _lines(cert_id, like):
    return db.session().query(TimelineEvent).filter(TimelineEvent.certificate_id == cert_id,
                                                    TimelineEvent.message.like(like)).count()


def test_three_automatic_renewals_of_a_short_lived_certificate(app, lab_bind, lab_unbound, pebble_factory,
                                                               cnames):
    pebble = pebble_factory(validity_seconds=VALIDITY)
    app.config.update(SSLMANAGER_DNS_RESOLVERS=[f"127.0.0.1:{lab_unbound.port}"],
                      SSLMANAGER_WEBHOOK_BACKOFF=0.05, SSLMANAGER_NOTIFY_TIMEOUT=5)
    receiver = Receiver()
    with http_server(receiver) as base, app.app_context():
        add_lab_zone(lab_bind)
        add_lab_profile(pebble)
        webhook_channel(base + "/hook")
        cert = new_cert("short.customer.test")
        cnames(cert)
        cert_id = cert.id
        db.session().commit()
        sched = scheduler.start(app)  # what `sslmanager run` does: ticks every 5 s, a worker pool
        try:
            deadline = time.monotonic() + 110
            seen = 0
            while time.monotonic() < deadline:
                versions = _versions(cert_id)
                if len(versions) > seen:  # the hourly scan, run at each new version: nothing to say
                    seen = len(versions)
                    assert notifications.scan() == {}
                if seen >= 4:
                    break
                time.sleep(0.5)
        finally:
            sched.shutdown()
        versions = _versions(cert_id)
        cert = certificates.get(cert_id)
        timeline = [e.message for e in certificates.timeline(cert)]
        assert len(versions) == 4, timeline  # issued, then renewed three times, by the scheduler alone
        assert len({v.serial for v in versions}) == 4 and cert.status == "active"
        life = versions[0].not_after - versions[0].not_before
        for before, after in zip(versions, versions[1:]):
            # Renewed when half the lifetime (less up to a twentieth, the jitter) remained: not
            # earlier, and in time (a duplicate renewal would come seconds after its twin).
            assert after.not_before >= before.not_before + life / 2 - life / 20 - life / 20
            assert after.not_before < before.not_after
        assert "rule: half of the 35-second lifetime remains" in cert.renew_reason \
            or "rule: half of the 36-second lifetime remains" in cert.renew_reason
        # No duplicate renewals: three started, three recorded; the CNAMEs checked before each order.
        assert _lines(cert_id, "renewal started%") == 3
        assert db.session().query(AuditEvent).filter_by(action="certificate renewed").count() == 3
        assert _lines(cert_id, "dns: every CNAME still resolves%") == 3
        assert cert.failing_since is None and cert.attempts == 0
    # One notification per version and nothing else: no "expiring" for a certificate issued
    # seconds ago, no failures.
    events = [json.loads(body)["event"] for _, body in receiver.requests]
    assert events == ["issued", "renewed", "renewed", "renewed"], events
