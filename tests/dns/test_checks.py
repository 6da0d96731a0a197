"""DNS checks against real records: BIND holds them, Unbound resolves them."""
from __future__ import annotations

import sys
import threading
import time
import uuid

import pytest

from tests.dns.conftest import bind_provider, knot_provider
from tests.lab.proc import free_port
from tests.lab.servers import TECH_ZONE
from webapp.dns.checks import check_caa, check_cname, stale_txt, wait_for_txt
from webapp.dns.nameservers import zone_delegation
from webapp.errors import DnsError

PEBBLE = "pebble.letsencrypt.org"


@pytest.fixture
def resolver(lab_unbound) -> list[str]:
    return [f"{lab_unbound.host}:{lab_unbound.port}"]


@pytest.fixture
def climbing(climbing_unbound) -> list[str]:
    return [f"{climbing_unbound.host}:{climbing_unbound.port}"]


@pytest.fixture
def target() -> str:
    """A per-domain label in the technical zone, as SSL Manager assigns them."""
    return f"l{uuid.uuid4().hex[:10]}.{TECH_ZONE}"


# -- CNAME ------------------------------------------------------------------------------------

def test_cname_to_the_expected_target_is_ok(lab_bind, names, resolver, target):
    domain = names("customer.test")
    lab_bind.set_cname(f"_acme-challenge.{domain}", target)
    check = check_cname(domain, target, resolver)
    assert (check.status, check.found, check.fix) == ("ok", target, "")
    assert check.name == f"_acme-challenge.{domain}" and check.ok


def test_a_wildcard_domain_is_checked_at_its_base_name(lab_bind, names, resolver, target):
    domain = names("customer.test")
    lab_bind.set_cname(f"_acme-challenge.{domain}", target + ".")
    assert check_cname(f"*.{domain}.", target + ".", resolver).status == "ok"


def test_no_record_at_all_is_nxdomain_with_the_record_to_create(names, resolver, target):
    domain = names("customer.test")
    check = check_cname(domain, target, resolver)
    assert check.status == "nxdomain"
    assert f"_acme-challenge.{domain}. CNAME {target}." in check.fix


def test_stale_txt_instead_of_the_cname_is_missing_with_its_own_message(lab_bind, names,
                                                                        resolver, target):
    domain = names("customer.test")
    lab_bind.update("customer.test",
                    add=[(f"_acme-challenge.{domain}", 60, "TXT", '"old-token"')])
    check = check_cname(domain, target, resolver)
    assert check.status == "missing"
    assert check.found == 'TXT "old-token"'
    assert "instead of the CNAME" in check.message
    assert check.fix.startswith(f"Delete the TXT records at _acme-challenge.{domain}")
    assert stale_txt(domain, resolver) == ["old-token"]


def test_other_records_without_a_cname_are_missing(lab_bind, names, resolver, target):
    domain = names("customer.test")
    # Not A: BIND's check-names refuses an A record at a name with an underscore.
    lab_bind.update("customer.test",
                    add=[(f"_acme-challenge.{domain}", 60, "HINFO", '"cpu" "os"')])
    check = check_cname(domain, target, resolver)
    assert check.status == "missing" and "no CNAME (NODATA)" in check.message


def test_stale_txt_is_empty_when_the_cname_is_there(lab_bind, names, resolver, target):
    domain = names("customer.test")
    lab_bind.set_cname(f"_acme-challenge.{domain}", target)
    bind_provider(lab_bind).add_txt([(target, "served-through-the-cname")], ttl=60)
    assert stale_txt(domain, resolver) == []


def test_cname_to_another_target_is_elsewhere(lab_bind, names, resolver, target):
    domain = names("customer.test")
    lab_bind.set_cname(f"_acme-challenge.{domain}", "acme.other.test")
    check = check_cname(domain, target, resolver)
    assert (check.status, check.found) == ("elsewhere", "acme.other.test")
    assert target in check.fix and not check.ok


def test_a_chain_ending_at_the_target_is_chain_and_still_usable(lab_bind, names, resolver,
                                                                target):
    domain, hop_zone = names("customer.test"), names("other.test")
    lab_bind.set_cname(f"_acme-challenge.{domain}", f"hop.{hop_zone}")
    lab_bind.set_cname(f"hop.{hop_zone}", target)
    check = check_cname(domain, target, resolver)
    assert check.status == "chain" and check.ok
    assert check.found == f"hop.{hop_zone} -> {target}"
    assert "Validation works" in check.message


def test_a_chain_ending_elsewhere_is_chain_and_not_usable(lab_bind, names, resolver, target):
    domain, hop_zone = names("customer.test"), names("other.test")
    lab_bind.set_cname(f"_acme-challenge.{domain}", f"hop.{hop_zone}")
    lab_bind.set_cname(f"hop.{hop_zone}", f"sub.{hop_zone}")
    check = check_cname(domain, target, resolver)
    assert check.status == "chain" and not check.ok
    assert f"ends at sub.{hop_zone}, not at {target}" in check.message


def test_a_cname_synthesised_by_a_wildcard_is_wildcard(lab_bind, names, resolver, target):
    domain = names("wild.test")
    lab_bind.update("wild.test", add=[(f"*.{domain}", 60, "CNAME", "web.other.test.")])
    check = check_cname(domain, target, resolver)
    assert (check.status, check.found) == ("wildcard", "web.other.test")
    assert f"wildcard record (*.{domain}" in check.message and not check.ok


def test_a_wildcard_pointing_at_the_target_is_still_flagged(lab_bind, names, resolver, target):
    domain = names("wild.test")
    lab_bind.update("wild.test", add=[(f"*.{domain}", 60, "CNAME", target + ".")])
    check = check_cname(domain, target, resolver)
    assert check.status == "wildcard" and "happens to point at the expected" in check.message


def test_an_explicit_cname_beside_a_wildcard_is_ok(lab_bind, names, resolver, target):
    domain = names("wild.test")
    lab_bind.update("wild.test", add=[(f"*.{domain}", 60, "CNAME", "web.other.test.")])
    lab_bind.set_cname(f"_acme-challenge.{domain}", target)
    assert check_cname(domain, target, resolver).status == "ok"


def test_servfail_is_error_with_the_resolvers_words(resolver, target):
    check = check_cname("nowhere.test", target, resolver)  # no stub: Unbound has no root
    assert check.status == "error" and "SERVFAIL" in check.message


def test_a_silent_resolver_is_error_saying_timeout(target):
    check = check_cname("example.test", target, [f"127.0.0.1:{free_port()}"], timeout=0.3)
    assert check.status == "error" and "timeout" in check.message


# -- CAA ----------------------------------------------------------------------------------------

def add_caa(lab_bind, name: str, *values: str) -> None:
    lab_bind.update("caa.test", add=[(name, 60, "CAA", v) for v in values])


def test_caa_naming_the_ca_allows_issuance(lab_bind, names, climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, f'0 issue "{PEBBLE}"')
    check = check_caa(domain, [PEBBLE], wildcard=False, resolvers=climbing)
    assert check.ok and check.records == [f'{domain} CAA 0 issue "{PEBBLE}"']


def test_caa_is_inherited_from_the_closest_parent(lab_bind, names, climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, '0 issue "other-ca.example"')
    check = check_caa(f"www.sub.{domain}", [PEBBLE], wildcard=False, resolvers=climbing)
    assert not check.ok
    assert f"CAA at {domain} allows only other-ca.example" in check.message
    assert check.fix == f'Add the record {domain}. CAA 0 issue "{PEBBLE}" (keep the others).'


def test_issuewild_overrides_issue_for_wildcards(lab_bind, names, climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, f'0 issue "{PEBBLE}"', '0 issuewild ";"')
    assert check_caa(domain, [PEBBLE], wildcard=False, resolvers=climbing).ok
    check = check_caa(domain, [PEBBLE], wildcard=True, resolvers=climbing)
    assert not check.ok and "issuewild overrides issue" in check.message
    assert "CAA 0 issuewild" in check.fix


def test_issuewild_alone_allows_only_wildcards(lab_bind, names, climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, '0 issue ";"', f'0 issuewild "{PEBBLE}"')
    assert check_caa(domain, [PEBBLE], wildcard=True, resolvers=climbing).ok
    assert not check_caa(domain, [PEBBLE], wildcard=False, resolvers=climbing).ok


def test_issue_limited_to_other_validation_methods_does_not_allow_dns01(lab_bind, names,
                                                                        climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, f'0 issue "{PEBBLE}; validationmethods=http-01"')
    check = check_caa(domain, [PEBBLE], wildcard=False, resolvers=climbing)
    assert not check.ok and "other validation methods than dns-01" in check.message


def test_an_unknown_critical_property_blocks_every_ca(lab_bind, names, climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, f'0 issue "{PEBBLE}"', '128 futuretag "x"')
    check = check_caa(domain, [PEBBLE], wildcard=False, resolvers=climbing)
    assert not check.ok and "critical property 'futuretag'" in check.message


def test_caa_with_only_iodef_allows_any_ca(lab_bind, names, climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, '0 iodef "mailto:security@example.test"')
    assert check_caa(domain, [PEBBLE], wildcard=True, resolvers=climbing).ok


def test_no_caa_up_to_the_tld_allows_any_ca(names, climbing):
    check = check_caa(names("customer.test"), [PEBBLE], wildcard=False, resolvers=climbing)
    assert check.ok and check.records == [] and "No CAA records" in check.message


def test_caa_without_ca_identities_says_it_cannot_judge(lab_bind, names, climbing):
    domain = names("caa.test")
    add_caa(lab_bind, domain, '0 issue "other-ca.example"')
    check = check_caa(domain, [], wildcard=False, resolvers=climbing)
    assert "cannot judge" in check.message and "CAA identity" in check.fix


def test_a_failed_caa_lookup_is_not_ok(resolver):
    check = check_caa("nowhere.test", [PEBBLE], wildcard=False, resolvers=resolver)
    assert not check.ok and "SERVFAIL" in check.message


# -- propagation ------------------------------------------------------------------------------

def test_wait_for_txt_returns_at_once_when_already_served(lab_bind, label):
    provider = bind_provider(lab_bind)
    provider.add_txt([(label, "a"), (label, "b")], ttl=60)
    started = time.monotonic()
    wait_for_txt(provider.authoritative_servers(), [(label, "a"), (label, "b")],
                 deadline=started + 5)
    assert time.monotonic() - started < 0.2


def test_wait_for_txt_returns_soon_after_the_value_appears(lab_bind, label):
    provider = bind_provider(lab_bind)
    later = threading.Timer(0.3, provider.add_txt, args=([(label, "late")], 60))
    later.start()
    started = time.monotonic()
    try:
        wait_for_txt(provider.authoritative_servers(), [(label, "late")], deadline=started + 5)
    finally:
        later.join()
    assert 0.25 < time.monotonic() - started < 1.0  # backoff caps near 0.5 s, no fixed sleep


def test_wait_for_txt_names_server_name_and_missing_value_on_timeout(lab_bind, label):
    provider = bind_provider(lab_bind)
    provider.add_txt([(label, "present")], ttl=60)
    started = time.monotonic()
    with pytest.raises(DnsError) as caught:
        wait_for_txt(provider.authoritative_servers(), [(label, "present"), (label, "absent")],
                     deadline=started + 0.3)
    assert time.monotonic() - started < 0.8
    message = caught.value.message
    assert f'127.0.0.1:{lab_bind.port} does not serve TXT "absent" at {label}' in message
    assert "present" not in message.split("last answer")[0]
    assert "NOERROR with 1 TXT value(s)" in message


def test_wait_for_txt_checks_every_server(lab_bind, lab_knot, label):
    # Only BIND gets the value: the error names Knot alone.
    bind_provider(lab_bind).add_txt([(label, "v")], ttl=60)
    servers = bind_provider(lab_bind).authoritative_servers() + \
        knot_provider(lab_knot).authoritative_servers()
    with pytest.raises(DnsError) as caught:
        wait_for_txt(servers, [(label, "v")], deadline=time.monotonic() + 0.2)
    assert f"127.0.0.1:{lab_knot.port} does not serve" in caught.value.message
    assert f"127.0.0.1:{lab_bind.port}" not in caught.value.message


# -- delegation -------------------------------------------------------------------------------

def test_zone_delegation_lists_ns_hosts_that_answer_authoritatively(lab_bind, climbing):
    info = zone_delegation(TECH_ZONE, climbing, port=lab_bind.port)
    assert info["ns"] == [f"ns.{TECH_ZONE}"]
    assert info["servers"][0]["authoritative"] and info["ok"], info
    assert info["servers"][0]["addresses"] == ["127.0.0.1"]


def test_zone_delegation_flags_a_lame_delegation(lab_bind, names, climbing):
    zone = names("customer.test")
    lab_bind.update("customer.test", add=[(zone, 60, "NS", f"ns.{TECH_ZONE}.")])
    info = zone_delegation(zone, climbing, port=lab_bind.port)
    assert info["parent"] == "customer.test" and info["ns"] == [f"ns.{TECH_ZONE}"]
    assert not info["ok"] and "lame delegation" in info["message"]
    assert f"but ns.{TECH_ZONE} does not answer for it" in info["message"]  # one server: "does"


def test_zone_delegation_of_a_missing_zone_says_not_delegated(lab_bind, names, climbing):
    info = zone_delegation(names("customer.test"), climbing, port=lab_bind.port)
    assert not info["ok"] and "is not delegated" in info["message"]


_sent: list | None = None  # (event, address) of every datagram and connection while recording


def _audit(event: str, args: tuple) -> None:
    if _sent is not None and event in ("socket.sendto", "socket.connect"):
        _sent.append((event, args[1]))


sys.addaudithook(_audit)  # a real observation of what goes on the wire, no mocking


def test_zone_delegation_never_asks_an_address_the_outbound_policy_refuses(lab_bind, climbing):
    global _sent
    refused = {}

    def address_check(address: str) -> str | None:
        refused[address] = f"{address} is internal"
        return refused[address]

    _sent = []
    try:
        info = zone_delegation(TECH_ZONE, climbing, port=lab_bind.port, address_check=address_check)
    finally:
        sent, _sent = _sent, None
    assert "127.0.0.1" in refused
    assert not any(address[1] == lab_bind.port for _event, address in sent), sent
    server = info["servers"][0]
    assert not server["authoritative"] and not info["ok"]
    assert server["message"] == "127.0.0.1: not asked (127.0.0.1 is internal)"
