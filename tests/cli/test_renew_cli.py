"""`sslmanager renew` against the real lab: the due ones, given IDs, --dry-run, and the bound on
orders in flight per CA."""
from __future__ import annotations

import threading
import time

from tests.conftest import make_certificate
from tests.services.test_renewals import issued
from webapp import db
from webapp.models import CertificateVersion, utcnow
from webapp.services import bulk, ca_profiles, certificates, claims, pipeline


def versions_of(ids):
    return [db.session().query(CertificateVersion).filter_by(certificate_id=i).count() for i in ids]


def test_renew_due_renews_only_the_due_ones_once_each(lab_app, cnames):
    runner = lab_app.test_cli_runner()
    with lab_app.app_context():
        ids = [issued(f"r{i}.customer.test", cnames).id for i in range(4)]
        for cert_id in ids[:3]:
            certificates.get(cert_id).renew_at = utcnow()
        db.session().commit()
    result = runner.invoke(args=["sslmanager", "renew", "--due", "--concurrency", "2"])
    assert result.exit_code == 0, result.output
    assert result.output.count(": renewed") == 3 and "3 renewed, 0 failed." in result.output
    with lab_app.app_context():
        assert versions_of(ids) == [2, 2, 2, 1]
        assert all(certificates.get(i).status == "active" for i in ids)
    result = runner.invoke(args=["sslmanager", "renew"])  # renewed ones are no longer due
    assert result.exit_code == 0 and "Nothing to renew." in result.output


def test_a_certificate_another_process_holds_is_skipped_not_failed(lab_app, cnames):
    runner = lab_app.test_cli_runner()
    with lab_app.app_context():
        cert_id = issued("customer.test", cnames).id
        assert claims.claim(cert_id, holder="the scheduler elsewhere", seconds=60)
    result = runner.invoke(args=["sslmanager", "renew", str(cert_id)])
    assert result.exit_code == 0, result.output
    assert "skipped, another process is working on it" in result.output
    assert "0 renewed, 0 failed, 1 skipped." in result.output
    with lab_app.app_context():
        assert versions_of([cert_id]) == [1]


def test_dry_run_lists_the_due_ones_with_their_renewal_time_and_changes_nothing(lab_app, cnames):
    runner = lab_app.test_cli_runner()
    with lab_app.app_context():
        cert_id = issued("customer.test", cnames).id
        certificates.get(cert_id).renew_at = utcnow()
        db.session().commit()
    result = runner.invoke(args=["sslmanager", "renew", "--dry-run"])
    assert result.exit_code == 0
    assert f"would renew {cert_id} (customer.test): renewal time" in result.output
    assert "rule: a third" in result.output
    with lab_app.app_context():
        assert versions_of([cert_id]) == [1]


def test_a_failed_renewal_or_unknown_id_exits_1_naming_why(lab_app, lab_bind, cnames):
    runner = lab_app.test_cli_runner()
    with lab_app.app_context():
        good = issued("customer.test", cnames).id
        broken = issued("other.test", cnames).id
    lab_bind.clear("_acme-challenge.other.test")
    result = runner.invoke(args=["sslmanager", "renew", str(good), str(broken), "999999"])
    assert result.exit_code == 1
    assert f"{good} (customer.test): renewed" in result.output
    assert f"{broken} (other.test): FAILED:" in result.output and "_acme-challenge.other.test" in result.output
    assert "999999: FAILED: no such certificate" in result.output
    with lab_app.app_context():
        assert certificates.get(broken).status == "active"  # still serving its current version


def test_renew_many_keeps_each_ca_within_its_bound_while_cas_run_side_by_side(app, monkeypatch):
    # A stand-in for the ACME work (no CA needed): what is checked here is only the scheduling.
    lock = threading.Lock()
    in_flight: dict[int, int] = {}
    peak: dict[int, int] = {}
    overall_peak = 0
    profile_of: dict[int, int] = {}

    def fake_renew(cert_id, reason):
        nonlocal overall_peak
        pid = profile_of[cert_id]
        with lock:
            in_flight[pid] = in_flight.get(pid, 0) + 1
            peak[pid] = max(peak.get(pid, 0), in_flight[pid])
            overall_peak = max(overall_peak, sum(in_flight.values()))
        time.sleep(0.05)
        with lock:
            in_flight[pid] -= 1
        return "active"

    monkeypatch.setattr(pipeline, "renew", fake_renew)
    with app.app_context():
        profiles = []
        for name in ("CA one", "CA two"):
            profile = ca_profiles.create({"name": name, "module": "custom"})
            profile.email, profile.dns_zone = "ops@example.com", "acme.example.net"
            profiles.append(profile.id)
        db.session().commit()
    ids = []
    for pid in profiles:
        for i in range(6):
            cert_id = make_certificate(app, pid, f"n{i}.p{pid}.example.com")
            profile_of[cert_id] = pid
            ids.append(cert_id)
    results = bulk.renew_many(app, ids, limit=2)
    assert results == {i: "active" for i in ids}
    assert peak == {profiles[0]: 2, profiles[1]: 2} and overall_peak == 4
