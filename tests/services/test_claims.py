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


# -- the per-CA bound across processes and nodes -------------------------------------------------

def _certs(n: int, profile_name: str = "P") -> tuple[int, list[int]]:
    profile = CAProfile(name=profile_name, module="custom")
    db.session().add(profile)
    db.session().flush()
    ids = []
    for i in range(n):
        cert = Certificate(profile_id=profile.id, domains=[f"c{i}.{profile_name.lower()}.test"],
                           common_name=f"c{i}.{profile_name.lower()}.test")
        db.session().add(cert)
        db.session().flush()
        ids.append(cert.id)
    db.session().commit()
    return profile.id, ids


def test_claims_within_the_bound_count_every_holder_of_the_ca(any_db_app):
    with any_db_app.app_context():
        pid, ids = _certs(4)
        other, (elsewhere,) = _certs(1, "Q")
        assert claims.claim_within(ids[0], pid, 2, "node1:tick:1") == "claimed"
        assert claims.claim(ids[1], "node2:cli")  # a claim taken without the bound counts too
        assert claims.claim_within(ids[2], pid, 2, "node3:tick:3") == "full"
        assert claims.claim_within(elsewhere, other, 2, "node3:tick:9") == "claimed"  # another CA
        claims.release(ids[0], "node1:tick:1")
        assert claims.claim_within(ids[1], pid, 2, "node3:tick:2") == "busy"  # held by node2
        assert claims.claim_within(ids[2], pid, 2, "node3:tick:3") == "claimed"
        # node2 dies: its claim stops counting when it runs out, with no release.
        db.session().get(Certificate, ids[1]).claimed_until = utcnow() - timedelta(seconds=1)
        db.session().commit()
        assert claims.claim_within(ids[3], pid, 2, "node1:tick:4") == "claimed"
        for cert_id, holder in ((ids[2], "node3:tick:3"), (ids[3], "node1:tick:4"),
                                (elsewhere, "node3:tick:9")):
            claims.release(cert_id, holder)


def test_claimers_racing_for_one_ca_never_pass_its_bound(any_db_app):
    """Twelve claimers at once (each its own session and connection, as processes on nodes):
    exactly the bound win, on PostgreSQL by the profile row's lock, on SQLite by its writer."""
    with any_db_app.app_context():
        pid, ids = _certs(12)
    start = threading.Barrier(len(ids))
    results: dict[int, str] = {}

    def claimer(cert_id: int) -> None:
        with any_db_app.app_context():
            start.wait()
            results[cert_id] = claims.claim_within(cert_id, pid, 3, f"node:tick:{cert_id}")
            db.session().remove()
    threads = [threading.Thread(target=claimer, args=(cert_id,)) for cert_id in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results.values()).count("claimed") == 3, results
    with any_db_app.app_context():
        live = db.session().query(Certificate).filter(Certificate.claimed_until.is_not(None)).count()
        assert live == 3
        for cert_id, outcome in results.items():
            if outcome == "claimed":
                claims.release(cert_id, f"node:tick:{cert_id}")


def test_what_is_due_leaves_out_what_another_node_holds(any_db_app):
    from webapp.services import pipeline, renewals
    with any_db_app.app_context():
        pid, (renewing, pending) = _certs(2)
        now = utcnow()
        for cert_id, values in ((renewing, {"status": "active", "auto_renew": True,
                                            "renew_at": now - timedelta(minutes=1)}),
                                (pending, {"status": "pending"})):
            cert = db.session().get(Certificate, cert_id)
            for key, value in values.items():
                setattr(cert, key, value)
        db.session().commit()
        assert renewals.due() == [renewing] and pipeline.due_for_processing() == [pending]
        assert claims.claim(renewing, "node2") and claims.claim(pending, "node2")
        assert renewals.due() == [] and pipeline.due_for_processing() == []
        claims.release(renewing, "node2")
        claims.release(pending, "node2")
        assert renewals.due() == [renewing]


def test_a_claim_from_a_stale_list_is_refused_once_another_node_renewed_it(any_db_app):
    """Node A read the due list; node B renewed the certificate and let it go; A's claim must
    not renew it a second time (the claim repeats the "still due" condition)."""
    from webapp.services import renewals
    with any_db_app.app_context():
        pid, (cert_id,) = _certs(1)
        cert = db.session().get(Certificate, cert_id)
        cert.status, cert.auto_renew, cert.renew_at = "active", True, utcnow() - timedelta(minutes=1)
        db.session().commit()
        assert renewals.due() == [cert_id]  # node A's list
        cert = db.session().get(Certificate, cert_id)
        cert.renew_at = utcnow() + timedelta(days=60)  # node B renewed it meanwhile
        db.session().commit()
        assert claims.claim_within(cert_id, pid, 4, "nodeA:tick:1", still=renewals.due_clause) == "busy"
        cert = db.session().get(Certificate, cert_id)
        cert.renew_at = utcnow() - timedelta(minutes=1)
        db.session().commit()
        assert claims.claim_within(cert_id, pid, 4, "nodeA:tick:1", still=renewals.due_clause) == "claimed"
        claims.release(cert_id, "nodeA:tick:1")
