"""A token restricted by certificate ID or tag sees only those certificates: other ones are
404 and left out of lists, and another certificate's key is 403, never the key."""
from __future__ import annotations


from webapp import db
from webapp.models import CertificateVersion, Status, utcnow
from webapp.services import certificates, tags

from .conftest import bearer




def _issue(app, cert_id):
    """A version with a key, as issuance leaves it (the material endpoints read it)."""
    with app.app_context():
        cert = certificates.get(cert_id)
        db.session().add(CertificateVersion(certificate_id=cert_id, number=1, cert_pem="CERT\n",
                                            chain_pem="CHAIN\n", private_key=f"KEY-{cert_id}\n",
                                            serial="01", issuer="lab", not_before=utcnow(),
                                            not_after=utcnow()))
        cert.status = Status.ACTIVE
        db.session().commit()


def test_a_tag_restricted_token_sees_only_its_certificates(api, make_token, two):
    a, b = two
    secret = make_token("web-03", ["read"], tags=["web-03"])
    listed = api.get("/api/v1/certificates", headers=bearer(secret)).get_json()
    assert [c["id"] for c in listed["items"]] == [a] and listed["total"] == 1
    shown = api.get(f"/api/v1/certificates/{a}", headers=bearer(secret))
    assert shown.status_code == 200 and shown.get_json()["tags"] == ["web-03"]
    assert shown.get_json()["dns_records"][0]["name"] == "_acme-challenge.a.example.com"
    assert api.get(f"/api/v1/certificates/{b}", headers=bearer(secret)).status_code == 404


def test_an_id_restricted_token(api, make_token, two):
    a, b = two
    secret = make_token("one", ["read"], cert_ids=[b])
    assert [c["id"] for c in api.get("/api/v1/certificates", headers=bearer(secret)).get_json()["items"]] == [b]
    assert api.get(f"/api/v1/certificates/{a}", headers=bearer(secret)).status_code == 404


def test_another_tags_key_is_403_never_the_key(app, api, make_token, two):
    a, b = two
    _issue(app, a)
    _issue(app, b)
    secret = make_token("web-03", ["read", "keys:read"], tags=["web-03"])
    own = api.get(f"/api/v1/certificates/{a}/files/privkey.pem", headers=bearer(secret))
    assert own.status_code == 200 and own.get_data(as_text=True) == f"KEY-{a}\n"
    for path in (f"/api/v1/certificates/{b}/files/privkey.pem", f"/api/v1/certificates/{b}/pem?include_key=true",
                 "/api/v1/certificates/987654/files/privkey.pem"):
        resp = api.get(path, headers=bearer(secret))
        assert resp.status_code == 403, path
        assert f"KEY-{b}" not in resp.get_data(as_text=True)
    resp = api.post(f"/api/v1/certificates/{b}/pkcs12", headers=bearer(secret), json={"password": "long enough"})
    assert resp.status_code == 403


def test_keys_need_the_keys_read_scope(app, api, make_token, two):
    a, _ = two
    _issue(app, a)
    secret = make_token("reader", ["read"])
    assert api.get(f"/api/v1/certificates/{a}/files/privkey.pem", headers=bearer(secret)).status_code == 403
    resp = api.get(f"/api/v1/certificates/{a}/pem", headers=bearer(secret))
    assert resp.status_code == 200 and "key" not in resp.get_json()
    assert resp.get_json()["fullchain"] == "CERT\nCHAIN\n"


def test_a_restricted_token_creates_only_with_its_tag_and_cannot_untag_itself(app, api, make_token, two,
                                                                             profile_id):
    a, _ = two
    secret = make_token("web-03", ["read", "write"], tags=["web-03"])
    resp = api.post("/api/v1/certificates", headers=bearer(secret),
                    json={"domains": ["c.example.com"], "profile_id": profile_id, "tags": ["other"]})
    assert resp.status_code == 403
    resp = api.put(f"/api/v1/certificates/{a}/tags", headers=bearer(secret), json={"tags": ["other"]})
    assert resp.status_code == 403
    with app.app_context():
        assert tags.of(a) == ["web-03"]
