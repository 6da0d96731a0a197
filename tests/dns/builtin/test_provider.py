"""BuiltinProvider: rows in sslm_dns_record, served by the builtin server; plus the contract
every provider honours (tests/dns/test_contract.py), run against the builtin backend."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

import tests.dns.test_contract as contract
from tests.dns.conftest import ProviderCase
from tests.lab.proc import free_port
from tests.lab.servers import TECH_ZONE
from webapp.dns import available_providers
from webapp.dns.builtin import RECORDS, ZONES, BuiltinProvider, parse_zone_options
from webapp.dns.builtin.server import DnsServer
from webapp.errors import DnsError
from webapp.models import Base

NAME = f"_label1.{TECH_ZONE}"


def make_engine(path, zone_provider: str | None = "builtin") -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    Base.metadata.create_all(engine)
    if zone_provider:
        with engine.begin() as conn:
            conn.execute(sa.insert(ZONES), [{"name": TECH_ZONE, "provider": zone_provider,
                                             "options": {}}])
    return engine


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(tmp_path / "sslmanager.db")
    yield engine
    engine.dispose()


def rows(engine) -> list[tuple]:
    with engine.connect() as conn:
        return sorted(tuple(row) for row in conn.execute(sa.select(
            RECORDS.c.zone, RECORDS.c.name, RECORDS.c.value, RECORDS.c.ttl,
            RECORDS.c.certificate_id)))


def test_the_provider_is_registered_as_builtin():
    assert available_providers()["builtin"] is BuiltinProvider


def test_add_txt_writes_one_row_per_value_with_the_certificate(engine):
    provider = BuiltinProvider(TECH_ZONE, {"_engine": engine})
    provider.add_txt([(NAME.upper() + ".", "one"), (NAME, "two")], ttl=60, certificate_id=7)
    assert rows(engine) == [(TECH_ZONE, NAME, "one", 60, 7), (TECH_ZONE, NAME, "two", 60, 7)]


def test_adding_a_value_twice_keeps_one_row(engine):
    provider = BuiltinProvider(TECH_ZONE, {"_engine": engine})
    provider.add_txt([(NAME, "one"), (NAME, "one")], ttl=60)
    provider.add_txt([(NAME, "one")], ttl=60)
    assert len(rows(engine)) == 1


def test_a_name_outside_the_zone_refuses_the_whole_call(engine):
    provider = BuiltinProvider(TECH_ZONE, {"_engine": engine})
    with pytest.raises(DnsError, match="^builtin: .*outside the zone"):
        provider.add_txt([(NAME, "one"), ("_acme-challenge.customer.test", "two")], ttl=60)
    assert rows(engine) == []


def test_remove_txt_deletes_exactly_the_given_values(engine):
    provider = BuiltinProvider(TECH_ZONE, {"_engine": engine})
    other_zone = BuiltinProvider("other.test", {"_engine": engine})
    provider.add_txt([(NAME, "one"), (NAME, "two"), (f"x.{NAME}", "one")], ttl=60)
    other_zone.add_txt([("a.other.test", "one")], ttl=60)
    provider.remove_txt([(NAME, "one"), (NAME, "absent"), (f"y.{NAME}", "one")])
    assert provider.list_txt() == {NAME: ["two"], f"x.{NAME}": ["one"]}
    assert other_zone.list_txt() == {"a.other.test": ["one"]}


def test_a_database_error_is_named_without_the_statement(tmp_path):
    engine = make_engine(tmp_path / "empty.db", zone_provider=None)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE sslm_dns_record"))
    provider = BuiltinProvider(TECH_ZONE, {"_engine": engine})
    with pytest.raises(DnsError) as caught:
        provider.add_txt([(NAME, "secret-looking-value")], ttl=60)
    assert caught.value.message.startswith("builtin: database error: no such table")
    assert "secret-looking-value" not in str(caught.value)
    assert caught.value.step == "add TXT records"


def test_the_engine_is_required():
    with pytest.raises(DnsError, match="^builtin: no database engine"):
        BuiltinProvider(TECH_ZONE, {})


def test_settings_are_validated_field_by_field():
    errors = BuiltinProvider.validate_options({"listen": "127.0.0.1:99999",
                                               "addresses": "ns1.x=not-an-ip"})
    assert set(errors) == {"listen", "addresses"}
    assert BuiltinProvider.validate_options({"listen": "127.0.0.1:5353, [::1]:5353",
                                             "nameservers": "ns1.a.test ns2.b.test"}) == {}


def test_zone_options_accept_json_and_form_text():
    from_json = parse_zone_options("z.test", {"nameservers": ["NS1.z.test."],
                                              "addresses": {"ns1.z.test": ["192.0.2.1"]},
                                              "hostmaster": "dns-admin@example.net"})
    from_text = parse_zone_options("z.test", {"nameservers": "ns1.z.test",
                                              "addresses": "ns1.z.test=192.0.2.1",
                                              "hostmaster": "dns-admin@example.net"})
    assert from_json == from_text
    assert from_json.hostmaster == "dns-admin.example.net"
    assert parse_zone_options("z.test", {}).nameservers == ["ns1.z.test"]


def test_json_options_from_the_zone_row_construct_a_provider(engine):
    provider = BuiltinProvider(TECH_ZONE, {"_engine": engine, "nameservers": ["ns1.a.test"],
                                           "addresses": {"ns1.a.test": ["192.0.2.1"]}})
    assert provider.settings["nameservers"] == "ns1.a.test"


def test_authoritative_servers_are_the_listen_addresses_with_wildcards_as_loopback(engine):
    provider = BuiltinProvider(TECH_ZONE, {"_engine": engine,
                                           "listen": "0.0.0.0:5353, [::]:5353, 192.0.2.7"})
    assert provider.authoritative_servers() == [("127.0.0.1", 5353), ("::1", 5353),
                                                ("192.0.2.7", 53)]


def test_health_is_ok_with_the_serial_when_the_server_answers(engine):
    with DnsServer(engine, [("127.0.0.1", 0)]) as server:
        host, port = server.addresses[0]
        health = BuiltinProvider(TECH_ZONE, {"_engine": engine,
                                             "listen": f"{host}:{port}"}).health()
    assert health.ok and f"{host}:{port}" in health.message and "SOA serial" in health.message


def test_health_fails_naming_the_address_when_no_server_answers(engine):
    port = free_port()
    health = BuiltinProvider(TECH_ZONE, {"_engine": engine, "listen": f"127.0.0.1:{port}"},
                             timeout=0.3).health()
    assert not health.ok
    assert f"127.0.0.1:{port}" in health.message and "sslmanager dns serve" in health.message


def test_health_fails_for_a_zone_that_is_missing_or_not_builtin(tmp_path):
    missing = make_engine(tmp_path / "a.db", zone_provider=None)
    other = make_engine(tmp_path / "b.db", zone_provider="rfc2136")
    health = BuiltinProvider(TECH_ZONE, {"_engine": missing}).health()
    assert not health.ok and "not in the database" in health.message
    health = BuiltinProvider(TECH_ZONE, {"_engine": other}).health()
    assert not health.ok and "'rfc2136'" in health.message


# -- the shared provider contract ------------------------------------------------------------

@pytest.fixture
def provider_case(tmp_path):
    """The contract's fixture for the builtin backend: a server that checks the database on
    every query (cache_ms=0), because the contract asks right after each write."""
    engine = make_engine(tmp_path / "contract.db")
    with DnsServer(engine, [("127.0.0.1", 0)], cache_ms=0, rate_limit=0) as server:
        host, port = server.addresses[0]

        def make(**overrides):
            options = {"_engine": engine, "listen": f"{host}:{port}", **overrides}
            return BuiltinProvider(TECH_ZONE, options, timeout=1)
        # No secrets here: "wrong credentials" is a server address where nobody answers.
        yield ProviderCase("builtin", make(), make, {"listen": f"127.0.0.1:{free_port()}"}, ())
    engine.dispose()


class TestBuiltinProviderContract(contract.TestProviderContract):
    def test_health_with_a_wrong_secret_says_what_to_check(self, provider_case):
        health = provider_case.make(**provider_case.wrong_secret).health()
        assert not health.ok and health.message.startswith("builtin: ")
        assert "sslmanager dns serve" in health.message

    # The builtin provider has no credentials: there is no wrong secret to test.
    test_add_with_a_wrong_secret_raises_without_leaking_it = None
