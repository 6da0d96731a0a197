"""/api/v1/agent/...: the listing an agent polls (ETag, 304, restriction), its reports, and what
the certificate page and the dashboard then show."""
from __future__ import annotations

from datetime import timedelta

import pytest

from tests.agent.pems import make_pem
from tests.conftest import signed_in
from webapp import db
from webapp.models import Agent, CertificateVersion, Status, utcnow
from webapp.services import agents, certificates, tags

from .conftest import bearer


def _issue(app, cert_id, number=1, serial="0a"):
    with app.app_context():
        cert = certificates.get(cert_id)
        pem, key = make_pem(int(serial, 16))
        db.session().add(CertificateVersion(certificate_id=cert_id, number=number, cert_pem=pem,
                                            chain_pem=pem, private_key=key, serial=serial,
                                            issuer="lab", not_before=utcnow(), not_after=utcnow() + timedelta(days=6)))
        cert.status, cert.serial = Status.ACTIVE, serial
        db.session().commit()


@pytest.fixture
def two(app, two):
    """The conftest's two tagged certificates, each with an issued version."""
    a, b = two
    _issue(app, a)
    _issue(app, b, serial="0b")
    return a, b


def test_the_listing_holds_the_tokens_certificates_and_a_304_when_unchanged(app, api, make_token, two):
    a, _b = two
    h = {**bearer(make_token("web-03", ["read", "keys:read"], tags=["web-03"])), "SSLManager-Agent": "web-03"}
    first = api.get("/api/v1/agent/certificates", headers=h)
    assert first.status_code == 200
    [item] = first.get_json()["certificates"]
    assert (item["id"], item["version"]["serial"], item["version"]["number"]) == (a, "0a", 1)
    assert item["bundle_url"] == f"/api/v1/certificates/{a}/pem?version=1&include_key=true"
    etag = first.headers["ETag"]
    again = api.get("/api/v1/agent/certificates", headers={**h, "If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    _issue(app, a, number=2, serial="0c")  # a renewal changes the answer at once
    renewed = api.get("/api/v1/agent/certificates", headers={**h, "If-None-Match": etag})
    assert renewed.status_code == 200 and renewed.get_json()["certificates"][0]["version"]["serial"] == "0c"
    bundle = api.get(renewed.get_json()["certificates"][0]["bundle_url"], headers=h).get_json()
    assert bundle["serial"] == "0c" and "PRIVATE KEY" in bundle["key"]


def test_a_tag_change_shows_within_the_list_ttl(app, api, make_token, two, monkeypatch):
    a, b = two
    h = bearer(make_token("web-03", ["read"], tags=["web-03"]))
    assert [c["id"] for c in api.get("/api/v1/agent/certificates", headers=h).get_json()["certificates"]] == [a]
    with app.app_context():
        tags.replace(certificates.get(b), ["web-03"])
    monkeypatch.setattr(agents, "LIST_TTL", 0)  # the cached answer has aged out
    assert [c["id"] for c in api.get("/api/v1/agent/certificates", headers=h).get_json()["certificates"]] == [a, b]


def test_a_poll_records_the_agent_once_then_only_every_few_minutes(app, api, make_token, two):
    h = {**bearer(make_token("web-03", ["read"], tags=["web-03"])), "SSLManager-Agent": "web-03.example.net"}
    api.get("/api/v1/agent/certificates", headers=h)
    with app.app_context():
        agent = db.session().query(Agent).one()
        assert agent.name == "web-03.example.net"
        first = agent.last_seen_at
    api.get("/api/v1/agent/certificates", headers=h)
    with app.app_context():
        assert db.session().query(Agent).one().last_seen_at == first  # no write on this poll


def test_a_report_shows_on_the_certificate_page_and_an_old_version_on_the_dashboard(app, api, make_token, two):
    a, _b = two
    h = {**bearer(make_token("web-03", ["read", "keys:read"], tags=["web-03"])), "SSLManager-Agent": "web-03"}
    sent = api.post("/api/v1/agent/reports", headers=h, json={"certificate_id": a, "version_id": 1, "serial": "0A",
                                                              "ok": True, "message": "wrote 4 files"})
    assert sent.status_code == 201 and sent.get_json()["installed_serial"] == "0a"
    client = signed_in(app)
    page = client.get(f"/certificates/{a}").get_data(as_text=True)
    assert 'id="agents"' in page and "web-03" in page and "0a" in page and "current" in page
    assert 'id="attention-agents-behind"' not in client.get("/").get_data(as_text=True)
    _issue(app, a, number=2, serial="0c")
    dashboard = client.get("/").get_data(as_text=True)
    assert 'id="attention-agents-behind"' in dashboard and "web-03 serves 0a" in dashboard
    failed = api.post("/api/v1/agent/reports", headers=h, json={"certificate_id": a, "serial": "0c", "ok": False,
                                                                "message": "reload exited 1"})
    assert failed.get_json()["installed_serial"] == "0a"  # the old one still serves
    assert "reload exited 1" in client.get(f"/certificates/{a}").get_data(as_text=True)


def test_an_agent_silent_too_long_is_flagged(app, api, make_token, two):
    a, _b = two
    h = {**bearer(make_token("web-03", ["read"], tags=["web-03"])), "SSLManager-Agent": "web-03"}
    api.post("/api/v1/agent/reports", headers=h, json={"certificate_id": a, "serial": "0a", "ok": True})
    with app.app_context():
        [silent] = [g for g in agents.attention() if g.key == "agents-silent"]
        assert silent.count == 0
        db.session().query(Agent).update({"last_seen_at": utcnow() - timedelta(hours=1)})
        db.session().commit()
        [silent] = [g for g in agents.attention() if g.key == "agents-silent"]
        assert silent.count == 1 and silent.items[0].detail.startswith("web-03: last seen 60 min ago")


def test_a_report_on_another_tags_certificate_is_404_and_bad_fields_are_named(app, api, make_token, two):
    _a, b = two
    h = bearer(make_token("web-03", ["read"], tags=["web-03"]))
    assert api.post("/api/v1/agent/reports", headers=h,
                    json={"certificate_id": b, "serial": "0b", "ok": True}).status_code == 404
    bad = api.post("/api/v1/agent/reports", headers=h, json={"certificate_id": b, "serial": "xyz", "ok": "yes"})
    assert bad.status_code == 422 and bad.mimetype == "application/problem+json"
    assert {"serial", "ok"} <= set(bad.get_json()["errors"]["json"] if "json" in bad.get_json()["errors"]
                                   else bad.get_json()["errors"])
    with app.app_context():
        assert db.session().query(Agent).count() == 0


def test_without_keys_read_the_bundle_is_403(app, api, make_token, two):
    a, _b = two
    h = bearer(make_token("web-03", ["read"], tags=["web-03"]))
    url = api.get("/api/v1/agent/certificates", headers=h).get_json()["certificates"][0]["bundle_url"]
    assert api.get(url, headers=h).status_code == 403
