"""`sslmanager zone edit` and `zone delete` against the lab's BIND."""
from __future__ import annotations

import base64
import json

from tests.lab.servers import TECH_ZONE, TSIG_ALGORITHM, TSIG_KEY_NAME, TSIG_SECRET
from webapp import db
from webapp.models import AuditEvent
from webapp.services import ca_profiles, certificates, zones


def test_zone_edit_fixes_a_wrong_secret_and_keeps_what_is_not_given(app, runner, lab_bind):
    wrong = base64.b64encode(b"definitely not the lab's key!!!!").decode()
    result = runner.invoke(args=["sslmanager", "zone", "add", TECH_ZONE, "--provider", "rfc2136",
                                 "--server", f"127.0.0.1:{lab_bind.port}", "--tsig-key", TSIG_KEY_NAME,
                                 "--tsig-secret", wrong, "--tsig-algorithm", TSIG_ALGORITHM])
    assert result.exit_code == 0, result.output
    result = runner.invoke(args=["sslmanager", "zone", "add", TECH_ZONE, "--provider", "rfc2136"])
    assert result.exit_code == 1 and f"sslmanager zone edit {TECH_ZONE}" in result.output
    result = runner.invoke(args=["sslmanager", "zone", "edit", TECH_ZONE, "--tsig-secret", TSIG_SECRET])
    assert result.exit_code == 0 and "Health check: ok:" in result.output, result.output
    with app.app_context():
        zone = zones.get(TECH_ZONE)
        assert zone.options["server"] == f"127.0.0.1:{lab_bind.port}" and zone.last_check_ok
        assert json.loads(zone.secrets)["tsig_secret"] == TSIG_SECRET
    result = runner.invoke(args=["sslmanager", "zone", "edit", TECH_ZONE, "--customer"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert zones.get(TECH_ZONE).options["role"] == "customer"
        assert json.loads(zones.get(TECH_ZONE).secrets)["tsig_secret"] == TSIG_SECRET


def test_zone_delete_is_refused_while_a_certificate_orders_through_it(app, runner, lab_bind):
    with app.app_context():
        zones.add(TECH_ZONE, "rfc2136", {"server": f"127.0.0.1:{lab_bind.port}", "tsig_key_name": TSIG_KEY_NAME,
                                         "tsig_secret": TSIG_SECRET, "tsig_algorithm": TSIG_ALGORITHM})
        profile = ca_profiles.create({"name": "LE", "module": "letsencrypt", "email": "ops@example.com",
                                      "dns_zone": TECH_ZONE}, complete=True)
        cert = certificates.create({"profile_id": profile.id, "domains": "shop.example.com"})
        cert_id = cert.id
    result = runner.invoke(args=["sslmanager", "zone", "delete", TECH_ZONE])
    assert result.exit_code == 1
    assert f"#{cert_id} shop.example.com (draft)" in result.output and "hint:" in result.output
    with app.app_context():
        certificates.delete(certificates.get(cert_id))
    result = runner.invoke(args=["sslmanager", "zone", "delete", TECH_ZONE])
    assert result.exit_code == 0 and f"Technical zone {TECH_ZONE} deleted." in result.output
    with app.app_context():
        assert zones.all_zones() == []
        assert db.session().query(AuditEvent).filter_by(action="technical zone deleted").count() == 1
