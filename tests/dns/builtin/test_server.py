"""The builtin DNS server over the wire: dnspython and dig against a real socket, a second
server process on the same database, and Unbound resolving through it."""
from __future__ import annotations

import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest
import sqlalchemy as sa

from tests.lab.proc import free_port, require_binary
from tests.lab.servers import Unbound
from webapp.dns.builtin import ZONES, BuiltinProvider
from webapp.dns.builtin.ratelimit import RateLimiter
from webapp.dns.builtin.server import DnsServer
from webapp.models import Base

ZONE = "zone.builtin.test"
NS1 = f"ns1.{ZONE}"
NAME = f"abc123.{ZONE}"
APEX_VALUE, WILDCARD_VALUE = "apex-" + "a" * 38, "wild-" + "b" * 38


def make_engine(path) -> sa.Engine:
    """A fresh SQLite database in WAL mode with our schema and one builtin zone."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(ZONES), [
            {"name": ZONE, "provider": "builtin",
             "options": {"nameservers": [NS1, "ns2.elsewhere.test"],
                         "addresses": {NS1: ["127.0.0.1", "::1"]}}},
            {"name": "rfc.builtin.test", "provider": "rfc2136", "options": {}},
        ])
    return engine


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(tmp_path / "sslmanager.db")
    yield engine
    engine.dispose()


@pytest.fixture
def server(engine):
    with DnsServer(engine, [("127.0.0.1", 0)], rate_limit=0, cache_ms=20) as server:
        yield server


@pytest.fixture
def provider(engine, server):
    host, port = server.addresses[0]
    return BuiltinProvider(ZONE, {"_engine": engine, "listen": f"{host}:{port}"}, timeout=2)


def ask(where, name, rdtype="TXT", *, tcp=False, edns=0, payload=1232, rdclass="IN"):
    """One query to a DnsServer (its first address) or a (host, port); edns=None sends none."""
    host, port = where if isinstance(where, tuple) else where.addresses[0]
    query = dns.message.make_query(name, rdtype, rdclass, use_edns=False if edns is None else edns,
                                   payload=payload)
    query.flags &= ~dns.flags.RD
    send = dns.query.tcp if tcp else dns.query.udp
    return send(query, host, port=port, timeout=2)


def txt(reply) -> list[str]:
    return sorted(b"".join(rd.strings).decode() for rrset in reply.answer
                  if rrset.rdtype == dns.rdatatype.TXT for rd in rrset)


def dig(server, *args: str) -> str:
    require_binary("dig", "bind9-dnsutils")
    host, port = server.addresses[0]
    return subprocess.run(["dig", "+norec", "+time=2", "+tries=1", "-p", str(port), f"@{host}",
                           *args], capture_output=True, text=True, check=True, timeout=10).stdout


def raw_exchange(server, packet: bytes, timeout=0.3) -> bytes | None:
    """Send raw bytes over UDP; the reply, or None if the server stayed silent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(packet, server.addresses[0])
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def wait_until(predicate, within=2.0):
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
    return time.monotonic()


# -- answers ---------------------------------------------------------------------------------

def test_soa_at_the_apex_is_authoritative_never_recursive_and_advertises_edns(server):
    reply = ask(server, ZONE, "SOA")
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA and not reply.flags & dns.flags.RA
    soa = reply.answer[0][0]
    assert (soa.mname.to_text(), soa.rname.to_text()) == (f"{NS1}.", f"hostmaster.{ZONE}.")
    assert soa.minimum == 5
    assert reply.edns == 0 and reply.payload == 1232


def test_ns_answer_carries_glue_only_for_nameservers_inside_the_zone(server):
    reply = ask(server, ZONE, "NS")
    targets = sorted(rd.target.to_text() for rd in reply.answer[0])
    assert targets == [f"{NS1}.", "ns2.elsewhere.test."]
    glue = {(rrset.name.to_text(), rrset.rdtype): [rd.address for rd in rrset]
            for rrset in reply.additional}
    assert glue == {(f"{NS1}.", dns.rdatatype.A): ["127.0.0.1"],
                    (f"{NS1}.", dns.rdatatype.AAAA): ["::1"]}
    assert [rd.address for rd in ask(server, NS1, "A").answer[0]] == ["127.0.0.1"]


def test_two_txt_values_at_one_name_are_both_served(server, provider):
    provider.add_txt([(NAME, APEX_VALUE), (NAME, WILDCARD_VALUE)], ttl=30)
    wait_until(lambda: txt(ask(server, NAME)) == sorted([APEX_VALUE, WILDCARD_VALUE]))
    assert ask(server, NAME).answer[0].ttl == 30


def test_dig_sees_the_values_with_aa_and_without_ra(server, provider):
    provider.add_txt([(NAME, APEX_VALUE), (NAME, WILDCARD_VALUE)], ttl=60)
    wait_until(lambda: len(txt(ask(server, NAME))) == 2)
    assert dig(server, "+short", NAME, "TXT").split() == sorted(
        [f'"{APEX_VALUE}"', f'"{WILDCARD_VALUE}"'])
    full = dig(server, NAME, "TXT")
    flags = full.split("flags:")[1].split(";")[0].split()
    assert flags == ["qr", "aa"]
    assert "udp: 1232" in full
    assert "status: NOERROR" in dig(server, "+tcp", NAME, "TXT")


def test_a_missing_name_is_nxdomain_with_the_soa_and_the_negative_ttl(server):
    reply = ask(server, f"nothing.{ZONE}")
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
    assert not reply.answer
    (soa,) = reply.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text() == f"{ZONE}."
    assert soa.ttl == soa[0].minimum == 5
    assert "status: NXDOMAIN" in dig(server, f"nothing.{ZONE}", "TXT")


def test_a_name_without_the_asked_type_is_nodata_with_the_soa(server, provider):
    provider.add_txt([(f"x.{NAME}", APEX_VALUE)], ttl=60)
    wait_until(lambda: txt(ask(server, f"x.{NAME}")) == [APEX_VALUE])
    # NAME itself is now an empty non-terminal: it exists, with no records of its own.
    for name, rdtype in [(f"x.{NAME}", "A"), (NAME, "TXT"), (ZONE, "TXT")]:
        reply = ask(server, name, rdtype)
        assert (reply.rcode(), reply.answer) == (dns.rcode.NOERROR, []), (name, rdtype)
        assert reply.authority[0].rdtype == dns.rdatatype.SOA


def test_names_outside_builtin_zones_are_refused(server):
    for name, rdclass in [("example.com", "IN"), ("rfc.builtin.test", "IN"),
                          ("builtin.test", "IN"), ("version.bind", "CH"), (ZONE, "CH")]:
        reply = ask(server, name, "TXT", rdclass=rdclass)
        assert reply.rcode() == dns.rcode.REFUSED, name
        assert not reply.flags & (dns.flags.AA | dns.flags.RA)
    assert ask(server, ZONE, "AXFR", tcp=True).rcode() == dns.rcode.REFUSED


def test_the_question_comes_back_in_the_clients_case(server):
    reply = ask(server, ZONE.upper(), "SOA")
    assert reply.question[0].name.to_text() == f"{ZONE.upper()}."
    assert reply.answer[0].name.to_text() == f"{ZONE.upper()}."


def test_edns_is_echoed_only_when_asked_and_unknown_versions_get_badvers(server):
    assert ask(server, ZONE, "SOA", edns=None).edns == -1
    reply = ask(server, ZONE, "SOA", edns=1)
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0


def test_tcp_answers_like_udp(server, provider):
    provider.add_txt([(NAME, APEX_VALUE)], ttl=60)
    wait_until(lambda: txt(ask(server, NAME)) == [APEX_VALUE])
    assert txt(ask(server, NAME, tcp=True)) == [APEX_VALUE]
    assert ask(server, f"nothing.{ZONE}", tcp=True).rcode() == dns.rcode.NXDOMAIN


def test_tcp_serves_pipelined_queries_on_one_connection(server):
    queries = [dns.message.make_query(ZONE, "SOA", id=i) for i in range(5)]
    wire = b"".join(len(w).to_bytes(2, "big") + w for w in (q.to_wire() for q in queries))
    with socket.create_connection(server.addresses[0], timeout=2) as sock:
        sock.sendall(wire)
        ids = []
        for _ in queries:
            size = int.from_bytes(sock.recv(2, socket.MSG_WAITALL), "big")
            ids.append(dns.message.from_wire(sock.recv(size, socket.MSG_WAITALL)).id)
    assert ids == list(range(5))


def test_any_gets_one_synthesized_hinfo(server, provider):
    provider.add_txt([(NAME, APEX_VALUE), (NAME, WILDCARD_VALUE)], ttl=60)
    wait_until(lambda: len(txt(ask(server, NAME))) == 2)
    for name in (ZONE, NAME):
        (rrset,) = ask(server, name, "ANY").answer
        assert rrset.rdtype == dns.rdatatype.HINFO and len(rrset) == 1
        assert rrset[0].cpu == b"RFC8482"


def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(server, provider):
    values = [f"{i:03d}-" + "v" * 120 for i in range(20)]  # ~2.6 kB of TXT
    provider.add_txt([(NAME, v) for v in values], ttl=60)
    wait_until(lambda: len(txt(ask(server, NAME, tcp=True))) == 20)
    udp = ask(server, NAME, payload=4096)  # the client may ask for more; we send 1232 at most
    assert udp.flags & dns.flags.TC and not udp.answer
    assert txt(ask(server, NAME, tcp=True)) == values
    reply, used_tcp = dns.query.udp_with_fallback(
        dns.message.make_query(NAME, "TXT"), "127.0.0.1", port=server.addresses[0][1], timeout=2)
    assert used_tcp and txt(reply) == values


def test_the_clients_payload_size_is_honoured(server, provider):
    values = [f"{i}-" + "p" * 150 for i in range(4)]  # ~700 bytes: over 512, under 1232
    provider.add_txt([(NAME, v) for v in values], ttl=60)
    wait_until(lambda: len(txt(ask(server, NAME, tcp=True))) == 4)
    assert txt(ask(server, NAME, payload=1232)) == values
    assert ask(server, NAME, payload=600).flags & dns.flags.TC
    assert ask(server, NAME, edns=None).flags & dns.flags.TC  # 512 without EDNS


# -- abuse -----------------------------------------------------------------------------------

def _header(qd=1, an=0, ns=0, ar=0, flags=0x0100, qid=0x1234) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = dns.message.make_query(ZONE, "SOA").to_wire()[12:]


def test_malformed_packets_get_formerr_or_silence_and_never_stop_the_server(server):
    rng = random.Random(8482)
    formerr = {
        "no question": _header(qd=0),
        "two questions": _header(qd=2) + QUESTION * 2,
        "answer in a query": _header(an=1) + QUESTION,
        "pointer loop in the question": _header() + b"\xc0\x0c\x00\x06\x00\x01",
        "pointer forward": _header() + b"\x03abc\xc0\x14\x00\x06\x00\x01",
        "label running past the end": _header() + b"\x3fabc",
        "name longer than 255": _header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x06\x00\x01",
        "question cut short": _header() + QUESTION[:-2],
        "OPT with a bad length": _header(ar=1) + QUESTION + b"\x00\x00\x29\x04\xd0\0\0\0\0\x00\x09",
        "trailing garbage": _header() + QUESTION + b"junk",
    }
    for why, packet in formerr.items():
        reply = raw_exchange(server, packet)
        assert reply is not None and reply[3] & 0x0F == dns.rcode.FORMERR, why
        assert reply[:2] == packet[:2]
    silent = {"short header": b"\x12\x34\x01", "empty": b"",
              "a response": _header(flags=0x8400) + QUESTION}
    for why, packet in silent.items():
        assert raw_exchange(server, packet, timeout=0.1) is None, why
    assert raw_exchange(server, _header(flags=0x2800) + QUESTION)[3] & 0x0F == dns.rcode.NOTIMP

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # 3000 random packets
        for _ in range(3000):
            sock.sendto(rng.randbytes(rng.randrange(0, 600)), server.addresses[0])
    with socket.create_connection(server.addresses[0], timeout=2) as sock:
        sock.sendall(b"\x00\x05hello\xff\xff" + rng.randbytes(100))  # then hangs up mid-message
    assert server.stats["errors"] == 0
    assert ask(server, ZONE, "SOA").rcode() == dns.rcode.NOERROR
    assert ask(server, ZONE, "SOA", tcp=True).rcode() == dns.rcode.NOERROR


def test_a_flood_from_one_address_is_rate_limited_and_others_are_not(engine):
    with DnsServer(engine, [("127.0.0.1", 0)], rate_limit=50, burst=20, slip=2) as server:
        query = dns.message.make_query(ZONE, "SOA").to_wire()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as flood:
            flood.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            started = time.monotonic()
            for _ in range(400):
                flood.sendto(query, server.addresses[0])
            flood.settimeout(0.3)
            replies = []
            try:
                while True:
                    replies.append(dns.message.from_wire(flood.recv(4096)))
            except TimeoutError:
                elapsed = time.monotonic() - started
        answered = [r for r in replies if r.answer]
        slipped = [r for r in replies if r.flags & dns.flags.TC]
        assert 20 <= len(answered) <= 20 + 50 * elapsed + 2
        assert len(slipped) >= 50  # half of the excess: real clients retry over TCP
        assert len(replies) < 300  # the rest was dropped
        assert ask(server, ZONE, "SOA", tcp=True).answer  # TCP is not limited
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:  # another address
            other.bind(("127.0.0.2", 0))
            other.settimeout(2)
            other.sendto(query, server.addresses[0])
            assert dns.message.from_wire(other.recv(4096)).answer
        time.sleep(0.1)  # 5 tokens back
        assert ask(server, ZONE, "SOA").answer


def test_the_rate_limiter_forgets_addresses_instead_of_growing():
    limiter = RateLimiter(rate=10, burst=5, max_entries=1000)
    for i in range(50_000):  # a spoofed flood from ever-new addresses
        limiter.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", now=i / 10_000)
    assert len(limiter.buckets) <= 1000
    assert limiter.check("2001:db8::1", 10) == limiter.ALLOW
    for _ in range(4):
        limiter.check("2001:db8::2", 10)
    assert limiter.check("2001:db8::ffff", 10) != limiter.ALLOW  # one /64, one bucket


# -- the database is the only state ----------------------------------------------------------

def test_added_and_removed_records_show_promptly(server, provider):
    start = time.monotonic()
    provider.add_txt([(NAME, APEX_VALUE)], ttl=60)
    added = wait_until(lambda: txt(ask(server, NAME)) == [APEX_VALUE], within=1)
    provider.remove_txt([(NAME, APEX_VALUE)])
    removed = wait_until(lambda: ask(server, NAME).rcode() == dns.rcode.NXDOMAIN, within=1)
    assert added - start < 0.5 and removed - added < 0.5


def test_the_soa_serial_changes_with_the_records(server, provider):
    first = ask(server, ZONE, "SOA").answer[0][0].serial
    provider.add_txt([(NAME, APEX_VALUE)], ttl=60)
    wait_until(lambda: ask(server, ZONE, "SOA").answer[0][0].serial != first)
    provider.remove_txt([(NAME, APEX_VALUE)])
    wait_until(lambda: ask(server, ZONE, "SOA").answer[0][0].serial == first)  # same content


def test_with_cache_ms_zero_a_write_is_served_by_the_next_query(engine):
    with DnsServer(engine, [("127.0.0.1", 0)], cache_ms=0) as server:
        host, port = server.addresses[0]
        provider = BuiltinProvider(ZONE, {"_engine": engine, "listen": f"{host}:{port}"})
        provider.add_txt([(NAME, APEX_VALUE)], ttl=60)
        assert txt(ask(server, NAME)) == [APEX_VALUE]
        provider.remove_txt([(NAME, APEX_VALUE)])
        assert ask(server, NAME).rcode() == dns.rcode.NXDOMAIN


def test_a_second_server_process_on_the_same_database_answers_the_same(server, provider, tmp_path):
    port = free_port()
    script = ("import sys, sqlalchemy; from webapp.dns.builtin.serving import serve; "
              "serve(sqlalchemy.create_engine(sys.argv[1]), sys.argv[2], cache_ms=20)")
    proc = subprocess.Popen([sys.executable, "-c", script, str(provider.engine.url),
                             f"127.0.0.1:{port}"], cwd=Path(__file__).parents[3],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    other = ("127.0.0.1", port)
    try:
        def answers():
            try:
                return ask(other, ZONE, "SOA").rcode() == dns.rcode.NOERROR
            except (dns.exception.Timeout, OSError):
                return False
        wait_until(answers, within=10)
        provider.add_txt([(NAME, APEX_VALUE), (NAME, WILDCARD_VALUE)], ttl=60)
        for each in (server, other):
            wait_until(lambda: len(txt(ask(each, NAME))) == 2)
        assert ask(server, ZONE, "SOA").answer == ask(other, ZONE, "SOA").answer
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert proc.returncode == 0, output


def test_a_wildcard_listener_replies_from_the_address_that_was_asked(engine):
    with DnsServer(engine, [("0.0.0.0", 0), ("::1", 0)], rate_limit=0) as server:
        port4, port6 = server.addresses[0][1], server.addresses[1][1]
        for host, port in [("127.0.0.1", port4), ("127.0.0.3", port4), ("::1", port6)]:
            reply = dns.query.udp(dns.message.make_query(ZONE, "SOA"), host, port=port,
                                  timeout=2)  # dnspython rejects replies from another address
            assert reply.answer, host


# -- a real resolver in front ----------------------------------------------------------------

@pytest.mark.lab
def test_unbound_resolves_a_txt_through_a_stub_zone_to_the_server(server, provider):
    host, port = server.addresses[0]
    provider.add_txt([(NAME, APEX_VALUE), (NAME, WILDCARD_VALUE)], ttl=60)
    wait_until(lambda: len(txt(ask(server, NAME))) == 2)
    with Unbound(None, extra_stub_zones={ZONE: f"{host}@{port}"}) as unbound:
        assert unbound.txt(NAME) == sorted([APEX_VALUE, WILDCARD_VALUE])
        assert unbound.query(f"nothing.{ZONE}", "TXT").rcode() == dns.rcode.NXDOMAIN
