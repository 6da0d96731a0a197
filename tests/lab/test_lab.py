"""Each lab server really answers, and the CNAME-into-technical-zone topology resolves."""

from __future__ import annotations

import os

import dns.flags
import dns.name
import dns.query
import dns.rcode
import dns.update
import psycopg
import pytest
import requests
from cryptography import x509

from tests.lab.proc import require_binary
from tests.lab.servers import (
    CUSTOMER_ZONES,
    TECH_ZONE,
    Bind,
    LabServerError,
    Pebble,
    Unbound,
)

pytest_plugins = ["tests.lab.fixtures"]


def test_bind_serves_soa_of_every_zone(lab_bind):
    assert lab_bind.zones == (TECH_ZONE, *CUSTOMER_ZONES)
    for zone in lab_bind.zones:
        reply = lab_bind.query(zone, "SOA")
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.flags & dns.flags.AA
        assert reply.answer[0].name.to_text() == f"{zone}."


def test_bind_accepts_tsig_update(lab_bind):
    name = "lab-update.acme.tech.test"
    record = (name, 60, "TXT", '"token-1"')
    lab_bind.update(TECH_ZONE, add=[record])
    assert lab_bind.txt(name) == ["token-1"]
    lab_bind.update(TECH_ZONE, delete=[record])
    assert lab_bind.query(name, "TXT").rcode() == dns.rcode.NXDOMAIN


def test_bind_refuses_unsigned_update(lab_bind):
    msg = dns.update.UpdateMessage(TECH_ZONE)
    msg.add("unsigned", 60, "TXT", '"nope"')
    reply = dns.query.tcp(msg, lab_bind.host, port=lab_bind.port, timeout=5)
    assert reply.rcode() == dns.rcode.REFUSED


def test_unbound_resolves_txt_through_cname_into_tech_zone(lab_bind, lab_unbound):
    challenge = "_acme-challenge.customer.test"
    target = "lab-cname.acme.tech.test"
    lab_bind.set_cname(challenge, target)
    lab_bind.update(TECH_ZONE, add=[(target, 60, "TXT", '"validation-value"')])
    try:
        reply = lab_unbound.query(challenge, "TXT")
        assert reply.rcode() == dns.rcode.NOERROR
        cname = reply.find_rrset(reply.answer, dns.name.from_text(challenge), "IN", "CNAME")
        assert cname[0].target.to_text() == f"{target}."
        assert lab_unbound.txt(challenge) == ["validation-value"]
        # No caching: a change at BIND is visible through Unbound at once.
        lab_bind.clear(target)
        assert lab_unbound.txt(challenge) == []
    finally:
        lab_bind.clear(challenge)
        lab_bind.clear(target)


def test_unbound_extra_stub_zone_points_at_another_server(lab_bind):
    with Bind(zones=("elsewhere.test",)) as other:
        other.update("elsewhere.test", add=[("probe", 60, "TXT", '"other-server"')])
        extra = {"elsewhere.test": f"{other.host}@{other.port}"}
        with Unbound(lab_bind, extra_stub_zones=extra) as unbound:
            assert unbound.txt("probe.elsewhere.test") == ["other-server"]
            assert unbound.query(TECH_ZONE, "SOA").rcode() == dns.rcode.NOERROR


def test_pebble_directory_and_roots(lab_pebble):
    directory = requests.get(lab_pebble.directory_url, verify=lab_pebble.ca_bundle).json()
    assert directory["newOrder"].startswith("https://127.0.0.1:")
    assert directory["meta"]["externalAccountRequired"] is False
    root = x509.load_pem_x509_certificate(lab_pebble.root_pem().encode())
    intermediate = x509.load_pem_x509_certificate(lab_pebble.intermediate_pem().encode())
    assert intermediate.issuer == root.subject
    assert "Using custom DNS resolver" in lab_pebble.log_text()


def test_pebble_eab_requires_external_account(lab_pebble_eab):
    directory = requests.get(lab_pebble_eab.directory_url, verify=lab_pebble_eab.ca_bundle).json()
    assert directory["meta"]["externalAccountRequired"] is True
    assert set(lab_pebble_eab.eab_keys) == {"kid-1", "kid-2"}


def test_pebble_factory_merges_env(pebble_factory):
    pebble = pebble_factory(env={"PEBBLE_WFE_NONCEREJECT": "50"})
    assert pebble.env["PEBBLE_VA_NOSLEEP"] == "1"
    assert pebble.env["PEBBLE_AUTHZREUSE"] == "0"
    log = pebble.log_text()
    assert "reject 50% of good nonces" in log
    assert "authz reuse for each identifier 0%" in log


def test_pebble_start_failure_shows_its_log(lab_unbound):
    padded = {"kid-1": "c2VjcmV0LWtleQ=="}  # padding makes Pebble refuse to start
    with pytest.raises(LabServerError, match="pebble exited") as failure:
        Pebble(f"{lab_unbound.host}:{lab_unbound.port}", eab_keys=padded).start()
    assert "Starting Pebble" in str(failure.value)


def test_postgres_connects_and_creates_database(lab_postgres):
    url = lab_postgres.create_database("lab_smoke")
    try:
        assert url == f"postgresql+psycopg://postgres@127.0.0.1:{lab_postgres.port}/lab_smoke"
        with psycopg.connect(lab_postgres.dsn("lab_smoke")) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("lab_smoke",)
    finally:
        lab_postgres.drop_database("lab_smoke")


def test_pg_database_is_fresh_and_empty(pg_database):
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_stop_kills_process_and_removes_workdir():
    bind = Bind(zones=(TECH_ZONE,)).start()
    pid, workdir = bind.proc.pid, bind.workdir
    bind.stop()
    assert not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_missing_binary_names_debian_package():
    with pytest.raises(LabServerError, match=r"apt-get install -y bind9"):
        require_binary("/nonexistent/named", "bind9")
