"""A CA's rateLimited answer (429, Retry-After 120) on newOrder: remembered on the CA profile
in the database, so no process orders from that CA again before the time, not even after a
restart; then ordering resumes. Nothing here waits the 120 seconds: the stored time is checked
and then moved into the past."""
from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.conftest import make_app
from tests.faults.conftest import PROFILE, new_cert, signed_in
from webapp import db
from webapp.models import utcnow
from webapp.services import ca_profiles, certificates, pipeline

RATE_LIMITED = {"type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "too many new orders recently: see https://ca.test/docs/rate-limits"}
SHOWN = re.compile(r"rate limited until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC")


def shown_times(html: str) -> list[datetime]:
    return [datetime.strptime(t, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            for t in SHOWN.findall(html)]


def test_rate_limited_new_order_is_not_retried_before_retry_after_even_across_a_restart(
        tmp_path, proxied_app, proxy, cnames):
    app = proxied_app
    probed = proxy.count("POST", "/order-plz")  # Save and Test's probe order, before the limit
    proxy.inject("POST", "/order-plz", 429, headers={"Retry-After": "120"}, problem=RATE_LIMITED)
    with app.app_context():
        first, second = new_cert("limited1.customer.test"), new_cert("limited2.customer.test")
        cnames(first), cnames(second)
        first_id, second_id = first.id, second.id
        asked_at = utcnow()
        assert pipeline.process(first_id) == "processing"  # waiting, not Failed
        until = ca_profiles.by_name(PROFILE).rate_limited_until
        assert timedelta(seconds=119) <= until - asked_at <= timedelta(seconds=122)
        cert = certificates.get(first_id)
        assert cert.next_run_at == until and "rate limit" in cert.last_error
        assert first_id not in pipeline.due_for_processing()
        sent = proxy.count("POST", "/order-plz")
        assert sent == probed + 1
        # Same CA, another certificate, and the first one again: nothing reaches the CA.
        assert pipeline.process(second_id) == "processing"
        assert pipeline.process(first_id) == "processing"
        assert proxy.count("POST", "/order-plz") == sent
        assert "rate limited until" in certificates.get(second_id).last_error
        app.extensions["sslmanager"].engine.dispose()

    restarted = make_app(tmp_path, SSLMANAGER_DNS_RESOLVERS=app.config["SSLMANAGER_DNS_RESOLVERS"])
    with restarted.app_context():
        stored = ca_profiles.by_name(PROFILE).rate_limited_until
        assert abs(stored - until) < timedelta(seconds=1)  # in the database, not in memory
        assert pipeline.process(first_id) == "processing"
        assert proxy.count("POST", "/order-plz") == sent

    page = signed_in(restarted).get(f"/certificates/{first_id}")
    assert page.status_code == 200
    times = shown_times(page.get_data(as_text=True))
    assert times and all(abs(t - until) < timedelta(seconds=2) for t in times), times

    with restarted.app_context():  # the 120 seconds have passed
        profile = ca_profiles.by_name(PROFILE)
        profile.rate_limited_until = utcnow() - timedelta(seconds=1)
        db.session().commit()
        assert pipeline.process(first_id) == "active", certificates.get(first_id).last_error
        assert pipeline.process(second_id) == "active", certificates.get(second_id).last_error
        restarted.extensions["sslmanager"].engine.dispose()
    assert proxy.new_orders() == 2
