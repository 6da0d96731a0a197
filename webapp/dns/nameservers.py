"""Is the technical zone delegated? The parent's NS records for it and whether each name
server answers its SOA authoritatively (and with one serial). No Flask here."""
from __future__ import annotations

from collections.abc import Callable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from .base import normalize_name
from .checks import LookupFailed, lookup, make_resolver, rrset_of

AddressCheck = Callable[[str], "str | None"]  # an IP address -> why not to ask it, or None


def zone_delegation(zone: str, resolvers: list[str] | None = None, *, port: int = 53,
                    timeout: float = 3.0, address_check: AddressCheck | None = None) -> dict:
    """The parent's NS records for zone and, per NS host, whether it answers the SOA with AA.

    `port` is where the NS hosts are asked directly (53 in the real world). The addresses
    come from DNS answers, so each is put to `address_check` (the outbound policy) before
    it is asked; a refused one is reported, never queried.
    Returns {"zone", "parent", "source", "ns": [host], "servers": [{"host", "addresses",
    "authoritative", "serial", "message"}], "ok", "message"}.
    """
    zone = normalize_name(zone)
    resolver = make_resolver(resolvers, timeout)
    result = {"zone": zone, "parent": "", "source": "", "ns": [], "servers": [], "ok": False,
              "message": ""}
    try:
        ns, glue, parent, source = _parent_ns(resolver, zone, port, timeout, address_check)
    except LookupFailed as exc:
        result["message"] = f"Could not look up the name servers of {zone}: {exc}."
        return result
    result.update(parent=parent, source=source, ns=ns)
    if not ns:
        result["message"] = (f"{zone} is not delegated: no NS records for it "
                             f"({source}). Ask the parent zone's operator to add them.")
        return result
    for host in ns:
        result["servers"].append(_check_ns_host(resolver, zone, host, glue.get(host), port,
                                                timeout, address_check))
    good = [s for s in result["servers"] if s["authoritative"]]
    serials = {s["serial"] for s in good}
    result["ok"] = len(good) == len(ns) and len(serials) == 1
    if result["ok"]:
        result["message"] = (f"{zone} is delegated to {', '.join(ns)}; all answer "
                             f"authoritatively (serial {serials.pop()}).")
    elif len(good) < len(ns):
        lame = [s["host"] for s in result["servers"] if not s["authoritative"]]
        verb = "does" if len(lame) == 1 else "do"
        result["message"] = (f"{zone} is delegated to {', '.join(ns)}, but {', '.join(lame)} {verb} "
                             "not answer for it authoritatively (lame delegation).")
    else:
        result["message"] = (f"{zone}: the name servers answer with different SOA serials "
                             f"({', '.join(str(s) for s in sorted(serials))}): zone transfers "
                             "lag behind.")
    return result


def authoritative_servers(name: str, resolvers: list[str] | None = None, *, port: int = 53,
                          timeout: float = 3.0, address_check: AddressCheck | None = None
                          ) -> tuple[str, list[tuple[str, str]], str]:
    """(zone, [(NS host, address)], problem) for the zone that holds `name`: found the way the
    delegation check finds a zone's servers (the parent's NS records, else the resolver's).
    Addresses the outbound policy refuses are left out and said in `problem` when none is left."""
    resolver = make_resolver(resolvers, timeout)
    try:
        zone = normalize_name(dns.resolver.zone_for_name(name, resolver=resolver,
                                                          lifetime=timeout).to_text())
        ns, glue, _parent, source = _parent_ns(resolver, zone, port, timeout, address_check)
    except (dns.exception.DNSException, LookupFailed) as exc:
        return "", [], f"could not find the name servers of the zone holding {name}: {exc}"
    servers, refused = [], []
    for host in ns:
        for address in glue.get(host) or _addresses(resolver, host):
            why = address_check(address) if address_check else None
            if why:
                refused.append(f"{host} ({address}): {why}")
            else:
                servers.append((host, address))
    if servers:
        return zone, servers, ""
    if refused:
        return zone, [], f"no name server of {zone} may be asked: {'; '.join(refused)}"
    return zone, [], f"no name server of {zone} has an address ({source})"


def _parent_ns(resolver, zone: str, port: int, timeout: float,
               address_check: AddressCheck | None = None):
    """(ns hosts, glue, parent zone, source): from the parent's servers, else the resolver."""
    parent_name = dns.name.from_text(zone).parent()
    why = ""
    try:
        parent = dns.resolver.zone_for_name(parent_name, resolver=resolver, lifetime=timeout)
        parent_text = normalize_name(parent.to_text())
        reply = lookup(resolver, parent_text, "NS")
        rrset = rrset_of(reply, reply.answer, parent_text, "NS") if reply else None
        for rr in rrset or []:
            for address in _addresses(resolver, normalize_name(rr.target.to_text())):
                if address_check and address_check(address):
                    continue  # the parent's server is somewhere we do not connect
                query = dns.message.make_query(zone, dns.rdatatype.NS)
                query.flags &= ~dns.flags.RD
                try:
                    answer, _ = dns.query.udp_with_fallback(query, address, port=port,
                                                            timeout=timeout)
                except (OSError, dns.exception.DNSException):
                    continue
                if answer.rcode() == dns.rcode.NXDOMAIN:
                    return [], {}, parent_text, f"the parent {parent_text} says NXDOMAIN"
                ns = (rrset_of(answer, answer.authority, zone, "NS")
                      or rrset_of(answer, answer.answer, zone, "NS"))
                if ns is not None:
                    return (*_ns_and_glue(answer, ns), parent_text,
                            f"asked {parent_text} server {address}")
        why = f"no server of {parent_text} answered"
    except (dns.exception.DNSException, LookupFailed) as exc:
        why = f"parent zone not found: {exc}"
    # Fall back to the zone's own NS set as the resolver sees it.
    reply = lookup(resolver, zone, "NS")
    if reply is None:
        return [], {}, "", f"{zone} does not exist (NXDOMAIN)"
    ns = rrset_of(reply, reply.answer, zone, "NS") or rrset_of(reply, reply.authority, zone, "NS")
    if ns is None:
        return [], {}, "", f"resolver: no NS at {zone}"
    hosts, glue = _ns_and_glue(reply, ns)
    return hosts, glue, "", f"resolver's answer ({why})"


def _ns_and_glue(reply: dns.message.Message, ns) -> tuple[list[str], dict[str, list[str]]]:
    hosts = sorted(normalize_name(rr.target.to_text()) for rr in ns)
    glue: dict[str, list[str]] = {}
    for rrset in reply.additional:
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
            glue.setdefault(normalize_name(rrset.name.to_text()), []).extend(
                rr.address for rr in rrset)
    return hosts, glue


def _addresses(resolver, host: str) -> list[str]:
    """A and AAAA addresses of host (empty if it has none)."""
    found = []
    for rdtype in ("A", "AAAA"):
        try:
            reply = lookup(resolver, host, rdtype)
        except LookupFailed:
            continue
        for rrset in reply.answer if reply else []:
            if rrset.rdtype == dns.rdatatype.RdataType.make(rdtype):
                found += [rr.address for rr in rrset]
    return found


def _check_ns_host(resolver, zone: str, host: str, glue: list[str] | None, port: int,
                   timeout: float, address_check: AddressCheck | None = None) -> dict:
    """Ask one NS host directly for the zone's SOA; AA set and an SOA back means it serves it."""
    entry = {"host": host, "addresses": glue or _addresses(resolver, host),
             "authoritative": False, "serial": None, "message": ""}
    if not entry["addresses"]:
        entry["message"] = f"{host} has no address."
        return entry
    notes, answered = [], 0
    for address in entry["addresses"]:
        refused = address_check(address) if address_check else None
        if refused:
            notes.append(f"{address}: not asked ({refused})")
            continue
        query = dns.message.make_query(zone, dns.rdatatype.SOA)
        query.flags &= ~dns.flags.RD
        try:
            reply, _ = dns.query.udp_with_fallback(query, address, port=port, timeout=timeout)
        except dns.exception.Timeout:
            notes.append(f"{address}: no answer (timeout)")
            continue
        except (OSError, dns.exception.DNSException) as exc:
            notes.append(f"{address}: {exc}")
            continue
        soa = rrset_of(reply, reply.answer, zone, "SOA")
        if reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA and soa:
            answered += 1
            entry["serial"] = soa[0].serial
            notes.append(f"{address}: authoritative, serial {soa[0].serial}")
        else:
            aa = "AA" if reply.flags & dns.flags.AA else "not authoritative"
            notes.append(f"{address}: {dns.rcode.to_text(reply.rcode())}, {aa}")
    entry["authoritative"] = answered == len(entry["addresses"])
    entry["message"] = "; ".join(notes)
    return entry
