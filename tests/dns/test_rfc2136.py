"""RFC 2136 provider specifics, against the lab's BIND and the Knot from conftest."""
from __future__ import annotations

import pytest

from tests.dns.conftest import (
    KNOT_ALGORITHM_KEYS,
    KNOT_NOXFR_KEY,
    KNOT_READONLY_KEY,
    PDNS_OTHER_KEY,
    bind_provider,
    knot_provider,
    pdns_rfc2136_provider,
)
from tests.lab.proc import free_port
from tests.lab.servers import TSIG_KEY_NAME, TSIG_SECRET
from webapp.dns.rfc2136 import Rfc2136Provider
from webapp.errors import DnsError

GOOD = {"server": "127.0.0.1:53", "tsig_key_name": "k", "tsig_secret": TSIG_SECRET}


def soa_serial(bind) -> int:
    return bind.query("acme.tech.test", "SOA").answer[0][0].serial


# -- settings ---------------------------------------------------------------------------------

def test_validate_accepts_good_settings_and_defaults_the_algorithm():
    assert Rfc2136Provider.validate_options(GOOD) == {}


def test_validate_flags_a_secret_that_is_not_base64_without_quoting_it():
    errors = Rfc2136Provider.validate_options({**GOOD, "tsig_secret": "not base64!"})
    assert set(errors) == {"tsig_secret"}
    assert "base64" in errors["tsig_secret"] and "not base64!" not in errors["tsig_secret"]


@pytest.mark.parametrize("server", ["127.0.0.1:99999", "127.0.0.1:dns", ":53", "[::1"])
def test_validate_flags_a_server_that_is_not_host_port(server):
    assert set(Rfc2136Provider.validate_options({**GOOD, "server": server})) == {"server"}


@pytest.mark.parametrize("server", ["192.0.2.1", "ns1.example.net:5353", "[2001:db8::1]:53",
                                    "2001:db8::1"])
def test_validate_accepts_hosts_with_or_without_port(server):
    assert Rfc2136Provider.validate_options({**GOOD, "server": server}) == {}


def test_validate_flags_an_unknown_algorithm_and_lists_the_choices():
    errors = Rfc2136Provider.validate_options({**GOOD, "tsig_algorithm": "hmac-sha3"})
    assert "hmac-sha512" in errors["tsig_algorithm"]


def test_validate_flags_missing_required_settings():
    assert set(Rfc2136Provider.validate_options({})) == {"server", "tsig_key_name", "tsig_secret"}


def test_invalid_settings_refuse_construction_without_echoing_the_secret():
    with pytest.raises(DnsError) as caught:
        Rfc2136Provider("acme.tech.test", {**GOOD, "tsig_secret": "s3cret??"})
    assert caught.value.message.startswith("rfc2136: ")
    assert "s3cret" not in str(caught.value)


# -- behaviour against real servers -----------------------------------------------------------

def test_one_call_is_one_update_message(lab_bind, label):
    """Every value of an order goes in one UPDATE: the zone serial moves by exactly one."""
    before = soa_serial(lab_bind)
    bind_provider(lab_bind).add_txt([(label, "a"), (label, "b"), (f"x.{label}", "c"),
                                     (f"y.{label}", "d")], ttl=60)
    assert soa_serial(lab_bind) == before + 1


def test_an_update_is_sent_over_tcp(lab_bind, label):
    # Twenty names with long values outgrow a 512-byte UDP message; TCP carries them whole.
    records = [(f"n{i}.{label}", "v" * 200) for i in range(20)]
    bind_provider(lab_bind).add_txt(records, ttl=60)
    assert lab_bind.txt(f"n19.{label}") == ["v" * 200]


@pytest.mark.parametrize("algorithm", sorted(KNOT_ALGORITHM_KEYS))
def test_every_supported_tsig_algorithm_works(lab_knot, label, algorithm):
    provider = knot_provider(lab_knot, key=KNOT_ALGORITHM_KEYS[algorithm])
    assert provider.health().ok
    provider.add_txt([(label, algorithm)], ttl=60)
    assert provider.list_txt()[label] == [algorithm]


def test_an_unknown_key_name_says_badkey_and_what_to_check(lab_bind):
    health = bind_provider(lab_bind, tsig_key_name="no-such-key").health()
    assert not health.ok
    assert "NOTAUTH (BADKEY)" in health.message and f"{lab_bind.port}" in health.message
    assert "Check the TSIG key name, secret and algorithm" in health.message


def test_a_wrong_algorithm_is_reported_like_an_unknown_key(lab_bind):
    health = bind_provider(lab_bind, tsig_algorithm="hmac-sha512").health()
    assert "BADKEY" in health.message and "hmac-sha512" in health.message


def test_a_wrong_secret_says_badsig(lab_bind, label):
    with pytest.raises(DnsError, match=r"NOTAUTH \(BADSIG\)") as caught:
        bind_provider(lab_bind, tsig_secret="AAAA" * 11).add_txt([(label, "x")], ttl=60)
    assert caught.value.step == "add TXT records"


def test_a_key_without_update_rights_fails_health(lab_knot):
    # Knot answers BADKEY for a known key its ACL does not allow; BIND would say REFUSED.
    health = knot_provider(lab_knot, key=KNOT_READONLY_KEY).health()
    assert not health.ok
    assert "does not allow it" in health.message


def test_a_known_key_without_update_rights_is_refused_with_the_fix(lab_pdns, label):
    # PowerDNS (like BIND) answers REFUSED when the key is valid but not allowed to update.
    provider = pdns_rfc2136_provider(lab_pdns, key=PDNS_OTHER_KEY)
    with pytest.raises(DnsError, match="answered REFUSED: the server refused the update") as caught:
        provider.add_txt([(label, "v")], ttl=60)
    assert f'allow-update {{ key "{PDNS_OTHER_KEY}"; }}' in caught.value.hint
    assert "REFUSED" in provider.health().message


def test_an_unsigned_answer_to_an_unknown_key_is_explained(lab_pdns):
    # PowerDNS answers an unknown key without any TSIG at all, where BIND and Knot say BADKEY.
    health = pdns_rfc2136_provider(lab_pdns, tsig_key_name="no-such-key").health()
    assert "sent an unsigned answer" in health.message and "does not know" in health.message
    assert "Check the TSIG key name, secret and algorithm" in health.message


def test_list_txt_when_transfers_are_denied_says_how_to_allow_them(lab_knot, label):
    provider = knot_provider(lab_knot, key=KNOT_NOXFR_KEY)
    provider.add_txt([(label, "still writable")], ttl=60)  # updates are allowed
    with pytest.raises(DnsError, match="refused the zone transfer") as caught:
        provider.list_txt()
    assert "allow-transfer" in caught.value.hint


def test_a_zone_the_server_does_not_serve_fails_health_with_the_rcode(lab_bind):
    provider = Rfc2136Provider("not-here.test", {
        "server": f"{lab_bind.host}:{lab_bind.port}", "tsig_key_name": TSIG_KEY_NAME,
        "tsig_secret": TSIG_SECRET}, timeout=2)
    health = provider.health()
    assert not health.ok
    assert "does not serve the zone not-here.test (REFUSED" in health.message


def test_an_update_for_a_zone_the_server_does_not_serve_names_the_rcode(lab_bind):
    provider = Rfc2136Provider("not-here.test", {
        "server": f"{lab_bind.host}:{lab_bind.port}", "tsig_key_name": TSIG_KEY_NAME,
        "tsig_secret": TSIG_SECRET}, timeout=2)
    with pytest.raises(DnsError, match="answered NOTAUTH: the server is not authoritative"):
        provider.add_txt([("x.not-here.test", "v")], ttl=60)


def test_a_name_inside_a_zone_is_not_taken_for_a_zone(lab_bind, label):
    bind_provider(lab_bind).add_txt([(label, "v")], ttl=60)
    provider = Rfc2136Provider(label, {
        "server": f"{lab_bind.host}:{lab_bind.port}", "tsig_key_name": TSIG_KEY_NAME,
        "tsig_secret": TSIG_SECRET}, timeout=2)
    assert "not a zone of its own" in provider.health().message


def test_an_unreachable_server_is_named(label):
    server = f"127.0.0.1:{free_port()}"  # nothing listens there
    provider = Rfc2136Provider("acme.tech.test", {**GOOD, "server": server}, timeout=0.3)
    with pytest.raises(DnsError, match=f"rfc2136: {server} cannot be reached"):
        provider.add_txt([(label, "v")], ttl=60)
    assert f"{server} did not answer within 0.3 s" in provider.health().message


def test_a_server_given_by_name_is_resolved(lab_bind, label):
    provider = bind_provider(lab_bind, server=f"localhost:{lab_bind.port}")
    provider.add_txt([(label, "v")], ttl=60)
    assert provider.authoritative_servers() == [("127.0.0.1", lab_bind.port)]
    assert lab_bind.txt(label) == ["v"]
