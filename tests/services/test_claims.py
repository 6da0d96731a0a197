"""Leases and claims: one holder at a time, in the database, ending by themselves."""
from __future__ import annotations

import threading
from datetime import timedelta

from webapp import db
from webapp.models import CAProfile, Certificate, Lease, utcnow
from webapp.services import claims


def _cert() -> int:
    profile = CAProfile(name="P", module="custom")
    db.session().add(profile)
    db.session().flush()
    cert = Certificate(profile_id=profile.id, domains=["a.test"], common_name="a.test")
    db.session().add(cert)
    db.session().commit()
    return cert.id


def test_a_lease_has_one_holder_until_it_ends_or_runs_out(app):
    with app.app_context():
        assert claims.take_lease("job", 30, holder="a")
        assert claims.take_lease("job", 30, holder="a")  # the holder extends it
        assert not claims.take_lease("job", 30, holder="b")
        claims.end_lease("job", holder="a")
        assert claims.take_lease("job", 30, holder="b")
        assert claims.lease_last_run("job") is not None
        assert claims.lease_last_run("never") is None


def test_a_lease_whose_holder_stopped_renewing_it_is_taken_over(app):
    with app.app_context():
        assert claims.take_lease("job", 30, holder="dead")
        db.session().get(Lease, "job").until = utcnow() - timedelta(seconds=1)  # it stopped renewing
        db.session().commit()
        assert claims.take_lease("job", 30, holder="alive")


def test_a_certificate_has_one_claim_holder_and_a_dead_ones_claim_ends(app):
    with app.app_context():
        cert_id = _cert()
        assert claims.claim(cert_id, "a")
        assert claims.claim(cert_id, "a")  # the holder again
        assert not claims.claim(cert_id, "b")
        claims.release(cert_id, "b")  # not b's to release
        assert not claims.claim(cert_id, "b")
        claims.release(cert_id, "a")
        assert claims.claim(cert_id, "b")
        # b dies: its claim ends when its time is up, with no release.
        db.session().get(Certificate, cert_id).claimed_until = utcnow() - timedelta(seconds=1)
        db.session().commit()
        assert claims.claim(cert_id, "c")
        claims.release(cert_id, "c")


def test_two_threads_of_one_process_are_two_holders(app):
    with app.app_context():
        cert_id = _cert()
        assert claims.claim(cert_id)
    seen = []

    def other():
        with app.app_context():
            seen.append(claims.claim(cert_id))
            db.session().remove()
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == [False] and claims.current_holder().startswith(claims.HOLDER)
