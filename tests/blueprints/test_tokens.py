"""The API tokens page: an admin makes a token (shown once, in that answer only), sees it
listed with its scopes and restriction, and revokes it; the certificate pages set and filter
tags."""
from __future__ import annotations

import re

from tests.conftest import make_certificate
from webapp.services import certificates, tags, tokens


def test_create_show_once_and_revoke(app, admin_client):
    page = admin_client.get("/tokens/")
    assert page.status_code == 200 and "API tokens" in page.get_data(as_text=True)
    resp = admin_client.post("/tokens/", data={"name": "web-03", "scopes": ["read", "keys:read"],
                                               "tags": "web-03", "expires": "90d"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    secret = re.search(r'id="new-token-value">(sslm_[^<]+)<', html).group(1)
    assert "only tags web-03" in html
    assert secret not in admin_client.get("/tokens/").get_data(as_text=True)  # never again
    assert admin_client.get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    with app.app_context():
        token = tokens.get("web-03")
        assert token.scopes == ["read", "keys:read"] and token.created_by == "admin"
    assert admin_client.post(f"/tokens/{token.id}/revoke").status_code == 302
    assert admin_client.get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"}).status_code == 401


def test_a_refused_token_names_the_fields(app, admin_client):
    resp = admin_client.post("/tokens/", data={"name": "", "expires": "soon"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert 'id="err-name"' in html and 'id="err-scopes"' in html and 'id="err-expires"' in html
    with app.app_context():
        assert tokens.all_tokens() == []


def test_the_tokens_page_needs_an_admin(client):
    assert client.get("/tokens/").status_code == 302


def test_tags_on_the_create_form_the_page_and_the_list(app, admin_client, profile_id):
    resp = admin_client.post("/certificates/new", data={"domains": "a.example.com", "profile_id": profile_id,
                                                        "key_type": "ec-p256", "tags": "Web-03, edge",
                                                        "action": "draft"})
    assert resp.status_code == 302
    cert_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    with app.app_context():
        assert tags.of(cert_id) == ["edge", "web-03"]
    other = make_certificate(app, profile_id, "b.example.com")
    listed = admin_client.get("/certificates/?tag=edge").get_data(as_text=True)
    assert "a.example.com" in listed and "b.example.com" not in listed
    assert admin_client.post(f"/certificates/{other}/tags", data={"tags": "web-04"}).status_code == 302
    bad = admin_client.post(f"/certificates/{other}/tags", data={"tags": "Not A Tag!"})
    assert bad.status_code == 422 and 'id="err-tags"' in bad.get_data(as_text=True)
    with app.app_context():
        assert tags.of(other) == ["web-04"]
        assert certificates.get(other).status == "draft"
    refused = admin_client.post("/certificates/new", data={"domains": "c.example.com", "profile_id": profile_id,
                                                           "tags": "bad tag!", "action": "draft"})
    assert refused.status_code == 422 and 'id="err-tags"' in refused.get_data(as_text=True)
