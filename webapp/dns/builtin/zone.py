"""A builtin zone's settings and the tables it lives in. No Flask here.

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
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.name

from webapp.models import DnsRecord, TechZone

from ..base import normalize_name, parse_host_port

# Core tables: selecting columns by name never touches TechZone.secrets, whose decryption
# would need a Flask app.
ZONES = TechZone.__table__
RECORDS = DnsRecord.__table__

DEFAULT_NEGATIVE_TTL = 5


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

