"""DNS checks for the pages and the issuance service: the customer's CNAME delegation, stale
TXT records, CAA, and propagation of new TXT values (the technical zone's own delegation is
in nameservers.py).

Resolvers are given as "ip" or "ip:port" strings; None means the system resolver. Every
result carries a message worded for the operator and, where something is wrong, a fix.
"""
from __future__ import annotations

import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.nameserver
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from webapp.errors import DnsError

from .base import normalize_name, parse_host_port

PREFIX = "DNS check"
MAX_CHAIN = 8  # CNAME hops we follow before calling it a loop

# Propagation polling: start fast (a primary answers within milliseconds), back off to 0.5 s.
FIRST_POLL = 0.01
MAX_POLL = 0.5

CAA_KNOWN_TAGS = {"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail",
                  "issuevmc"}


class LookupFailed(Exception):
    """A lookup got no usable answer (timeout, SERVFAIL, refused); str() has the words."""


@dataclass
class CnameCheck:
    """Where _acme-challenge.<domain> points, judged against the expected target."""

    domain: str
    name: str
    expected: str
    status: str  # ok, missing, nxdomain, elsewhere, chain, wildcard, error
    found: str
    message: str
    fix: str

    @property
    def ok(self) -> bool:
        """True when DNS-01 through the technical zone will work (a chain to us counts)."""
        return self.status == "ok" or (self.status == "chain"
                                       and self.found.endswith(f"-> {self.expected}"))


@dataclass
class CaaCheck:
    """Whether CAA lets the CA issue for the domain (RFC 8659)."""

    domain: str
    ok: bool
    records: list[str] = field(default_factory=list)
    message: str = ""
    fix: str = ""


# -- resolver plumbing -------------------------------------------------------------------------

def make_resolver(resolvers: list[str] | None, timeout: float) -> dns.resolver.Resolver:
    """A non-caching resolver for the given "ip[:port]" strings (None: the system's)."""
    if resolvers is None:
        resolver = dns.resolver.Resolver()
    else:
        resolver = dns.resolver.Resolver(configure=False)
        servers = []
        for text in resolvers:
            try:
                host, port = parse_host_port(text)
            except ValueError as exc:
                raise DnsError(f"{PREFIX}: bad resolver address {text!r}: {exc}") from None
            servers.append(dns.nameserver.Do53Nameserver(host, port))
        if not servers:
            raise DnsError(f"{PREFIX}: no resolver given")
        resolver.nameservers = servers
    resolver.cache = None
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    return resolver


def lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> dns.message.Message | None:
    """The resolver's reply for name/rdtype, or None for NXDOMAIN; LookupFailed otherwise."""
    try:
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoNameservers as exc:
        raise LookupFailed(_no_nameservers_words(exc, name, rdtype)) from None
    except dns.exception.Timeout:
        raise LookupFailed(f"no answer for {name} {rdtype} within {resolver.lifetime:g} s "
                            "(timeout)") from None
    except dns.exception.DNSException as exc:
        raise LookupFailed(f"looking up {name} {rdtype} failed: {exc}") from None
    return answer.response


def _no_nameservers_words(exc: dns.resolver.NoNameservers, name: str, rdtype: str) -> str:
    """'127.0.0.1:53 answered SERVFAIL' rather than dnspython's long sentence."""
    said = []
    for error in exc.kwargs.get("errors", []):  # (server, tcp, port, error, response)
        server = str(error[0]).removeprefix("Do53:").replace("@", ":")
        said.append(f"{server} {error[3]}" if isinstance(error[3], str)
                    else f"{server}: {error[3]}")
    detail = "; ".join(said) or "every resolver failed"
    return f"no resolver could answer {name} {rdtype} ({detail})"


def rrset_of(reply: dns.message.Message, section: list, name: str, rdtype):
    """The RRset of rdtype owned by name in a section, or None."""
    owner = dns.name.from_text(name)
    for rrset in section:
        if rrset.name == owner and rrset.rdtype == dns.rdatatype.RdataType.make(rdtype):
            return rrset
    return None


def _cname_at(resolver, name: str) -> str | None:
    """CNAME target at name; None if NXDOMAIN; '' if the name exists without a CNAME."""
    reply = lookup(resolver, name, "CNAME")
    if reply is None:
        return None
    rrset = rrset_of(reply, reply.answer, name, "CNAME")
    if rrset is None:
        return ""
    return normalize_name(rrset[0].target.to_text())


def _txt_at(resolver, name: str) -> list[str]:
    """TXT values owned by name itself (not reached through a CNAME)."""
    reply = lookup(resolver, name, "TXT")
    if reply is None:
        return []
    rrset = rrset_of(reply, reply.answer, name, "TXT")
    return sorted(b"".join(rd.strings).decode(errors="replace") for rd in rrset) if rrset else []


def _bare(domain: str) -> str:
    """Domain without '*.' and the trailing dot, lower-case."""
    return normalize_name(domain).removeprefix("*.")


# -- CNAME delegation -------------------------------------------------------------------------

def check_cname(domain: str, expected_target: str, resolvers: list[str] | None = None,
                timeout: float = 5.0) -> CnameCheck:
    """Check that _acme-challenge.<domain> is a CNAME to expected_target."""
    domain = _bare(domain)
    name = f"_acme-challenge.{domain}"
    expected = normalize_name(expected_target)
    fix = (f"At the DNS host of {domain}, create the record "
           f"{name}. CNAME {expected}. (and nothing else at that name).")
    resolver = make_resolver(resolvers, timeout)

    def result(status: str, found: str, message: str, fix: str = fix) -> CnameCheck:
        return CnameCheck(domain, name, expected, status, found, message, fix)

    try:
        target = _cname_at(resolver, name)
        if target is None:
            return result("nxdomain", "", f"{name} does not exist (NXDOMAIN).")
        if target == "":
            return _missing(resolver, result, name, domain, expected)
        # A wildcard answers every name: a random sibling getting the same CNAME gives it away.
        sibling = _cname_at(resolver, f"_sslm-probe-{secrets.token_hex(6)}.{domain}")
        if sibling == target:
            usable = ("It happens to point at the expected target, so validation works, but "
                      "every name under the wildcard now points at it too. "
                      if target == expected else "")
            return result(
                "wildcard", target,
                f"{name} has no record of its own: a wildcard record (*.{domain} or above) "
                f"answers it with CNAME {target}. {usable}Create the explicit CNAME.")
        if target == expected:
            return result("ok", target, f"{name} is a CNAME to {expected}.", fix="")
        chain = [target]
        while len(chain) <= MAX_CHAIN:
            hop = _cname_at(resolver, chain[-1])
            if not hop:
                break
            if hop in chain:
                return result("chain", " -> ".join(chain + [hop]),
                              f"{name} leads into a CNAME loop at {hop}.")
            chain.append(hop)
            if hop == expected:
                break
    except LookupFailed as exc:
        return result("error", "", f"Could not check {name}: {exc}.",
                      fix="Retry in a moment; if it persists, check that the domain's DNS "
                          "servers answer (and the resolvers SSL Manager uses).")
    found = " -> ".join(chain)
    if len(chain) == 1:
        return result("elsewhere", found,
                      f"{name} is a CNAME to {target}, not to {expected}.")
    if chain[-1] == expected:
        return result("chain", found,
                      f"{name} reaches {expected} through a chain of CNAMEs ({found}). "
                      "Validation works while every link stays; a direct CNAME is simpler.",
                      fix=f"Optional: point {name} straight at {expected}.")
    return result("chain", found,
                  f"{name} is a chain of CNAMEs ({found}) that ends at {chain[-1]}, "
                  f"not at {expected}.")


def _missing(resolver, result, name: str, domain: str, expected: str) -> CnameCheck:
    """The name exists without a CNAME: say what sits there instead."""
    stale = _txt_at(resolver, name)
    if stale:
        shown = ", ".join(f'"{v}"' for v in stale)
        return result(
            "missing", f"TXT {shown}",
            f"{name} holds TXT records ({shown}) instead of the CNAME, probably left by an "
            "earlier DNS-01 setup. A CNAME cannot coexist with other records at one name.",
            fix=f"Delete the TXT records at {name}, then create {name}. CNAME {expected}.")
    return result("missing", "",
                  f"{name} exists but has no CNAME (NODATA): other records sit there, or a "
                  f"wildcard under {domain} covers it.")


def stale_txt(domain: str, resolvers: list[str] | None = None, timeout: float = 5.0) -> list[str]:
    """TXT values sitting at _acme-challenge.<domain> itself (they block the CNAME)."""
    name = f"_acme-challenge.{_bare(domain)}"
    try:
        return _txt_at(make_resolver(resolvers, timeout), name)
    except LookupFailed as exc:
        raise DnsError(f"{PREFIX}: could not look up TXT at {name}: {exc}") from None


# -- CAA -------------------------------------------------------------------------------------

def check_caa(domain: str, ca_identities: list[str], wildcard: bool,
              resolvers: list[str] | None = None, timeout: float = 5.0,
              method: str = "dns-01") -> CaaCheck:
    """RFC 8659: the closest name (domain, then its parents) with CAA decides; `method` is the
    validation method RFC 8657's validationmethods must allow."""
    domain = _bare(domain)
    resolver = make_resolver(resolvers, timeout)
    owner, records = "", []
    labels = domain.split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        try:
            reply = lookup(resolver, candidate, "CAA")
        except LookupFailed as exc:
            return CaaCheck(domain, False, [], f"CAA lookup for {candidate} failed: {exc}. A CA "
                            "refuses to issue while it cannot check CAA.",
                            "Make sure the DNS servers answer CAA queries (NOERROR, even when "
                            "empty).")
        # The resolver follows CNAMEs: the CAA records come back owned by the alias target.
        found = [rr for rrset in (reply.answer if reply else []) if rrset.rdtype ==
                 dns.rdatatype.CAA for rr in rrset]
        if found:
            owner, records = candidate, found
            break
    kind = "wildcard certificates" if wildcard else "certificates"
    if not records:
        return CaaCheck(domain, True, [], f"No CAA records at {domain} or above: any CA may "
                                          f"issue {kind}.")
    shown = [f"{owner} CAA {rr.to_text()}" for rr in records]
    for rr in records:
        tag = rr.tag.decode(errors="replace").lower()
        if rr.flags & 128 and tag not in CAA_KNOWN_TAGS:
            return CaaCheck(domain, False, shown,
                            f"CAA at {owner} has a critical property {tag!r} that CAs do not "
                            "understand, so no CA may issue.",
                            f"Remove the critical flag (128) from the {tag} record at {owner}.")
    wild = [rr for rr in records if rr.tag.lower() == b"issuewild"]
    issue = [rr for rr in records if rr.tag.lower() == b"issue"]
    tag, relevant = ("issuewild", wild) if wildcard and wild else ("issue", issue)
    if not relevant:
        return CaaCheck(domain, True, shown,
                        f"CAA at {owner} sets no issue property: any CA may issue {kind}.")
    allowed = [_caa_value(rr, method) for rr in relevant]
    names = sorted({ca for ca, _dns01 in allowed if ca})
    listed = ", ".join(names) or "no CA at all"
    why = (" (issuewild overrides issue for wildcard certificates)"
           if tag == "issuewild" and issue else "")
    identities = [i.strip().lower() for i in ca_identities if i.strip()]
    if not identities:
        return CaaCheck(domain, True, shown,
                        f"CAA at {owner} allows {listed} to issue {kind}{why}; this CA profile "
                        "names no CAA identity, so SSL Manager cannot judge whether it is one "
                        "of them.",
                        "Set the CAA identity in the CA profile (e.g. letsencrypt.org).")
    matching = [ca for ca, dns01 in allowed if ca in identities and dns01]
    if matching:
        return CaaCheck(domain, True, shown,
                        f"CAA at {owner} allows {matching[0]} to issue {kind}{why}.")
    blocked_method = [ca for ca, dns01 in allowed if ca in identities and not dns01]
    detail = (f"; {blocked_method[0]} is listed but only for other validation methods than "
              f"{method}" if blocked_method else "")
    return CaaCheck(domain, False, shown,
                    f"CAA at {owner} allows only {listed} to issue {kind}{why}, not "
                    f"{' or '.join(identities)}{detail}.",
                    f'Add the record {owner}. CAA 0 {tag} "{identities[0]}" (keep the others).')


def _caa_value(rr, method: str = "dns-01") -> tuple[str, bool]:
    """(CA domain, method allowed) from an issue value like 'ca.example; validationmethods=x'."""
    text = rr.value.decode(errors="replace")
    ca, _, params = text.partition(";")
    dns01 = True
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "validationmethods":
            dns01 = method in [m.strip().lower() for m in value.split(",")]
    return ca.strip().lower().rstrip("."), dns01


# -- propagation -----------------------------------------------------------------------------

def wait_for_txt(servers: list[tuple[str, int]], records: list[tuple[str, str]], *,
                 deadline: float) -> None:
    """Poll every server directly until each serves every value; deadline is time.monotonic()."""
    wanted: dict[str, set[str]] = {}
    for fqdn, value in records:
        wanted.setdefault(normalize_name(fqdn), set()).add(value)
    pending = {(server, name): values for server in servers for name, values in wanted.items()}
    last: dict[tuple, str] = {}
    start, delay = time.monotonic(), FIRST_POLL
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(pending)))) as pool:
        while pending:
            keys = list(pending)
            budget = max(0.05, min(1.0, deadline - time.monotonic()))
            for key, (served, note) in zip(keys, pool.map(lambda k: _served(k, budget), keys)):
                if pending[key] <= served:
                    del pending[key]
                else:
                    last[key] = (pending[key] - served, note)
            if not pending:
                return
            now = time.monotonic()
            if now >= deadline:
                break
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, MAX_POLL)
    waited = time.monotonic() - start
    problems = []
    for key in sorted(pending):
        (host, port), name = key
        missing, note = last.get(key, (pending[key], "none"))
        shown = ", ".join(f'"{v}"' for v in sorted(missing))
        problems.append(f"{host}:{port} does not serve TXT {shown} at {name} "
                        f"(last answer: {note})")
    raise DnsError(f"{PREFIX}: after {waited:.1f} s, " + "; ".join(problems),
                   step="wait for DNS propagation",
                   hint="The provider accepted the change but these servers do not serve it "
                        "yet: check zone transfers (NOTIFY, allow-transfer) to every server.")


def _served(key: tuple[tuple[str, int], str], timeout: float) -> tuple[set[str], str]:
    """TXT values one server serves at one name, with a note on what it answered."""
    (host, port), name = key
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD  # ask the authoritative server, not its recursion
    try:
        reply, _tcp = dns.query.udp_with_fallback(query, host, port=port, timeout=timeout)
    except dns.exception.Timeout:
        return set(), f"timeout after {timeout:g} s"
    except (OSError, ValueError, dns.exception.DNSException) as exc:
        return set(), f"{type(exc).__name__}: {exc}"
    rrset = rrset_of(reply, reply.answer, name, "TXT")
    served = {b"".join(rd.strings).decode(errors="replace") for rd in rrset} if rrset else set()
    return served, f"{dns.rcode.to_text(reply.rcode())} with {len(served)} TXT value(s)"


