"""`sslmanager cert ...` and `sslmanager preflight` against the real lab."""
from __future__ import annotations

import json
import os

from tests.lab.servers import TSIG_ALGORITHM, TSIG_KEY_NAME, TSIG_SECRET


def test_add_prints_the_cnames_then_process_waits_until_active(lab_app, lab_bind, tmp_path):
    runner = lab_app.test_cli_runner()
    result = runner.invoke(args=["sslmanager", "cert", "add", "--ca", "Pebble", "customer.test", "*.customer.test"])
    assert result.exit_code == 0, result.output
    record = next(line.strip() for line in result.output.splitlines() if "IN CNAME" in line)
    name, _, _, target = record.split()
    cert_id = result.output.split()[1]
    try:
        lab_bind.set_cname(name.rstrip("."), target.rstrip("."))
        result = runner.invoke(args=["sslmanager", "cert", "process", cert_id, "--wait", "30"])
        assert result.exit_code == 0 and "active" in result.output, result.output
        shown = json.loads(runner.invoke(args=["sslmanager", "cert", "show", cert_id, "--json"]).output)
        assert shown["status"] == "active" and shown["domains"] == ["customer.test", "*.customer.test"]
        assert shown["days_remaining"] > 0 and shown["serial"] and shown["last_error"] == ""
        assert len(shown["versions"]) == 1 and shown["ca"] == "Pebble"
        result = runner.invoke(args=["sslmanager", "cert", "export", cert_id, "--out", str(tmp_path / "out")])
        assert result.exit_code == 0
        assert oct(os.stat(tmp_path / "out" / "privkey.pem").st_mode & 0o777) == "0o600"
        listing = json.loads(runner.invoke(args=["sslmanager", "cert", "list", "--json"]).output)
        assert [c["id"] for c in listing] == [int(cert_id)]
    finally:
        lab_bind.clear(name.rstrip("."))


def test_process_exits_1_with_the_reason_while_the_cname_is_missing(lab_app, lab_bind):
    runner = lab_app.test_cli_runner()
    lab_bind.clear("_acme-challenge.other.test")
    result = runner.invoke(args=["sslmanager", "cert", "add", "--ca", "Pebble", "other.test"])
    cert_id = result.output.split()[1]
    result = runner.invoke(args=["sslmanager", "cert", "process", cert_id])
    assert result.exit_code == 1 and "pending" in result.output and "_acme-challenge.other.test" in result.output
    result = runner.invoke(args=["sslmanager", "preflight", cert_id])
    assert result.exit_code == 1 and "CNAME" in result.output and "fix:" in result.output


def test_create_cnames_makes_them_in_a_managed_customer_zone_and_delete_removes_them(lab_app, lab_bind):
    from webapp.services import certificates, zones
    runner = lab_app.test_cli_runner()
    with lab_app.app_context():
        zones.add("other.test", "rfc2136", {"server": f"127.0.0.1:{lab_bind.port}", "tsig_key_name": TSIG_KEY_NAME,
                                            "tsig_secret": TSIG_SECRET, "tsig_algorithm": TSIG_ALGORITHM,
                                            "role": "customer"})
    lab_bind.clear("_acme-challenge.other.test")
    try:
        result = runner.invoke(args=["sslmanager", "cert", "add", "--ca", "Pebble", "--create-cnames", "other.test"])
        assert result.exit_code == 0 and "created" in result.output, result.output
        cert_id = int(result.output.split("Certificate ")[1].split()[0])
        result = runner.invoke(args=["sslmanager", "cert", "process", str(cert_id), "--wait", "30"])
        assert result.exit_code == 0, result.output
        with lab_app.app_context():
            certificates.delete(certificates.get(cert_id), confirm="other.test")
        assert lab_bind.query("_acme-challenge.other.test", "CNAME").answer == []
    finally:
        lab_bind.clear("_acme-challenge.other.test")


def test_process_of_several_ids_works_them_together_and_names_each_outcome(lab_app, cnames):
    from webapp.services import ca_profiles, certificates
    runner = lab_app.test_cli_runner()
    with lab_app.app_context():
        profile_id = ca_profiles.by_name("Pebble").id
        ids = []
        for name in ("a.customer.test", "b.customer.test", "c.customer.test"):
            cert = certificates.create({"profile_id": profile_id, "domains": name})
            certificates.request(cert)
            cnames(cert)
            ids.append(cert.id)
    result = runner.invoke(args=["sslmanager", "cert", "process", *map(str, ids), "999999", "--wait", "30",
                                 "--concurrency", "2"])
    assert result.exit_code == 1, result.output  # the unknown ID
    for cert_id, name in zip(ids, ("a", "b", "c")):
        assert f"Certificate {cert_id} ({name}.customer.test): active" in result.output
    assert "Certificate 999999: missing: no such certificate" in result.output
    assert "3 of 4 Active." in result.output
    with lab_app.app_context():
        assert [certificates.get(i).status for i in ids] == ["active"] * 3


def failed_certificate(app, name: str, cnames) -> tuple[int, str]:
    """A certificate whose last attempt failed (its CNAMEs in place): its id and CSR."""
    from webapp import db
    from webapp.services import ca_profiles, certificates
    with app.app_context():
        cert = certificates.create({"profile_id": ca_profiles.by_name("Pebble").id, "domains": name})
        certificates.request(cert)
        cnames(cert)
        cert.status, cert.last_error, cert.next_run_at = "failed", "the CA refused the order", None
        db.session().commit()
        return cert.id, cert.csr


def test_process_of_a_failed_certificate_requests_it_again_like_retry_and_audits_the_cli_user(lab_app, cnames):
    from webapp import db
    from webapp.models import AuditEvent
    from webapp.services import audit, certificates
    cert_id, csr = failed_certificate(lab_app, "retried.customer.test", cnames)
    result = lab_app.test_cli_runner().invoke(args=["sslmanager", "cert", "process", str(cert_id), "--wait", "30"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[:2] == [
        f"Certificate {cert_id} was Failed: requested again, as Retry on its page does (new key and CSR).",
        f"Certificate {cert_id}: active"]
    with lab_app.app_context():
        assert certificates.get(cert_id).csr != csr  # Retry's new key and CSR
        events = {(e.action, e.actor) for e in
                  db.session().query(AuditEvent).filter_by(object_type="certificate", object_id=str(cert_id))}
    user = audit.cli_actor()
    assert user.startswith("cli:")
    assert {("certificate retried", user), ("certificate issued", user)} <= events, events


def test_list_shows_hours_or_minutes_left_when_under_two_days(app):
    """A 6-day or shorter certificate must not read "0d" for its last day."""
    from datetime import timedelta

    from tests.conftest import make_certificate
    from tests.lab.servers import TECH_ZONE
    from webapp.models import utcnow
    from webapp.services import ca_profiles
    with app.app_context():
        pid = ca_profiles.create({"name": "LE", "module": "letsencrypt", "email": "ops@example.com",
                                  "dns_zone": TECH_ZONE}, complete=True).id
    now = utcnow()
    for name, left in (("long.test", timedelta(days=45, hours=1)), ("short.test", timedelta(hours=11, minutes=5)),
                       ("soon.test", timedelta(minutes=4, seconds=30)), ("gone.test", timedelta(days=-3, hours=-1))):
        make_certificate(app, pid, name, status="active", not_after=now + left)
    make_certificate(app, pid, "draft.test")
    listing = app.test_cli_runner().invoke(args=["sslmanager", "cert", "list"]).output
    left = {line.split("\t")[-1]: line.split("\t")[3] for line in listing.splitlines()}
    assert left == {"long.test": "45d", "short.test": "11h", "soon.test": "4m", "gone.test": "-3d", "draft.test": "-"}
