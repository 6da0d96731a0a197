"""The pipeline: what a failure means (retry with backoff, keep serving, Failed), the one
hint-maker, and issuance followed by its plan (one commit), deploy and notification."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import make_certificate
from webapp import db
from webapp.errors import AcmeError, AcmeNetworkError, AcmeRateLimited
from webapp.models import AuditEvent, CAProfile, Status, utcnow
from webapp.services import certificates, pipeline


@pytest.fixture
def processing(app):
    with app.app_context():
        profile = CAProfile(name="P", module="custom", dns_zone="acme.tech.test", email="a@b.test")
        db.session().add(profile)
        db.session().commit()
        pid = profile.id
    return make_certificate(app, pid, "p.test", status=Status.PROCESSING)


def test_a_network_failure_is_retried_later_with_backoff(app, processing):
    with app.app_context():
        pipeline.handle_failure(certificates.get(processing),
                                AcmeNetworkError("could not talk to the CA", step="new order"))
        cert = certificates.get(processing)
        assert cert.status == "processing" and cert.attempts == 1
        assert utcnow() + timedelta(seconds=40) < cert.next_run_at < utcnow() + timedelta(seconds=80)
        pipeline.handle_failure(cert, AcmeNetworkError("again", step="new order"))
        assert cert.next_run_at > utcnow() + timedelta(seconds=90)  # doubled


def test_a_refusal_is_final_with_the_hint_from_its_problem_type(app, processing):
    with app.app_context():
        pipeline.handle_failure(certificates.get(processing), AcmeError(
            "the CA marked the order invalid", step="finalize",
            problem_type="urn:ietf:params:acme:error:caa"))
        cert = certificates.get(processing)
        assert cert.status == "failed" and "CAA" in cert.last_error_hint
        assert db.session().query(AuditEvent).filter_by(action="certificate failed").count() == 1


def test_a_rate_limit_holds_the_whole_profile_until_it_ends(app, processing):
    with app.app_context():
        pipeline.handle_failure(certificates.get(processing), AcmeRateLimited(
            "rate limited", step="new order", retry_after=3600))
        cert = certificates.get(processing)
        profile = db.session().get(CAProfile, cert.profile_id)
        assert profile.rate_limited_until > utcnow() + timedelta(minutes=59)
        assert cert.next_run_at == profile.rate_limited_until


def test_issuance_is_followed_by_its_plan_in_the_same_commit(lab_app, cnames):
    with lab_app.app_context():
        cert = certificates.request(certificates.create(
            {"profile_id": db.session().query(CAProfile).one().id, "domains": "customer.test"}))
        cnames(cert)
        cert_id = cert.id
        assert pipeline.process(cert_id) == "active"
        db.session().remove()
        cert = certificates.get(cert_id)  # as saved
        assert cert.renew_at is not None and cert.renew_reason
        assert certificates.current_version(cert).serial == cert.serial
        lines = [e.message for e in certificates.timeline(cert)]
        assert lines.index(next(line for line in lines if line.startswith("active:"))) < \
            lines.index(next(line for line in lines if line.startswith("next renewal")))


# -- the DNS check before every order -----------------------------------------------------------

def _after(lines, marker):
    return lines[max(i for i, line in enumerate(lines) if line.startswith(marker)):]


def test_a_renewal_checks_the_cnames_first_and_a_broken_one_costs_no_order(lab_app, lab_bind, cnames):
    """Authorization reuse is shrinking (7 hours at Let's Encrypt from 2028): every order
    validates, so every renewal checks the CNAMEs before it orders. Broken: the renewal fails
    like any other (current version serving, retried later) without asking the CA."""
    with lab_app.app_context():
        cert = certificates.request(certificates.create(
            {"profile_id": db.session().query(CAProfile).one().id, "domains": "customer.test"}))
        cnames(cert)
        assert pipeline.process(cert.id) == "active"
        serial = cert.serial
        for item in certificates.instructions(cert):
            lab_bind.clear(item.name)
        assert pipeline.renew(cert.id, reason="test") == "active"
        cert = certificates.get(cert.id)
        lines = _after([e.message for e in certificates.timeline(cert)], "renewal started")
        assert cert.serial == serial and len(certificates.versions(cert)) == 1
        assert cert.failing_since is not None and "CNAME check before the order" in cert.last_error
        assert "_acme-challenge.customer.test" in cert.last_error and cert.next_run_at > utcnow()
        assert not any(line.startswith(("new order", "resume order")) for line in lines), lines
        cnames(cert)  # restored: the next renewal checks again, then orders
        assert pipeline.renew(cert.id, reason="test") == "active"
        cert = certificates.get(cert.id)
        lines = _after([e.message for e in certificates.timeline(cert)], "renewal started")
        assert len(certificates.versions(cert)) == 2 and cert.failing_since is None
        checked = lines.index(next(l for l in lines if l.startswith("dns: every CNAME still resolves")))
        ordered = lines.index(next(l for l in lines if l.startswith("new order")))
        assert checked < ordered


def test_a_first_issuance_retried_without_an_order_goes_back_to_pending_when_a_cname_broke(lab_app):
    with lab_app.app_context():
        cert = certificates.request(certificates.create(
            {"profile_id": db.session().query(CAProfile).one().id, "domains": "nocname.customer.test"}))
        cert.status = Status.PROCESSING  # e.g. a retry after the CA was unreachable, no order yet
        db.session().commit()
        assert pipeline.process(cert.id) == "pending"
        cert = certificates.get(cert.id)
        assert "_acme-challenge.nocname.customer.test" in cert.last_error and cert.next_run_at > utcnow()
