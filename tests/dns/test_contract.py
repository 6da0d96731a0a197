"""The contract every DNS provider honours, run against each real backend (see conftest)."""
from __future__ import annotations

import threading
import time

import dns.message
import dns.query
import dns.rdatatype
import pytest

from tests.lab.servers import TECH_ZONE
from webapp.dns.checks import wait_for_txt
from webapp.errors import DnsError, DnsUnsupported

APEX, WILDCARD = "apex-token-" + "a" * 32, "wildcard-token-" + "b" * 28
TARGET = "k3c9x2abcdef.acme.example.net"  # a CNAME target in another zone, as in real use


def servers(provider) -> list[tuple[str, int]]:
    """The provider's authoritative servers, which must not be empty: the propagation poll
    asks them, and with none it would wait for nothing and answer the challenge too early."""
    found = provider.authoritative_servers()
    assert found, f"{provider.name}: authoritative_servers() returned none"
    return found


def served(provider, name: str) -> list[str]:
    """TXT values the provider's own DNS server answers for name right now."""
    host, port = servers(provider)[0]
    reply, _ = dns.query.udp_with_fallback(dns.message.make_query(name, "TXT"), host,
                                           port=port, timeout=2)
    return sorted(b"".join(rd.strings).decode() for rrset in reply.answer
                  if rrset.rdtype == dns.rdatatype.TXT for rd in rrset)


def assert_served(provider, records, within: float = 3.0) -> None:
    wait_for_txt(servers(provider), records, deadline=time.monotonic() + within)


def served_cname(provider, name: str) -> str | None:
    """The CNAME target the provider's own DNS server answers for name right now."""
    host, port = servers(provider)[0]
    reply, _ = dns.query.udp_with_fallback(dns.message.make_query(name, "CNAME"), host,
                                           port=port, timeout=2)
    return next((rrset[0].target.to_text(omit_final_dot=True) for rrset in reply.answer
                 if rrset.rdtype == dns.rdatatype.CNAME), None)


def manages_cnames(case, name: str) -> bool:
    """True for a provider that writes customer CNAMEs; for the others, check that both
    calls refuse, naming the provider, before returning False."""
    if case.manages_cnames:
        return True
    for call in (lambda: case.provider.add_cname(name, TARGET, 60),
                 lambda: case.provider.remove_cname(name, TARGET)):
        with pytest.raises(DnsUnsupported) as caught:
            call()
        assert caught.value.message.startswith(f"{case.provider.name}: cannot manage customer "
                                               "CNAMEs")
        assert caught.value.hint
    return False


class TestProviderContract:
    def test_add_two_values_at_one_name_in_one_call_serves_both(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX), (label, WILDCARD)], ttl=60)
        assert_served(provider, [(label, APEX), (label, WILDCARD)])
        assert served(provider, label) == sorted([APEX, WILDCARD])

    def test_a_second_add_keeps_the_value_of_the_first(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX)], ttl=60)
        provider.add_txt([(label + ".", WILDCARD)], ttl=60)  # trailing dot means the same
        assert_served(provider, [(label, APEX), (label, WILDCARD)])

    def test_remove_one_value_keeps_the_other(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX), (label, WILDCARD)], ttl=60)
        provider.remove_txt([(label, APEX)])
        assert served(provider, label) == [WILDCARD]
        assert provider.list_txt()[label] == [WILDCARD]

    def test_removing_the_last_value_removes_the_name(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX)], ttl=60)
        provider.remove_txt([(label, APEX)])
        assert served(provider, label) == []
        assert label not in provider.list_txt()

    def test_removing_an_absent_value_is_harmless(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX)], ttl=60)
        provider.remove_txt([(label, "never-added"), (f"absent.{label}", APEX)])
        assert served(provider, label) == [APEX]

    def test_adding_a_value_twice_keeps_one_copy(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX), (label, APEX)], ttl=60)
        provider.add_txt([(label, APEX)], ttl=60)
        assert served(provider, label) == [APEX]

    def test_one_call_writes_every_name(self, provider_case, label):
        provider = provider_case.provider
        records = [(f"n{i}.{label}", f"value-{i}") for i in range(20)]
        provider.add_txt(records, ttl=60)
        assert_served(provider, records)
        provider.remove_txt(records)
        listed = provider.list_txt()
        assert not [name for name, _ in records if name in listed]

    def test_a_value_longer_than_255_bytes_round_trips(self, provider_case, label):
        provider = provider_case.provider
        long_value = "x" * 300
        provider.add_txt([(label, long_value)], ttl=60)
        assert served(provider, label) == [long_value]
        assert provider.list_txt()[label] == [long_value]
        provider.remove_txt([(label, long_value)])
        assert served(provider, label) == []

    def test_list_txt_maps_each_name_to_its_values(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX), (label, WILDCARD), (f"other.{label}", "v")], ttl=60)
        listed = provider.list_txt()
        assert listed[label] == sorted([APEX, WILDCARD])
        assert listed[f"other.{label}"] == ["v"]

    def test_health_is_ok_and_names_the_zone(self, provider_case):
        health = provider_case.provider.health()
        assert health.ok, health.message
        assert TECH_ZONE in health.message

    def test_health_with_a_wrong_secret_says_what_to_check(self, provider_case):
        health = provider_case.make(**provider_case.wrong_secret).health()
        assert not health.ok
        assert health.message.startswith(provider_case.provider.name + ":")
        assert "key" in health.message.lower()
        for secret in provider_case.secret_values:
            assert secret not in health.message

    def test_add_with_a_wrong_secret_raises_without_leaking_it(self, provider_case, label):
        with pytest.raises(DnsError) as caught:
            provider_case.make(**provider_case.wrong_secret).add_txt([(label, APEX)], ttl=60)
        text = f"{caught.value} {caught.value.hint}"
        assert caught.value.message.startswith(provider_case.provider.name + ": ")
        for secret in provider_case.secret_values:
            assert secret not in text

    def test_concurrent_adds_at_one_name_lose_nothing(self, provider_case, label):
        values = [f"concurrent-{i}" for i in range(10)]
        errors = []
        start = threading.Barrier(len(values))

        def add(value):
            try:
                provider = provider_case.make()  # a fresh instance per thread, like requests
                start.wait()
                provider.add_txt([(label, value)], ttl=60)
            except Exception as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=add, args=(v,)) for v in values]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert served(provider_case.provider, label) == sorted(values)

    def test_names_outside_the_zone_are_refused_before_sending(self, provider_case):
        with pytest.raises(DnsError, match="outside the zone"):
            provider_case.provider.add_txt([("_acme-challenge.customer.test", APEX)], ttl=60)

    def test_authoritative_servers_are_named(self, provider_case):
        for host, port in servers(provider_case.provider):
            assert host and 0 < port < 65536

    def test_authoritative_servers_serve_what_was_added(self, provider_case, label):
        provider = provider_case.provider
        provider.add_txt([(label, APEX)], ttl=60)
        for server in servers(provider):
            wait_for_txt([server], [(label, APEX)], deadline=time.monotonic() + 3)

    # -- customer CNAMEs (rfc2136 only; the others refuse, naming themselves) ------------

    def test_add_cname_writes_once_then_reports_it_present(self, provider_case, label):
        provider = provider_case.provider
        if not manages_cnames(provider_case, label):
            return
        assert provider.add_cname(label + ".", TARGET.upper() + ".", ttl=60) is None
        assert served_cname(provider, label) == TARGET
        assert provider.add_cname(label, TARGET, ttl=60) == TARGET  # nothing written
        assert served_cname(provider, label) == TARGET

    def test_add_cname_never_overwrites_a_name_in_use(self, provider_case, label):
        provider = provider_case.provider
        if not manages_cnames(provider_case, label):
            return
        provider.add_txt([(label, APEX)], ttl=60)
        assert provider.add_cname(label, TARGET, ttl=60) == "other records at that name"
        assert served(provider, label) == [APEX]
        other = f"cname.{label}"
        assert provider.add_cname(other, "elsewhere.example.org", ttl=60) is None
        assert provider.add_cname(other, TARGET, ttl=60) == "elsewhere.example.org"
        assert served_cname(provider, other) == "elsewhere.example.org"

    def test_remove_cname_only_while_it_points_at_the_target(self, provider_case, label):
        provider = provider_case.provider
        if not manages_cnames(provider_case, label):
            return
        assert provider.remove_cname(label, TARGET) is False  # nothing there
        provider.add_cname(label, "elsewhere.example.org", ttl=60)
        assert provider.remove_cname(label, TARGET) is False
        assert served_cname(provider, label) == "elsewhere.example.org"
        assert provider.remove_cname(label, "elsewhere.example.org") is True
        assert served_cname(provider, label) is None
        assert provider.add_cname(label, TARGET, ttl=60) is None  # the name is free again

    def test_cname_names_outside_the_zone_are_refused_before_sending(self, provider_case):
        if not manages_cnames(provider_case, "_acme-challenge.customer.test"):
            return
        for call in (lambda p: p.add_cname("_acme-challenge.customer.test", TARGET, ttl=60),
                     lambda p: p.remove_cname("_acme-challenge.customer.test", TARGET)):
            with pytest.raises(DnsError, match="outside the zone"):
                call(provider_case.provider)
