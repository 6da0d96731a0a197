"""`sslmanager cert add --fallback`, `cert fallback` and `ca edit --fallback`."""
from __future__ import annotations

import json

from tests.lab.servers import TECH_ZONE
from webapp.services import ca_profiles


def test_fallbacks_from_the_command_line(app):
    with app.app_context():
        for name, zone in (("LE", TECH_ZONE), ("Backup", TECH_ZONE), ("Far", "acme2.tech.test")):
            ca_profiles.create({"name": name, "module": "letsencrypt", "email": "ops@example.com",
                                "dns_zone": zone}, complete=True)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sslmanager", "cert", "add", "--ca", "LE", "--fallback", "Far",
                                 "--fallback", "Backup", "shop.example"])
    assert result.exit_code == 0, result.output
    assert "fallback Far uses the technical zone acme2.tech.test" in result.output
    assert ".acme2.tech.test." in result.output.splitlines()[-1]  # the CNAME it would need
    cert_id = result.output.split()[1]
    shown = json.loads(runner.invoke(args=["sslmanager", "cert", "show", cert_id, "--json"]).output)
    assert shown["fallbacks"] == ["Far", "Backup"] and shown["attempt_ca"] == "LE"

    result = runner.invoke(args=["sslmanager", "ca", "edit", "LE", "--fallback", "Backup"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["sslmanager", "cert", "fallback", cert_id])  # back to the default
    assert result.exit_code == 0 and "falls back to: Backup (the CA profile's default)" in result.output
    listed = json.loads(runner.invoke(args=["sslmanager", "ca", "list", "--json"]).output)
    assert {p["name"]: p["fallbacks"] for p in listed}["LE"] == ["Backup"]

    result = runner.invoke(args=["sslmanager", "cert", "fallback", cert_id, "LE"])
    assert result.exit_code != 0 and "LE is the primary CA profile" in result.output
    result = runner.invoke(args=["sslmanager", "ca", "edit", "LE", "--no-fallbacks"])
    assert result.exit_code == 0
    listed = json.loads(runner.invoke(args=["sslmanager", "ca", "list", "--json"]).output)
    assert {p["name"]: p["fallbacks"] for p in listed}["LE"] == []
