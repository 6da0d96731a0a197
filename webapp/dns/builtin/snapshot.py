"""What the builtin server serves: load_snapshot reads every zone whose provider is "builtin"
and its records into ready-to-send wire-format answers. No Flask here."""
from __future__ import annotations

import json
import logging
import socket
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable

import dns.exception
import dns.name
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from .zone import RECORDS, ZONES, ZoneConfig, parse_zone_options

log = logging.getLogger(__name__)

EDNS_PAYLOAD = 1232  # what the server advertises and the most it sends over UDP (flag day 2020)
SOA_TTL, NS_TTL, HINFO_TTL = 60, 3600, 3600
SOA_TIMERS = (3600, 600, 86400)  # refresh, retry, expire: informational, nobody transfers
A, NS, SOA, HINFO, TXT, AAAA = 1, 2, 6, 13, 16, 28
_RR_FIXED = struct.Struct("!HHIH")  # after the owner: type, class, ttl, rdlength
_QUESTION_PTR = b"\xc0\x0c"        # the question name always starts at offset 12


@dataclass(frozen=True, slots=True)
class Answer:
    """An RRset ready to send: `wire` holds `count` records owned by the question name."""

    count: int
    wire: bytes
    extra_count: int = 0   # additional section (glue for NS)
    extra: bytes = b""


@dataclass(slots=True)
class Zone:
    """One served zone: answers per owner name (lower-case wire) and type."""

    name: str
    serial: int
    nodes: dict[bytes, dict[int, Answer]]
    empty: frozenset[bytes]   # empty non-terminals: NODATA, not NXDOMAIN
    negative_soa: bytes       # SOA RR after its owner name, TTL = negative TTL


@dataclass(slots=True)
class Snapshot:
    """Everything served, built from one read of the database.

    `responses` caches query[2:] -> response[2:]: given the snapshot, the bytes after the id
    are a function of the query's bytes after the id, so a hit only needs the id put back.
    It lives and dies with the snapshot, so it can never serve older data than the zones.
    """

    zones: dict[bytes, Zone] = field(default_factory=dict)
    fingerprint: object = None
    responses: dict[bytes, bytes] = field(default_factory=dict)


def _wire(name: str) -> bytes:
    """Lower-case wire form of a text name; ValueError if it is not a valid name."""
    name = name.rstrip(".").lower()
    if "\\" in name or not name.isascii():  # escapes, IDN: let dnspython do it
        try:
            return dns.name.from_text(name).canonicalize().to_wire()
        except dns.exception.DNSException as exc:
            raise ValueError(f"{name!r}: {exc}") from None
    wire = b"".join(bytes((len(label),)) + label
                    for label in (name.encode().split(b".") if name else ())) + b"\0"
    if len(wire) > 255 or any(not 0 < len(label) < 64 for label in name.split(".") if name):
        raise ValueError(f"{name!r} is not a valid DNS name")
    return wire


def _ancestors(wire: bytes, apex: bytes) -> list[bytes] | None:
    """Names strictly between `wire` and `apex` (both wire form); None if not inside apex."""
    found, pos = [], 0
    while wire[pos:] != apex:
        if wire[pos] == 0:
            return None
        pos += wire[pos] + 1
        found.append(wire[pos:])
    return found[:-1]


def _rr(owner: bytes, rtype: int, ttl: int, rdata: bytes) -> bytes:
    return owner + _RR_FIXED.pack(rtype, 1, ttl, len(rdata)) + rdata


def _txt_rdata(value: str) -> bytes:
    raw = value.encode()
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return b"".join(bytes((len(c),)) + c for c in chunks)


def _address(ip: str) -> tuple[int, bytes]:
    """(A or AAAA, rdata) of an IP address."""
    if ":" in ip:
        return AAAA, socket.inet_pton(socket.AF_INET6, ip)
    return A, socket.inet_pton(socket.AF_INET, ip)


def build_zone(config: ZoneConfig, records: Iterable[tuple[str, str, int]]) -> Zone:
    """Precompute every answer of one zone from its settings and its (name, value, ttl) rows."""
    apex = _wire(config.name)
    values: dict[bytes, set[str]] = defaultdict(set)
    ttls: dict[bytes, int] = {}
    empty: set[bytes] = set()
    for name, value, ttl in records:
        try:
            owner = _wire(name)
        except ValueError as exc:
            log.warning("builtin DNS: skipping a record in %s: %s", config.name, exc)
            continue
        parents = _ancestors(owner, apex)
        if parents is None:
            continue
        empty.update(parents)
        values[owner].add(value)
        # One TTL per RRset (RFC 2181 5.2): the smallest asked for.
        ttls[owner] = min(ttls.get(owner, 2**31 - 1), max(0, int(ttl or 0)))
    # The serial is a digest of the content: every process on the database agrees on it.
    serial = zlib.crc32("\n".join([config.canonical()] + sorted(
        f"{o.hex()} {ttls[o]} {v}" for o, vs in values.items() for v in vs)).encode()) or 1

    nodes: dict[bytes, dict[int, Answer]] = defaultdict(dict)
    soa_rdata = (_wire(config.nameservers[0]) + _wire(config.hostmaster)
                 + struct.pack("!IIIII", serial, *SOA_TIMERS, config.negative_ttl))
    nodes[apex][SOA] = Answer(1, _rr(_QUESTION_PTR, SOA, SOA_TTL, soa_rdata))
    glue_count, glue = 0, b""
    for host, ips in config.addresses.items():
        host_wire = _wire(host)
        parents = _ancestors(host_wire, apex)
        if parents is None:
            continue  # addresses only for names we are authoritative for
        empty.update(parents)
        by_type: dict[int, list[bytes]] = defaultdict(list)
        for ip in ips:
            rtype, rdata = _address(ip)
            by_type[rtype].append(rdata)
            if host in config.nameservers:
                glue_count, glue = glue_count + 1, glue + _rr(host_wire, rtype, NS_TTL, rdata)
        for rtype, rdatas in by_type.items():  # the name's own A/AAAA answers
            nodes[host_wire][rtype] = Answer(
                len(rdatas), b"".join(_rr(_QUESTION_PTR, rtype, NS_TTL, r) for r in rdatas))
    nodes[apex][NS] = Answer(
        len(config.nameservers),
        b"".join(_rr(_QUESTION_PTR, NS, NS_TTL, _wire(ns)) for ns in config.nameservers),
        glue_count, glue)
    for owner, vals in values.items():
        nodes[owner][TXT] = Answer(len(vals), b"".join(
            _rr(_QUESTION_PTR, TXT, ttls[owner], _txt_rdata(v)) for v in sorted(vals)))
    negative_ttl = min(SOA_TTL, config.negative_ttl)  # RFC 2308 section 3
    return Zone(config.name, serial, dict(nodes), frozenset(empty - nodes.keys()),
                _RR_FIXED.pack(SOA, 1, negative_ttl, len(soa_rdata)) + soa_rdata)


def read_fingerprint(engine: Engine) -> tuple:
    """A cheap summary that changes whenever records or builtin zones change."""
    with engine.connect() as conn:
        # Rows are only ever inserted and deleted. An insert raises max(id) or, where SQLite
        # hands out the id of a just-deleted newest row again, max(created_at); a delete
        # lowers the count; sum(id) catches a delete and an insert in one interval.
        records = tuple(conn.execute(select(
            func.count(RECORDS.c.id), func.max(RECORDS.c.id), func.sum(RECORDS.c.id),
            func.max(RECORDS.c.created_at))).one())
        zones = tuple((name, json.dumps(options, sort_keys=True)) for name, options in
                      conn.execute(select(ZONES.c.name, ZONES.c.options)
                                   .where(ZONES.c.provider == "builtin")
                                   .order_by(ZONES.c.name)))
    return records, zones


def load_snapshot(engine: Engine, fingerprint: tuple | None = None) -> Snapshot:
    """Read the builtin zones and their records into a Snapshot (fingerprint read first)."""
    fingerprint = fingerprint or read_fingerprint(engine)
    snapshot = Snapshot(fingerprint=fingerprint)
    _, zone_rows = fingerprint
    if not zone_rows:
        return snapshot
    with engine.connect() as conn:
        rows = conn.execute(select(RECORDS.c.zone, RECORDS.c.name, RECORDS.c.value,
                                   RECORDS.c.ttl)
                            .where(RECORDS.c.zone.in_([name for name, _ in zone_rows]))).all()
    by_zone: dict[str, list] = defaultdict(list)
    for zone, name, value, ttl in rows:
        by_zone[zone].append((name, value, ttl))
    for name, options in zone_rows:
        try:
            config = parse_zone_options(name, json.loads(options))
            snapshot.zones[_wire(name)] = build_zone(config, by_zone.get(name, ()))
        except ValueError as exc:
            log.error("builtin DNS: not serving zone %s: %s", name, exc)
    return snapshot


# RFC 8482 4.2: answer ANY with one synthesized HINFO "RFC8482" "".
ANY_ANSWER = Answer(1, _rr(_QUESTION_PTR, HINFO, HINFO_TTL, b"\x07RFC8482\x00"))