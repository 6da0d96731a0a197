"""dns-persist-01 against acme2certifier with its `dns_persist_01_support` option on: Save and
Test learns that the CA offers it (and its issuer domain), the record to create, issuance with
no DNS write, the CA refusing a record with the wrong accounturi in its own words, and a CA
without it (the shared acme2certifier) where it is not offered and the form says why."""
from __future__ import annotations

import pytest

from tests.conftest import add_a2c_profile, add_lab_zone
from webapp import db
from webapp.errors import ValidationError
from webapp.models import DnsRecord, Status
from webapp.services import ca_profiles, certificates, delegation, persist, pipeline

# acme2certifier's experimental validator; wildcards also need its policy switch.
PERSIST_ON = {"Challenge": {"dns_persist_01_support": "True",
                            "dns_persist_allow_policy_wildcard": "True"}}
ISSUER = "a2c.lab.test"  # its [Directory] caaidentities: what it puts in issuer-domain-names


@pytest.fixture
def a2c(app, lab_bind, lab_unbound, a2c_factory):
    """acme2certifier with dns-persist-01 on, and the app's tested profile for it."""
    server = a2c_factory(extra_config=PERSIST_ON, caa_identities=(ISSUER,))
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    app.config["SSLMANAGER_DNS_NS_PORT"] = lab_bind.port  # the customer zone's NS is the lab BIND
    with app.app_context():
        add_lab_zone(lab_bind)
        assert ca_profiles.test(add_a2c_profile(server)).ok
    return server


def persistent(names, **values):
    cert = certificates.create({"profile_id": ca_profiles.by_name("acme2certifier").id,
                                "domains": names, "validation": "persist", **values})
    return certificates.request(cert)


def test_save_and_test_learns_the_ca_offers_it_and_its_issuer_domain(app, a2c):
    with app.app_context():
        profile = ca_profiles.by_name("acme2certifier")
        info = profile.challenge_info
        assert persist.PERSIST in info["types"] and "dns-01" in info["types"]
        assert info["issuer_domain_names"] == [ISSUER]
        assert persist.offer(profile) == (True, "")


def test_the_record_names_the_issuer_the_account_and_wildcard_policy(app, a2c, names):
    with app.app_context():
        base = names("customer.test")
        cert = persistent(f"{base} *.{base} www.{base}")
        account = ca_profiles.by_name("acme2certifier").account_url
        records = {r.name: r.value for r in certificates.persist_instructions(cert)}
        assert records == {f"_validation-persist.{base}": f"{ISSUER}; accounturi={account}; policy=wildcard",
                           f"_validation-persist.www.{base}": f"{ISSUER}; accounturi={account}"}
        assert certificates.instructions(cert) == []  # no CNAME to create


def test_issues_with_no_dns_write_and_the_timeline_says_which_method(app, a2c, names, persist_records):
    with app.app_context():
        base = names("customer.test")
        cert = persistent(f"{base} *.{base}")
        assert pipeline.process(cert.id) == "pending"  # no record yet
        assert "has no TXT record" in certificates.get(cert.id).last_error
        persist_records(cert)
        mark = a2c.mark()
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        cert = certificates.get(cert.id)
        lines = [e.message for e in certificates.timeline(cert)]
        assert any(line.startswith("validated by dns-persist-01") for line in lines)
        assert any("dns-persist-01: no DNS write" in line for line in lines)
        assert not any(line.startswith("dns:") for line in lines)  # nothing written anywhere
        assert db.session().query(DnsRecord).count() == 0
        answers = [e for e in a2c.requests_log(path="/acme/chall/", since=mark) if e.get("payload") is not None]
        assert answers and all(e["payload"] == {} for e in answers)  # the generic `{}` answer


def test_a_wrong_accounturi_is_refused_by_the_ca_in_its_own_words(app, a2c, names, persist_records, monkeypatch):
    # The check before each order would see the change and go back to Pending (tested in
    # test_pipeline); here the record changes after it, as when authoritative servers disagree.
    monkeypatch.setattr(pipeline, "recheck_dns", lambda cert: True)
    with app.app_context():
        base = names("customer.test")
        cert = persistent(base)
        persist_records(cert)
        assert pipeline.check_cnames(certificates.get(cert.id))  # right when checked...
        # ...and changed before the CA looks: the CA itself must refuse it.
        persist_records.set(f"_validation-persist.{base}",
                            f"{ISSUER}; accounturi=https://127.0.0.1:1/acme/acct/someone-else")
        assert pipeline.process(cert.id) == Status.FAILED
        cert = certificates.get(cert.id)
        assert "dns-persist-01" in cert.last_error
        assert "did not authorize this request" in cert.last_error  # acme2certifier's words


def test_not_offered_by_a_ca_without_it_and_the_reason_is_said(app, lab_bind, lab_unbound, lab_a2c):
    app.config["SSLMANAGER_DNS_RESOLVERS"] = [f"127.0.0.1:{lab_unbound.port}"]
    with app.app_context():
        add_lab_zone(lab_bind)
        profile = add_a2c_profile(lab_a2c)
        assert persist.offer(profile)[1].startswith("Not known yet")  # before Save and Test
        assert ca_profiles.test(profile).ok
        offered, why = persist.offer(profile)
        assert not offered and "does not offer dns-persist-01" in why and "dns-01" in why
        with pytest.raises(ValidationError) as caught:
            certificates.create({"profile_id": profile.id, "domains": "customer.test",
                                 "validation": "persist"})
        assert "not available" in caught.value.errors["validation"]


@pytest.mark.parametrize("value, status, words", [
    ("other-ca.test; accounturi={account}", "issuer", "not a2c.lab.test"),
    (f"{ISSUER}; accounturi=https://127.0.0.1:1/acme/acct/old", "accounturi", "did the profile's account change"),
    (f"{ISSUER}; accounturi={{account}}", "policy", "lacks policy=wildcard"),
    (f"{ISSUER}; accounturi={{account}}; policy=wildcard; persistUntil=1000000000", "expired", "expired at 2001-09-09"),
    (f"{ISSUER}; accounturi={{account}}; policy=wildcard; persistUntil={{soon}}", "warning", "in 9 days"),
    ("not a record", "malformed", "not in the form"),
])
def test_preflight_at_the_authoritative_servers_names_each_problem_and_its_fix(
        app, a2c, names, persist_records, value, status, words):
    import time
    with app.app_context():
        base = names("customer.test")
        cert = persistent(f"{base} *.{base}")
        account = ca_profiles.by_name("acme2certifier").account_url
        persist_records.set(f"_validation-persist.{base}",
                            value.format(account=account, soon=int(time.time()) + 9 * 86400 + 3600))
        [check] = persist.report(cert)
        assert (check.status, check.ok) == (status, status == "warning"), check.message
        assert words in check.message
        assert "policy=wildcard" in check.fix and account in check.fix  # the value to set
        [d] = delegation.preflight(cert).domains
        kinds = {c.kind: c.status for c in d.checks}
        assert kinds["TXT"] == ("warning" if status == "warning" else "error") and "CNAME" not in kinds
        assert (pipeline.check_cnames(certificates.get(cert.id))) == (status == "warning")


def test_preflight_asks_the_authoritative_servers_not_a_resolver(app, a2c, names, persist_records):
    with app.app_context():
        base = names("customer.test")
        cert = persistent(base)
        persist_records(cert)
        app.config["SSLMANAGER_DNS_NS_PORT"] = 9  # nothing answers there: no resolver stands in
        [check] = persist.report(cert)
        assert check.status == "error" and "no authoritative server answered" in check.message
        app.config["SSLMANAGER_DNS_NS_PORT"] = a2c.bind.port
        assert persist.report(cert)[0].status == "ok"


def test_the_delegation_watch_rechecks_persist_records_between_renewals(app, a2c, names, persist_records, lab_bind):
    with app.app_context():
        base = names("customer.test")
        cert = persistent(base)
        persist_records(cert)
        assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error
        assert delegation.delegation_watch() == []
        lab_bind.clear(f"_validation-persist.{base}")
        [(cert_id, problems)] = delegation.delegation_watch()
        assert cert_id == cert.id and "has no TXT record" in problems[0]
        assert certificates.get(cert.id).delegation_ok is False
        persist_records(cert)
        assert delegation.delegation_watch() == []
        lines = [e.message for e in certificates.timeline(certificates.get(cert.id))]
        assert "every _validation-persist record authorizes this account again" in lines[-1]
