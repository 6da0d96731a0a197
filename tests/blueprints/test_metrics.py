"""GET /metrics: Prometheus text format; admins, or scrapers from SSLMANAGER_METRICS_ALLOW."""
from __future__ import annotations

import re
from datetime import timedelta

from webapp import db
from webapp.models import CAProfile, Certificate, Lease, utcnow

# One sample line of the exposition format: name, optional {labels}, a number.
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+-]+$')


def seed(app):
    with app.app_context():
        profile = CAProfile(name="P", module="custom")
        db.session().add(profile)
        db.session().flush()
        now = utcnow()
        for name, status, days, failing in (("a.example", "active", 40, None), ("b.example", "active", 5, now),
                                            ('quo"te.example', "failed", None, None), ("c.example", "pending", None, None)):
            db.session().add(Certificate(profile_id=profile.id, domains=[name], common_name=name, status=status,
                                         not_after=now + timedelta(days=days) if days else None,
                                         failing_since=failing, deploy_last_ok=True if name == "a.example" else None))
        db.session().add(Lease(name="dispatch", holder="x", last_run_at=now.replace(microsecond=0)))
        db.session().commit()
        return int(now.replace(microsecond=0).timestamp())


def samples(text):
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_metrics_in_prometheus_text_format_for_an_admin(app, admin_client):
    last_run = seed(app)
    resp = admin_client.get("/metrics")
    text = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain; version=0.0.4")
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or SAMPLE.match(line), line
    got = samples(text)
    assert got['sslmanager_certificates{status="active"}'] == 2
    assert got['sslmanager_certificates{status="pending"}'] == 1 and got['sslmanager_certificates{status="revoked"}'] == 0
    expiry = got['sslmanager_certificate_expiry_seconds{id="2",common_name="b.example",status="active"}']
    assert abs(expiry - 5 * 86400) < 60
    assert got["sslmanager_renewal_failures"] == 1
    assert got["sslmanager_scheduler_last_run_timestamp_seconds"] == last_run
    assert got['sslmanager_deploy_ok{id="1",common_name="a.example"}'] == 1
    assert "# TYPE sslmanager_certificates gauge" in text


def test_label_values_are_escaped(app, admin_client):
    with app.app_context():
        profile = CAProfile(name="P", module="custom")
        db.session().add(profile)
        db.session().flush()
        db.session().add(Certificate(profile_id=profile.id, domains=["x"], common_name='we"ird\\name', status="active",
                                     not_after=utcnow() + timedelta(days=1)))
        db.session().commit()
    text = admin_client.get("/metrics").get_data(as_text=True)
    assert 'common_name="we\\"ird\\\\name"' in text


def test_metrics_need_a_sign_in_without_an_allow_list(client):
    resp = client.get("/metrics")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_a_scraper_on_the_allow_list_reads_metrics_without_signing_in(app, client):
    app.config["SSLMANAGER_METRICS_ALLOW"] = ["not-a-cidr", "10.0.0.0/8", "2001:db8::/32"]
    resp = client.get("/metrics", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert resp.status_code == 200 and "sslmanager_certificates" in resp.get_data(as_text=True)
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "2001:db8::5"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "192.168.1.9"}).status_code == 302
    assert client.get("/", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 302  # metrics only
