"""The provider interface and registry (no servers needed)."""
from __future__ import annotations

import pytest

from webapp.dns import available_providers, base, get_provider_class, unavailable_providers
from webapp.dns.base import DnsProvider, Health, ProviderOption, parse_host_port, register
from webapp.dns.powerdns import PowerDnsProvider
from webapp.dns.rfc2136 import Rfc2136Provider
from webapp.errors import DnsError


class _Memory(DnsProvider):
    """A minimal provider: what a new module has to write."""

    name = "memory-test"
    label = "In memory (tests)"
    options = (ProviderOption("token", "Token", required=True, secret=True),
               ProviderOption("region", "Region", default="eu"))

    def add_txt(self, records, ttl):
        self.check_in_zone(records)

    def remove_txt(self, records):
        self.check_in_zone(records)

    def list_txt(self):
        return {}

    def health(self):
        return Health(True, "fine")


def test_builtin_providers_are_registered_by_name():
    providers = available_providers()
    assert providers["rfc2136"] is Rfc2136Provider
    assert providers["powerdns"] is PowerDnsProvider
    assert not {"rfc2136", "powerdns"} & set(unavailable_providers())


def test_a_provider_module_that_fails_to_import_is_listed_not_fatal(monkeypatch):
    monkeypatch.setattr(base, "BUILTIN_MODULES", ("rfc2136", "no_such_module"))
    monkeypatch.setattr(base, "_loaded", False)
    monkeypatch.setattr(base, "_load_errors", {})
    assert "rfc2136" in available_providers()
    assert "ModuleNotFoundError" in unavailable_providers()["no_such_module"]


def test_an_unknown_provider_name_lists_the_available_ones():
    with pytest.raises(DnsError, match="unknown DNS provider 'nope' .*powerdns, rfc2136"):
        get_provider_class("nope")


def test_register_adds_a_provider_to_the_registry(monkeypatch):
    monkeypatch.setattr(base, "_registry", dict(base._registry))  # leave no trace
    register(_Memory)
    assert get_provider_class("memory-test") is _Memory


def test_options_get_their_defaults_and_required_ones_are_checked():
    provider = _Memory("Acme.Tech.Test.", {"token": "t"})
    assert provider.zone == "acme.tech.test"
    assert provider.settings == {"token": "t", "region": "eu"}
    with pytest.raises(DnsError, match="memory-test: invalid settings \\(token: Token is required"):
        _Memory("acme.tech.test", {})


def test_every_secret_option_is_marked_secret():
    secret = {cls.name: {o.name for o in cls.options if o.secret}
              for cls in (Rfc2136Provider, PowerDnsProvider)}
    assert secret == {"rfc2136": {"tsig_secret"}, "powerdns": {"api_key"}}


def test_records_outside_the_zone_are_refused():
    provider = _Memory("acme.tech.test", {"token": "t"})
    provider.add_txt([("X.ACME.tech.test.", "v")], ttl=60)
    with pytest.raises(DnsError, match="memory-test: evil.test is outside the zone"):
        provider.add_txt([("evil.test", "v")], ttl=60)
    with pytest.raises(DnsError, match="outside the zone"):
        provider.add_txt([("notacme.tech.test", "v")], ttl=60)


def test_empty_values_are_refused():
    with pytest.raises(DnsError, match="empty TXT value"):
        _Memory("acme.tech.test", {"token": "t"}).add_txt([("a.acme.tech.test", "")], ttl=60)


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.1", ("192.0.2.1", 53)),
    ("192.0.2.1:5353", ("192.0.2.1", 5353)),
    ("ns.example.net:54", ("ns.example.net", 54)),
    ("[2001:db8::1]:5353", ("2001:db8::1", 5353)),
    ("[2001:db8::1]", ("2001:db8::1", 53)),
    ("2001:db8::1", ("2001:db8::1", 53)),
])
def test_parse_host_port_accepts_the_usual_forms(text, expected):
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["", "host:0", "host:65536", "host:x", "[::1]x", "[::1", "::zz"])
def test_parse_host_port_rejects_malformed_addresses(text):
    with pytest.raises(ValueError):
        parse_host_port(text)
