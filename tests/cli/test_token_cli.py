"""`sslmanager token create / list / revoke`, and `cert add --tag`."""
from __future__ import annotations

import json

from tests.lab.servers import TECH_ZONE
from webapp.services import ca_profiles, tags


def test_create_list_revoke(app, runner):
    result = runner.invoke(args=["sslmanager", "token", "create", "--name", "web-03", "--scope", "read",
                                 "--scope", "keys:read", "--tag", "web-03", "--cert", "12", "--expires", "90d"])
    assert result.exit_code == 0, result.output
    secret = result.stdout.strip().splitlines()[-1]
    assert secret.startswith("sslm_1_")
    client = app.test_client()
    assert client.get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    listed = json.loads(runner.invoke(args=["sslmanager", "token", "list", "--json"]).stdout)
    assert listed[0]["name"] == "web-03" and listed[0]["scopes"] == ["read", "keys:read"]
    assert listed[0]["tags"] == ["web-03"] and listed[0]["cert_ids"] == [12] and listed[0]["state"] == "active"
    assert listed[0]["last_used_address"] == "127.0.0.1" and secret not in json.dumps(listed)
    assert runner.invoke(args=["sslmanager", "token", "revoke", "web-03"]).exit_code == 0
    assert client.get("/api/v1/certificates", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    assert "revoked" in runner.invoke(args=["sslmanager", "token", "list"]).output


def test_create_names_each_bad_option(runner):
    result = runner.invoke(args=["sslmanager", "token", "create", "--name", "x", "--scope", "superuser",
                                 "--expires", "soon"])
    assert result.exit_code == 1
    assert "error: scopes:" in result.output and "error: expires:" in result.output
    assert runner.invoke(args=["sslmanager", "token", "revoke", "nope"]).exit_code == 1


def test_cert_add_takes_tags(app, runner):
    with app.app_context():
        ca_profiles.create({"name": "LE STAGING", "module": "letsencrypt", "email": "ops@example.com",
                            "dns_zone": TECH_ZONE}, complete=True)
    result = runner.invoke(args=["sslmanager", "cert", "add", "--ca", "LE STAGING", "--tag", "web-03",
                                 "--tag", "Edge", "a.example.com"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert tags.of(int(result.output.split()[1])) == ["edge", "web-03"]
    bad = runner.invoke(args=["sslmanager", "cert", "add", "--ca", "LE STAGING", "--tag", "no good", "b.example.com"])
    assert bad.exit_code == 1 and "error: tags:" in bad.output
