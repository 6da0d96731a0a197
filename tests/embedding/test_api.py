"""The API in a host panel: under the host's prefix, untouched by the host's CSRFProtect and
sign-in (bearer tokens only), with SSLMANAGER_API_AUTHORIZE as the host's last word; the host's
own errors stay the host's."""
from __future__ import annotations

from webapp.services import tokens

from .conftest import make_host, sign_in


def _token(app, name="panel", scopes=("read", "write")):
    with app.app_context():
        return {"Authorization": f"Bearer {tokens.create(name, list(scopes)).secret}"}


def test_the_api_mounts_under_the_host_prefix_without_the_host_csrf(host):
    client = host.test_client()
    auth = _token(host)
    assert client.get("/panel/ssl/api/v1/openapi.json").get_json()["openapi"] == "3.1.0"
    assert "/panel/ssl/api/v1/certificates" in client.get("/panel/ssl/api/v1/openapi.json").get_json()["paths"]
    assert client.get("/panel/ssl/api/v1/certificates", headers=auth).status_code == 200
    # the host's CSRFProtect does not stand in the way of a bearer POST (a 422 from our schema)
    resp = client.post("/panel/ssl/api/v1/certificates", headers=auth, json={"domains": []})
    assert resp.status_code == 422 and resp.mimetype == "application/problem+json"
    # the host's own pages keep the host's errors and CSRF
    assert client.get("/no-such-host-page").mimetype == "text/html"
    assert client.post("/logout").status_code == 400


def test_a_signed_in_host_user_is_no_api_caller(host):
    client = sign_in(host.test_client())
    assert client.get("/panel/ssl/certificates/").status_code == 200  # the pages: the host decides
    resp = client.get("/panel/ssl/api/v1/certificates")
    assert resp.status_code == 401 and resp.mimetype == "application/problem+json"


def test_the_host_api_hook_decides_after_the_token(tmp_path):
    seen = []

    def only_panel_tokens(principal):
        seen.append((principal.name, sorted(principal.scopes)))
        return principal.name == "token:panel"

    app = make_host(tmp_path, SSLMANAGER_API_AUTHORIZE=only_panel_tokens)
    client = app.test_client()
    assert client.get("/panel/ssl/api/v1/certificates", headers=_token(app, "panel")).status_code == 200
    refused = client.get("/panel/ssl/api/v1/certificates", headers=_token(app, "other", ["read"]))
    assert refused.status_code == 403 and "SSLMANAGER_API_AUTHORIZE" in refused.get_json()["detail"]
    assert seen == [("token:panel", ["read", "write"]), ("token:other", ["read"])]
    # a refused token is never handed to the hook
    assert client.get("/panel/ssl/api/v1/certificates",
                      headers={"Authorization": "Bearer sslm_1_" + "x" * 43}).status_code == 401
    assert len(seen) == 2
