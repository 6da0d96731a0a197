"""The builtin zones' data. BuiltinProvider writes TXT values to SSL Manager's own database
(sslm_dns_record); load_snapshot reads every zone whose provider is "builtin" back into
ready-to-send wire-format answers for SSL Manager's own DNS server (webapp.dns.server).
No Flask here: both are handed an SQLAlchemy Engine.

Zone settings (sslm_tech_zone.options) may be JSON-typed or the form's text, both accepted:
    nameservers  ["ns1.example.net", ...] or "ns1.example.net, ns2.example.net"
                 (default: ns1.<zone>)
    hostmaster   "hostmaster.<zone>" (an e-mail address is turned into SOA form)
    addresses    {"ns1.<zone>": ["192.0.2.1", "2001:db8::1"]} or
                 "ns1.<zone>=192.0.2.1 2001:db8::1; ns2.<zone>=192.0.2.2"
                 glue A/AAAA, served for in-zone nameserver names only
    negative_ttl seconds resolvers may cache "no such record" (SOA minimum, default 5)
    listen       "127.0.0.1:5353, [::1]:5353": where our server answers; health() asks it
                 and authoritative_servers() returns it for the propagation poll
"""
from __future__ import annotations

import ipaddress
import json
import logging
import socket
import struct
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
from sqlalchemy import delete, func, insert, select, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from webapp.models import DnsRecord, TechZone

from .base import DnsProvider, Health, ProviderOption, normalize_name, parse_host_port, register

log = logging.getLogger(__name__)

# Core tables: selecting columns by name never touches TechZone.secrets, whose decryption
# would need a Flask app.
ZONES = TechZone.__table__
RECORDS = DnsRecord.__table__

DEFAULT_NEGATIVE_TTL = 5
MAX_TTL = 2**31 - 1


@dataclass(frozen=True)
class ZoneConfig:
    """A builtin zone's settings, normalised: what the server needs to build SOA, NS and glue."""

    name: str
    nameservers: list[str]
    hostmaster: str
    addresses: dict[str, list[str]] = field(default_factory=dict)
    negative_ttl: int = DEFAULT_NEGATIVE_TTL

    def canonical(self) -> str:
        """Stable text of the settings (part of the content the SOA serial is derived from)."""
        return json.dumps([self.name, self.nameservers, self.hostmaster, self.addresses,
                           self.negative_ttl], sort_keys=True)


def _split(text: str) -> list[str]:
    return [part for part in text.replace(",", " ").split() if part]


def parse_zone_options(zone: str, options: dict[str, Any] | None) -> ZoneConfig:
    """ZoneConfig from sslm_tech_zone.options (JSON or form text); ValueError names the key."""
    zone = normalize_name(zone)
    options = options or {}
    nameservers = options.get("nameservers") or [f"ns1.{zone}"]
    if isinstance(nameservers, str):
        nameservers = _split(nameservers)
    nameservers = [normalize_name(ns) for ns in nameservers if normalize_name(ns)]
    for ns in nameservers:
        _check_name(ns, "nameservers")
    hostmaster = normalize_name(str(options.get("hostmaster") or f"hostmaster.{zone}"))
    if "@" in hostmaster:  # hostmaster@example.net -> hostmaster.example.net (SOA RNAME)
        local, _, domain = hostmaster.partition("@")
        escaped = local.replace(".", "\\.")  # a dot in the mailbox part is escaped in RNAME
        hostmaster = f"{escaped}.{domain}"
    _check_name(hostmaster, "hostmaster")
    addresses = options.get("addresses") or {}
    if isinstance(addresses, str):
        parsed: dict[str, list[str]] = {}
        for item in addresses.replace("\n", ";").split(";"):
            if item.strip():
                host, sep, ips = item.partition("=")
                if not sep:
                    raise ValueError(f"addresses: {item.strip()!r} is not name=ip ...")
                parsed[host] = _split(ips)
        addresses = parsed
    if not isinstance(addresses, dict):
        raise ValueError("addresses: expected a mapping of name to IP addresses")
    glue: dict[str, list[str]] = {}
    for host, ips in addresses.items():
        host = normalize_name(host)
        _check_name(host, "addresses")
        if isinstance(ips, str):
            ips = _split(ips)
        try:
            glue[host] = [str(ipaddress.ip_address(ip)) for ip in ips]
        except ValueError as exc:
            raise ValueError(f"addresses: {exc}") from None
    try:
        negative_ttl = int(options.get("negative_ttl") or DEFAULT_NEGATIVE_TTL)
    except (TypeError, ValueError):
        raise ValueError("negative_ttl: expected a number of seconds") from None
    return ZoneConfig(zone, nameservers, hostmaster, glue,
                      max(0, min(negative_ttl, 86400)))


def _check_name(name: str, key: str) -> None:
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise ValueError(f"{key}: {name!r} is not a valid DNS name ({exc})") from None


def parse_listen(text: str) -> list[tuple[str, int]]:
    """'127.0.0.1:5353, [::1]:5353' -> [(host, port), ...] (port defaults to 53)."""
    return [parse_host_port(part) for part in (text or "").split(",") if part.strip()]


def _reachable(host: str) -> str:
    """The address to query for a listen address: a wildcard means 'this host'."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


@register
class BuiltinProvider(DnsProvider):
    """Writes TXT values into SSL Manager's database; the builtin DNS server serves them.

    Besides the zone and its options the provider needs the database: pass the SQLAlchemy
    Engine as options["_engine"] (it is not a setting, so it is never shown or stored).
    """

    name = "builtin"
    label = "Builtin DNS server (SSL Manager serves the zone itself)"
    options = (
        ProviderOption("listen", "Server address(es)",
                       help="Where `sslmanager dns serve` answers, as host:port, comma "
                            "separated; used for the health check and the propagation poll."),
        ProviderOption("nameservers", "Nameserver names",
                       help="NS names the zone is delegated to, comma separated "
                            "(default ns1.<zone>)."),
        ProviderOption("hostmaster", "Hostmaster", help="SOA contact (default hostmaster.<zone>)."),
        ProviderOption("addresses", "Glue addresses",
                       help="For nameservers inside the zone: name=ip ip; name2=ip"),
        ProviderOption("negative_ttl", "Negative TTL", default=str(DEFAULT_NEGATIVE_TTL),
                       help="Seconds a resolver may cache 'no such record'."),
    )

    def __init__(self, zone: str, options: dict[str, Any], **kw):
        options = dict(options)
        engine = options.pop("_engine", None)
        # The zone row stores lists/mappings as JSON; the base class wants text per option.
        for key in ("nameservers", "addresses"):
            if isinstance(options.get(key), list):
                options[key] = ", ".join(options[key])
            elif isinstance(options.get(key), dict):
                options[key] = "; ".join(
                    f"{host}={' '.join(ips if isinstance(ips, list) else [ips])}"
                    for host, ips in options[key].items())
        options = {k: v if isinstance(v, str) else str(v) for k, v in options.items()
                   if v is not None}
        super().__init__(zone, options, **kw)
        if not isinstance(engine, Engine):
            raise self.error("no database engine given (options['_engine'])")
        self.engine = engine
        self.listen = parse_listen(self.settings["listen"])

    @classmethod
    def validate_options(cls, options: dict[str, str]) -> dict[str, str]:
        errors = super().validate_options(options)
        try:
            parse_listen(options.get("listen", ""))
        except ValueError as exc:
            errors["listen"] = f"Use host:port, comma separated, e.g. 127.0.0.1:5353 ({exc})."
        try:
            parse_zone_options("example.invalid", options)
        except ValueError as exc:
            key, _, message = str(exc).partition(": ")
            errors[key if key in {o.name for o in cls.options} else "nameservers"] = message
        return errors

    # -- interface -----------------------------------------------------------------------

    def add_txt(self, records: list[tuple[str, str]], ttl: int, *,
                certificate_id: int | None = None) -> None:
        """Insert every value missing at its name, in one transaction (add, never replace)."""
        records = list(dict.fromkeys(self.check_in_zone(records)))
        if not records:
            return
        ttl = max(0, min(int(ttl), MAX_TTL))
        try:
            with self.engine.begin() as conn:
                present = set(conn.execute(
                    select(RECORDS.c.name, RECORDS.c.value).where(
                        RECORDS.c.zone == self.zone,
                        RECORDS.c.name.in_({name for name, _ in records}))).all())
                rows = [{"zone": self.zone, "name": name, "value": value, "ttl": ttl,
                         "certificate_id": certificate_id}
                        for name, value in records if (name, value) not in present]
                if rows:
                    conn.execute(insert(RECORDS), rows)
        except SQLAlchemyError as exc:
            raise self._db_error("add TXT records", exc) from None

    def remove_txt(self, records: list[tuple[str, str]]) -> None:
        """Delete the rows of exactly these (name, value) pairs; absent ones are no error."""
        records = list(dict.fromkeys(self.check_in_zone(records)))
        if not records:
            return
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(RECORDS).where(
                    RECORDS.c.zone == self.zone,
                    tuple_(RECORDS.c.name, RECORDS.c.value).in_(records)))
        except SQLAlchemyError as exc:
            raise self._db_error("remove TXT records", exc) from None

    def list_txt(self) -> dict[str, list[str]]:
        """Every name in the zone's records -> its values, as the server would serve them."""
        found: dict[str, set[str]] = defaultdict(set)
        try:
            with self.engine.connect() as conn:
                for name, value in conn.execute(select(RECORDS.c.name, RECORDS.c.value)
                                                .where(RECORDS.c.zone == self.zone)):
                    found[name].add(value)
        except SQLAlchemyError as exc:
            raise self._db_error("list TXT records", exc) from None
        return {name: sorted(values) for name, values in sorted(found.items())}

    def health(self) -> Health:
        """The zone row exists with provider builtin, and each listen address answers its SOA."""
        try:
            with self.engine.connect() as conn:
                row = conn.execute(select(ZONES.c.provider, ZONES.c.options)
                                   .where(ZONES.c.name == self.zone)).first()
        except SQLAlchemyError as exc:
            return Health(False, str(self._db_error("read the zone", exc)))
        if row is None:
            return Health(False, f"{self.name}: zone {self.zone} is not in the database; "
                                 "add it as a technical zone first.")
        if row.provider != self.name:
            return Health(False, f"{self.name}: zone {self.zone} is set to provider "
                                 f"{row.provider!r}, so the builtin server does not serve it.")
        try:
            parse_zone_options(self.zone, row.options)
        except ValueError as exc:
            return Health(False, f"{self.name}: zone {self.zone} has invalid settings ({exc}).")
        if not self.listen:
            return Health(True, f"{self.name}: zone {self.zone} is served from the database "
                                "(no server address set, so none was asked).")
        problems, serials = [], []
        for host, port in self.listen:
            try:
                serials.append(self._soa_serial(_reachable(host), port))
            except Exception as exc:  # every failure is reported, none is fatal here
                problems.append(f"{host}:{port} {exc}")
        if problems:
            return Health(False, f"{self.name}: zone {self.zone}: " + "; ".join(problems)
                          + ". Start it with `sslmanager dns serve --listen ADDR:PORT`.")
        where = ", ".join(f"{h}:{p}" for h, p in self.listen)
        return Health(True, f"{self.name}: zone {self.zone} is served at {where} "
                            f"(SOA serial {', '.join(map(str, sorted(set(serials))))}).")

    def authoritative_servers(self) -> list[tuple[str, int]]:
        """The listen addresses (a wildcard becomes loopback): poll these after a write."""
        return [(_reachable(host), port) for host, port in self.listen]

    # -- helpers -------------------------------------------------------------------------

    def _soa_serial(self, host: str, port: int) -> int:
        """The SOA serial the server at host:port answers for the zone; raise with the reason."""
        query = dns.message.make_query(self.zone, dns.rdatatype.SOA)
        try:
            reply, _ = dns.query.udp_with_fallback(query, host, port=port, timeout=self.timeout)
        except dns.exception.Timeout:
            raise RuntimeError("does not answer (timeout)") from None
        except OSError as exc:
            raise RuntimeError(f"cannot be reached ({exc.strerror or exc})") from None
        if reply.rcode() != dns.rcode.NOERROR:
            raise RuntimeError(f"answered {dns.rcode.to_text(reply.rcode())} for the SOA")
        if not reply.flags & dns.flags.AA or not reply.answer:
            raise RuntimeError("answered without an authoritative SOA")
        return reply.answer[0][0].serial

    def _db_error(self, step: str, exc: SQLAlchemyError):
        # The driver's first line only: full statements may be long and carry values.
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return self.error(f"database error: {detail}", step=step,
                          hint="Check that the database is reachable and migrated.")


# -- what the server serves: the zones read into ready-to-send answers ------------------------

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
