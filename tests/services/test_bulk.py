"""`cert process ID...` and `renew` from one process: the lines printed and the exit code."""
from __future__ import annotations

from tests.conftest import make_certificate
from webapp import db
from webapp.models import CAProfile
from webapp.services import bulk, certificates, pipeline


def _profile(app) -> int:
    with app.app_context():
        profile = CAProfile(name="P", module="custom", dns_zone="acme.tech.test", email="a@b.test")
        db.session().add(profile)
        db.session().commit()
        return profile.id


def test_a_batch_prints_a_line_per_certificate_and_a_count(app, monkeypatch):
    pid = _profile(app)
    ok, bad = make_certificate(app, pid, "ok.test"), make_certificate(app, pid, "bad.test")

    def fake(cert_id, wait, hold=None, say=None):
        cert = certificates.get(cert_id)
        cert.status = "active" if cert_id == ok else "failed"
        cert.last_error = "" if cert_id == ok else "new order: the CA said no"
        db.session().commit()
        return cert
    monkeypatch.setattr(pipeline, "process_now", fake)
    out, err = [], []
    code = bulk.process_and_report(app, [ok, bad, 424242], 0, 2, out=out.append, err=err.append)
    assert code == 1
    assert f"Certificate {ok} (ok.test): active" in out
    assert f"Certificate {bad} (bad.test): failed: new order: the CA said no" in out
    assert "Certificate 424242: missing: no such certificate" in out
    assert out[-1] == "1 of 3 Active."


def test_one_certificate_prints_its_error_and_hint(app, monkeypatch):
    pid = _profile(app)
    cert_id = make_certificate(app, pid, "one.test")

    def fake(cert_id, wait, hold=None, say=None):
        cert = certificates.get(cert_id)
        cert.status, cert.last_error, cert.last_error_hint = "pending", "no CNAME", "create it"
        db.session().commit()
        return cert
    monkeypatch.setattr(pipeline, "process_now", fake)
    out, err = [], []
    assert bulk.process_and_report(app, [cert_id], 0, None, out=out.append, err=err.append) == 1
    assert out == [f"Certificate {cert_id}: pending"] and err == ["  no CNAME", "  hint: create it"]


def test_renew_many_renews_each_through_the_pipeline(app, monkeypatch):
    pid = _profile(app)
    ids = [make_certificate(app, pid, f"r{i}.test", status="active") for i in range(3)]
    renewed = []
    monkeypatch.setattr(pipeline, "renew", lambda cert_id, reason: renewed.append(cert_id) or "active")
    assert bulk.renew_many(app, ids, limit=2) == {i: "active" for i in ids}
    assert sorted(renewed) == ids
