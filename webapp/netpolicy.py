"""Where SSL Manager may connect: the one outbound-address policy every connection goes
through (ACME, webhooks, SMTP, DNS servers and APIs, delegation lookups, the deploy probe).

A host is resolved once and every address it has is judged; the caller then connects to the
address that was judged, never to a second lookup's answer (a DNS answer that changes in
between, rebinding, has nothing to change). An address that embeds an IPv4 address
(IPv4-mapped, IPv4-compatible, NAT64, 6to4) is judged by that IPv4 address as well, so
`64:ff9b::a9fe:a9fe` is the metadata address it reaches. No Flask here: services/addresses.py
builds the policy from the app's settings.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Never a legitimate target, whatever the settings or allow-lists say: link-local (where cloud
# metadata lives), the cloud metadata addresses outside it, and multicast.
ALWAYS_REFUSED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(net), why) for net, why in (
        ("169.254.0.0/16", "link-local or cloud-metadata"),
        ("fe80::/10", "link-local or cloud-metadata"),
        ("fd00:ec2::254/128", "link-local or cloud-metadata"),      # AWS, over IPv6
        ("100.100.100.200/32", "link-local or cloud-metadata"),     # Alibaba Cloud
        ("224.0.0.0/4", "multicast"),
        ("ff00::/8", "multicast"),
    ))

# Internal on top of what Python's ipaddress calls not global (loopback, RFC 1918, ULA, ...):
# ranges it leaves out or that a version of it counts as global.
EXTRA_PRIVATE: tuple[Network, ...] = tuple(ipaddress.ip_network(net) for net in (
    "0.0.0.0/8", "100.64.0.0/10",            # "this network" (0.0.0.0 reaches localhost), carrier-grade NAT
    "fec0::/10", "64:ff9b:1::/48",           # deprecated site-local, local-use NAT64 (RFC 8215)
    "::/96",                                 # IPv4-compatible (deprecated): never a real host
))
NAT64 = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
COMPATIBLE = ipaddress.ip_network("::/96")

# purpose -> the setting that allows internal addresses for it, and words for messages.
PURPOSES: dict[str, tuple[str, str]] = {
    "acme": ("SSLMANAGER_OUTBOUND_ALLOW_ACME", "a CA"),
    "webhook": ("SSLMANAGER_OUTBOUND_ALLOW_WEBHOOK", "a webhook receiver"),
    "smtp": ("SSLMANAGER_OUTBOUND_ALLOW_SMTP", "an SMTP server"),
    "dns": ("SSLMANAGER_OUTBOUND_ALLOW_DNS", "a DNS server or DNS API"),
    "deploy": ("SSLMANAGER_OUTBOUND_ALLOW_DEPLOY", "a deploy probe target"),
    "oidc": ("SSLMANAGER_OUTBOUND_ALLOW_OIDC", "an OpenID Provider"),
}


def embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (mapped, compatible, NAT64, 6to4)."""
    if address.version == 4:
        return []
    found = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped:
        found.append(address.ipv4_mapped)
    if address in NAT64 or address in COMPATIBLE:
        found.append(low32)
    if address in NAT64_LOCAL:
        # RFC 6052 with a /48 prefix: octets 6-7 and 9-10 hold the IPv4 address; the /96 form
        # in the last 32 bits is judged too (a translator may use either).
        raw = address.packed
        found += [ipaddress.IPv4Address(raw[6:8] + raw[9:11]), low32]
    if address.sixtofour:
        found.append(address.sixtofour)
    if address.teredo:
        found.append(address.teredo[1])
    return found


def classify(address: Address) -> tuple[str, Address, str]:
    """("refused" | "private" | "public", the address that decided, why) for one address; the
    worst verdict of the address itself and every IPv4 address it embeds."""
    verdict: tuple[str, Address, str] = ("public", address, "")
    for candidate in [*embedded_ipv4(address), address]:  # the IPv4 inside names the reason best
        for net, why in ALWAYS_REFUSED:
            if candidate.version == net.version and candidate in net:
                return "refused", candidate, why
        if verdict[0] == "public" and (not candidate.is_global or any(
                candidate.version == net.version and candidate in net for net in EXTRA_PRIVATE)):
            verdict = ("private", candidate, "private")
    return verdict


def parse_networks(values: Iterable[str], setting: str) -> tuple[Network, ...]:
    """CIDRs of an allow-list setting; ValueError naming the setting and the bad entry."""
    networks = []
    for value in values or ():
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{setting}: {value!r} is not an address or CIDR ({exc})") from None
    return tuple(networks)


@dataclass(frozen=True)
class OutboundPolicy:
    """Private and loopback addresses are refused unless `allow_private`, or unless the
    purpose's allow-list holds them; ALWAYS_REFUSED ranges are refused regardless."""

    allow_private: bool = False
    allow: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)

    def address_problem(self, address: Address | str, purpose: str, *, host: str = "",
                        what: str | None = None) -> str | None:
        """Why SSL Manager may not connect to `address` for `purpose` (None: it may)."""
        address = ipaddress.ip_address(address) if isinstance(address, str) else address
        setting, default_what = PURPOSES[purpose]
        what = what or default_what
        shown = host or str(address)
        kind, decided_by, why = classify(address)
        inner = f" (it stands for {decided_by})" if decided_by != address else ""
        if kind == "refused":
            return f"{shown} is a {why} address ({address}){inner}; that is never {what}."
        allowed = self.allow.get(purpose, ())
        if kind == "private" and not self.allow_private and not any(
                candidate.version == net.version and candidate in net for net in allowed
                for candidate in (address, *embedded_ipv4(address))):
            return (f"{shown} resolves to a private address ({address}){inner}. To allow "
                    f"{what} there, add it to {setting} (a list of CIDRs), or set "
                    "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES=true for every purpose.")
        return None

    def resolve(self, host: str, purpose: str, *, what: str | None = None,
                port: int | None = None) -> tuple[str | None, str | None]:
        """Resolve `host` once and judge every address: (the address to connect to, None), or
        (None, why not), or (None, None) when the name does not resolve (the caller says so in
        its own words). Inet_aton forms (2130706433, 0177.0.0.1, 0x7f.1, 127.1) and trailing
        dots are resolved as the connection would resolve them."""
        host = (host or "").strip().removeprefix("[").removesuffix("]")
        try:
            addresses: list[Address] = [ipaddress.ip_address(host.split("%")[0])]
        except ValueError:
            host = host.rstrip(".")  # "name." is the same name; glibc's hosts file knows no dots
            try:
                infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
            except (OSError, UnicodeError, ValueError):
                return None, None
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0])
                                           for info in infos))
        if not addresses:
            return None, None
        for address in addresses:
            problem = self.address_problem(address, purpose, host=host, what=what)
            if problem:
                return None, problem
        return str(addresses[0]), None

    def judge_url(self, url: str, purpose: str, *, what: str | None = None
                  ) -> tuple[str | None, str | None]:
        """resolve() for a URL's host (a netguard Judge when bound to a purpose)."""
        try:
            host = urlsplit(url).hostname or ""
        except ValueError:
            return None, f"{url!r} is not a URL"
        return self.resolve(host, purpose, what=what)

    def judge(self, purpose: str, *, what: str | None = None):
        """A netguard Judge (url -> (address, problem)) for one purpose."""
        return lambda url: self.judge_url(url, purpose, what=what)


# Library use without an app (the dns package's own tests, a script): internal addresses
# allowed, ALWAYS_REFUSED still refused. The app always passes the policy its settings make.
PERMISSIVE = OutboundPolicy(allow_private=True)
