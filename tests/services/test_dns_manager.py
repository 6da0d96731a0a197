"""DNS Manager services against the lab's real BIND and Unbound: the sweeper, the delegation
watch, preflight (CAA, stale TXT, wildcard CNAMEs), the zone overview, customer CNAMEs."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.lab.servers import TECH_ZONE, TSIG_ALGORITHM, TSIG_KEY_NAME, TSIG_SECRET
from webapp import db
from webapp.models import AuditEvent, CnameLabel, DnsRecord, TimelineEvent, utcnow
from webapp.services import ca_profiles, certificates, claims, delegation, dns_manager, domains, zones

PEBBLE = "pebble.letsencrypt.org"
BUILTIN_ZONE = "builtin.tech.test"


def bind_options(bind) -> dict:
    return {"server": f"127.0.0.1:{bind.port}", "tsig_key_name": TSIG_KEY_NAME,
            "tsig_secret": TSIG_SECRET, "tsig_algorithm": TSIG_ALGORITHM}


def make_profile(name: str, zone: str):
    """A complete profile without a CA behind it: these tests never order."""
    profile = ca_profiles.create({"name": name, "module": "custom"})
    ca_profiles.update(profile, {"name": name, "directory_url": "https://127.0.0.1:9/dir",
                                 "email": "ops@example.com", "dns_zone": zone, "allow_wildcard": "1",
                                 "dns_ttl": "30", "api_timeout": "5"})
    profile.directory_meta = {"caaIdentities": [PEBBLE]}
    db.session().commit()
    return profile


@pytest.fixture
def dns_app(app, lab_bind, lab_unbound):
    """TECH_ZONE on BIND (rfc2136), Unbound as resolver; TXT values at our labels cleared after."""
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    app.config["SSLMANAGER_DNS_NS_PORT"] = lab_bind.port
    with app.app_context():
        zones.add(TECH_ZONE, "rfc2136", bind_options(lab_bind))
        make_profile("Lab", TECH_ZONE)
    yield app
    with app.app_context():
        for (label,) in db.session().execute(select(CnameLabel.label).filter_by(zone=TECH_ZONE)):
            lab_bind.clear(f"{label}.{TECH_ZONE}")


def new_cert(domains_text: str, status: str = "pending", profile: str = "Lab"):
    cert = certificates.create({"profile_id": ca_profiles.by_name(profile).id, "domains": domains_text})
    cert.status = status
    db.session().commit()
    return cert


def target(cert, zone: str = TECH_ZONE) -> str:
    return domains.cname_target(domains.base_domain(cert.domains[0]), zone)


def remember(cert, name: str, value: str, zone: str = TECH_ZONE, age: timedelta = timedelta(0)) -> None:
    """What issuance notes for a value written through an external provider."""
    db.session().add(DnsRecord(zone=zone, name=name, value=value, ttl=30, certificate_id=cert.id,
                               created_at=utcnow() - age))
    db.session().commit()


# -- sweeper -----------------------------------------------------------------------------------

def test_sweep_removes_stale_values_from_bind_and_keeps_a_processing_certificates(dns_app, lab_bind, names):
    with dns_app.app_context():
        done = new_cert(names("customer.test"), status="active")
        live = new_cert(names("customer.test"), status="processing")
        foreign = f"f{uuid.uuid4().hex[:10]}.{TECH_ZONE}"
        provider = zones.provider_for(TECH_ZONE)
        provider.add_txt([(target(done), "stale-1"), (target(done), "lost-record"),
                          (target(live), "live-1"), (foreign, "not-ours")], 30)
        remember(done, target(done), "stale-1")
        remember(live, target(live), "live-1")
        try:
            report = dns_manager.sweep()
            assert sorted(r.value for r in report.removed) == ["lost-record", "stale-1"]
            assert lab_bind.txt(target(done)) == []
            assert lab_bind.txt(target(live)) == ["live-1"]
            assert lab_bind.txt(foreign) == ["not-ours"]  # not at one of our labels: never touched
            assert [(r.name, r.value) for r in db.session().query(DnsRecord)] == [(target(live), "live-1")]
            assert "Processing" in report.kept[0].why
            event = db.session().query(AuditEvent).filter_by(action="DNS sweep").one()
            assert target(done) in event.summary and "stale-1" not in event.summary
        finally:
            lab_bind.clear(foreign)


def test_sweep_removes_a_processing_certificates_value_once_older_than_the_max_age(dns_app, lab_bind, names):
    with dns_app.app_context():
        live = new_cert(names("customer.test"), status="processing")
        zones.provider_for(TECH_ZONE).add_txt([(target(live), "old")], 30)
        remember(live, target(live), "old", age=timedelta(hours=2))
        assert [r.value for r in dns_manager.sweep().removed] == ["old"]
        assert lab_bind.txt(target(live)) == []


def test_sweep_keeps_values_of_a_certificate_another_process_is_working_on(dns_app, lab_bind, names):
    with dns_app.app_context():
        cert = new_cert(names("customer.test"), status="failed")
        zones.provider_for(TECH_ZONE).add_txt([(target(cert), "busy")], 30)
        remember(cert, target(cert), "busy")
        assert claims.claim(cert.id, "another-node:1")
        report = dns_manager.sweep()
        assert report.removed == [] and "being worked on" in report.kept[0].why
        assert lab_bind.txt(target(cert)) == ["busy"]
        claims.release(cert.id, "another-node:1")
        assert [r.value for r in dns_manager.sweep().removed] == ["busy"]
        assert certificates.get(cert.id).claimed_by == ""  # the sweeper let go of its claim


def test_sweep_removes_stale_values_from_the_builtin_provider(dns_app, names):
    with dns_app.app_context():
        zones.add(BUILTIN_ZONE, "builtin", {})
        make_profile("Builtin", BUILTIN_ZONE)
        done = new_cert(names("customer.test"), status="failed", profile="Builtin")
        live = new_cert(names("customer.test"), status="processing", profile="Builtin")
        provider = zones.provider_for(BUILTIN_ZONE)
        # Like issuance: the builtin provider keeps its own rows, without a certificate id.
        provider.add_txt([(target(done, BUILTIN_ZONE), "stale"), (target(live, BUILTIN_ZONE), "live")], 30)
        report = dns_manager.sweep()
        assert [(r.name, r.value) for r in report.removed] == [(target(done, BUILTIN_ZONE), "stale")]
        assert provider.list_txt() == {target(live, BUILTIN_ZONE): ["live"]}


# -- delegation watch --------------------------------------------------------------------------

def test_delegation_watch_flags_a_certificate_whose_cname_was_removed(dns_app, lab_bind, names):
    with dns_app.app_context():
        cert = new_cert(names("customer.test"), status="active")
        name = f"_acme-challenge.{cert.domains[0]}"
        lab_bind.set_cname(name, target(cert))
        assert delegation.delegation_watch() == []
        lab_bind.clear(name)
        broken = delegation.delegation_watch()
        assert [cert_id for cert_id, _ in broken] == [cert.id]
        assert "does not exist" in broken[0][1][0] and target(cert) in broken[0][1][0]
        lines = [e.message for e in db.session().query(TimelineEvent).filter_by(certificate_id=cert.id)]
        assert any(line.startswith("delegation: renewal will wait") for line in lines)
        cert = certificates.get(cert.id)
        if hasattr(cert, "delegation_ok"):
            assert cert.delegation_ok is False and name in cert.delegation_message
            delegation.delegation_watch()  # still broken: said once, not every day
            assert db.session().query(TimelineEvent).filter_by(certificate_id=cert.id).count() == len(lines)
            lab_bind.set_cname(name, target(cert))
            assert delegation.delegation_watch() == [] and certificates.get(cert.id).delegation_ok


def test_delegation_watch_skips_drafts_and_certificates_without_auto_renew(dns_app, names):
    with dns_app.app_context():
        new_cert(names("customer.test"), status="pending")
        manual = new_cert(names("customer.test"), status="active")
        manual.auto_renew = False
        db.session().commit()
        assert delegation.delegation_watch() == []


def test_delegation_watch_looks_up_many_certificates_at_once_and_judges_each(dns_app, lab_bind, names,
                                                                             monkeypatch):
    # 10,000 certificates one lookup after another would take minutes each day.
    import threading
    import time

    from webapp.dns import checks
    real, lock, seen = checks.check_cname, threading.Lock(), {"now": 0, "peak": 0}

    def counted(*args, **kwargs):
        with lock:
            seen["now"] += 1
            seen["peak"] = max(seen["peak"], seen["now"])
        try:
            time.sleep(0.05)  # a resolver's round trip, long enough for the others to start
            return real(*args, **kwargs)
        finally:
            with lock:
                seen["now"] -= 1
    monkeypatch.setattr(checks, "check_cname", counted)
    with dns_app.app_context():
        certs = [new_cert(names("customer.test"), status="active") for _ in range(6)]
        for cert in certs[:3]:
            lab_bind.set_cname(f"_acme-challenge.{cert.domains[0]}", target(cert))
        unhooked = sorted(c.id for c in certs[3:])
        broken = delegation.delegation_watch()
    assert sorted(cert_id for cert_id, _ in broken) == unhooked
    assert seen["peak"] > 1


# -- preflight ---------------------------------------------------------------------------------

def test_preflight_shows_caa_refusal_from_a_real_caa_record(dns_app, lab_bind, names):
    with dns_app.app_context():
        domain = names("caa.test")
        cert = new_cert(f"{domain} *.{domain}")
        lab_bind.set_cname(f"_acme-challenge.{domain}", target(cert))
        lab_bind.update("caa.test", add=[(domain, 60, "CAA", '0 issue "other-ca.example"')])
        report = delegation.preflight(cert)
        assert not report.ok and [d.domain for d in report.domains] == [domain]
        by_kind = {(c.kind, c.subject): c for c in report.checks}
        assert by_kind[("CNAME", f"_acme-challenge.{domain}")].status == "ok"
        caa = by_kind[("CAA", domain)]
        assert caa.status == "error" and caa.blocking and "allows only other-ca.example" in caa.diagnosis
        assert f'CAA 0 issue "{PEBBLE}"' in caa.fix
        assert len(delegation.blocking_problems(cert)) == 2  # the apex and the wildcard


def test_preflight_checks_issuewild_for_the_wildcard_name(dns_app, lab_bind, names):
    with dns_app.app_context():
        domain = names("caa.test")
        cert = new_cert(f"{domain} *.{domain}")
        lab_bind.update("caa.test", add=[(domain, 60, "CAA", f'0 issue "{PEBBLE}"'),
                                         (domain, 60, "CAA", '0 issuewild "other-ca.example"')])
        problems = delegation.blocking_problems(cert)
        assert len(problems) == 1 and "issuewild overrides issue" in problems[0]
        assert 'CAA 0 issuewild' in problems[0]


def test_preflight_shows_stale_txt_sitting_instead_of_the_cname(dns_app, lab_bind, names):
    with dns_app.app_context():
        domain = names("customer.test")
        cert = new_cert(domain)
        name = f"_acme-challenge.{domain}"
        lab_bind.update("customer.test", add=[(name, 60, "TXT", '"token-from-2019"')])
        checks = {c.kind: c for c in delegation.preflight(cert).checks}
        assert checks["CNAME"].status == "error" and "holds TXT records" in checks["CNAME"].diagnosis
        assert checks["TXT"].status == "error" and "token-from-2019" in checks["TXT"].diagnosis
        assert f"delete the TXT records at {name}" in checks["TXT"].fix
        # The lab's resolver cannot ask the `test.` TLD for CAA: a warning, never a block.
        assert checks["CAA"].status == "warning" and delegation.blocking_problems(cert) == []


def test_preflight_flags_a_cname_synthesised_by_a_wildcard(dns_app, lab_bind, names):
    with dns_app.app_context():
        domain = names("wild.test")
        cert = new_cert(domain)
        lab_bind.update("wild.test", add=[(f"*.{domain}", 60, "CNAME", target(cert) + ".")])
        check = next(c for c in delegation.preflight(cert).checks if c.kind == "CNAME")
        assert check.status == "error" and "wildcard record" in check.diagnosis
        assert f"CNAME {target(cert)}" in check.fix


# -- overview ----------------------------------------------------------------------------------

def test_zone_overview_maps_live_values_to_certificates_with_age_and_delegation(dns_app, lab_bind, names):
    with dns_app.app_context():
        cert = new_cert(names("customer.test"), status="processing")
        zones.provider_for(TECH_ZONE).add_txt([(target(cert), "v1"), (target(cert), "v2")], 30)
        remember(cert, target(cert), "v1", age=timedelta(minutes=5))
        view, = dns_manager.zone_overview()
        assert view.provider_label.startswith("RFC 2136") and not view.customer
        ours = {v.value: v for v in view.values if v.name == target(cert)}
        assert [c.id for c in ours["v1"].certificates] == [cert.id] == [c.id for c in ours["v2"].certificates]
        assert timedelta(minutes=4) < ours["v1"].age < timedelta(minutes=6) and ours["v2"].age is None
        assert view.delegation["ok"] and view.delegation["ns"] == [f"ns.{TECH_ZONE}"]


# -- customer zones ----------------------------------------------------------------------------

def test_customer_cname_is_made_on_request_and_removed_only_if_we_made_it(dns_app, lab_bind, names):
    with dns_app.app_context():
        zones.add("customer.test", "rfc2136", {**bind_options(lab_bind), "role": "customer"})
        ours, theirs, busy = names("customer.test"), names("customer.test"), names("customer.test")
        cert = new_cert(f"{ours} {theirs} {busy} other.test")
        lab_bind.set_cname(f"_acme-challenge.{theirs}", domains.cname_target(theirs, TECH_ZONE))
        lab_bind.update("customer.test", add=[(f"_acme-challenge.{busy}", 60, "TXT", '"old"')])
        results = {r.domain: r for r in dns_manager.ensure_customer_cname(cert)}
        assert results[ours].status == "created"
        assert results[theirs].status == "present" and results[busy].status == "conflict"
        assert results["other.test"].status == "no zone" and "at its DNS host" in results["other.test"].message
        assert lab_bind.query(f"_acme-challenge.{ours}", "CNAME").answer[0][0].target.to_text() == target(cert) + "."
        assert lab_bind.txt(f"_acme-challenge.{busy}") == ["old"]  # left alone
        assert dns_manager.ensure_customer_cname(cert)[0].status == "present"  # idempotent

        removed = {r.domain: r.status for r in dns_manager.remove_customer_cnames(cert)}
        assert removed == {ours: "removed"}  # the customer's own CNAME is not ours to remove
        assert not lab_bind.query(f"_acme-challenge.{ours}", "CNAME").answer
        assert lab_bind.query(f"_acme-challenge.{theirs}", "CNAME").answer


def test_customer_zones_are_left_out_of_the_sweep(dns_app, lab_bind, names):
    with dns_app.app_context():
        zones.add("customer.test", "rfc2136", {**bind_options(lab_bind), "role": "customer"})
        domain = names("customer.test")
        cert = new_cert(domain, status="failed")
        assert dns_manager.ensure_customer_cname(cert)[0].status == "created"
        assert dns_manager.sweep().removed == []
        assert lab_bind.query(f"_acme-challenge.{domain}", "CNAME").answer


def test_a_customer_zone_whose_provider_cannot_write_cnames_says_so(dns_app):
    with dns_app.app_context():
        zones.add("builtin-customer.test", "builtin", {"role": "customer"})
        cert = new_cert(f"d{uuid.uuid4().hex[:10]}.builtin-customer.test")
        result, = dns_manager.ensure_customer_cname(cert)
        assert result.status == "unsupported" and result.zone == "builtin-customer.test"
        assert result.message.startswith("builtin: cannot manage customer CNAMEs")
        assert "at the zone's DNS host" in result.message
        assert db.session().execute(select(DnsRecord).filter_by(certificate_id=cert.id)).first() is None
