"""The dns-persist-01 record (draft-ietf-acme-dns-persist, CA/B Forum BR 3.2.2.4.22): the value
to create, its parsing (RFC 8659 issue-value syntax), and the check of what a domain's
authoritative servers serve against what the CA will require. No Flask here."""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from .base import normalize_name
from .checks import LookupFailed, lookup, make_resolver, rrset_of

LABEL = "_validation-persist"
SOON = 30 * 86400  # persistUntil closer than this is a warning: the record is about to stop working


def record_name(domain: str) -> str:
    return f"{LABEL}.{normalize_name(domain).removeprefix('*.')}"


def record_value(issuer: str, accounturi: str, wildcard: bool) -> str:
    """The TXT value: `<issuer>; accounturi=<url>[; policy=wildcard]`."""
    return f"{issuer}; accounturi={accounturi}" + ("; policy=wildcard" if wildcard else "")


def parse(value: str) -> tuple[str, dict[str, str]] | None:
    """(issuer domain, {lower-case key: value}) of an issue-value, or None when malformed."""
    parts = [p.strip() for p in value.strip().strip('"').split(";")]
    issuer = parts[0].lower().rstrip(".")
    if not issuer or "=" in issuer or " " in issuer:
        return None
    params: dict[str, str] = {}
    for part in parts[1:]:
        if not part:
            continue
        key, eq, val = part.partition("=")
        key = key.strip().lower()
        if not eq or not key or key in params:
            return None
        params[key] = val.strip()
    return issuer, params


@dataclass
class PersistCheck:
    """What `_validation-persist.<domain>` holds, judged against what the CA will require."""

    domain: str
    name: str
    expected: str   # the value to create
    status: str     # ok, warning, missing, malformed, issuer, accounturi, policy, expired, error
    message: str
    fix: str = ""
    found: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the CA will accept the record (a near persistUntil still works)."""
        return self.status in ("ok", "warning")


def judge(domain: str, values: list[str], issuers: list[str], accounturi: str, wildcard: bool,
          now: float | None = None) -> PersistCheck:
    """The verdict on the values served at `_validation-persist.<domain>`, with a fix."""
    now = time.time() if now is None else now
    name = record_name(domain)
    issuer = issuers[0] if issuers else "<issuer domain>"
    expected = record_value(issuer, accounturi, wildcard)
    create = f'At the DNS host of {domain}, create {name}. TXT "{expected}".'

    def result(status: str, message: str, fix: str = create) -> PersistCheck:
        return PersistCheck(domain, name, expected, status, message, fix, list(values))
    if not values:
        return result("missing", f"{name} has no TXT record.")
    parsed = [(v, parse(v)) for v in values]
    valid = [(v, p) for v, p in parsed if p is not None]
    shown = ", ".join(f'"{v}"' for v in values)
    if not valid:
        return result("malformed", f"{name} holds {shown}, which is not in the form "
                                   "`issuer; accounturi=...`.", f"Replace it: {create}")
    ours = [(v, p) for v, p in valid if p[0] in issuers]
    if not ours:
        found = ", ".join(sorted({p[0] for _v, p in valid}))
        return result("issuer", f"{name} names the issuer domain {found}, not "
                                f"{' or '.join(issuers) or 'the one this CA gives'}.",
                      f"Replace (or add beside it) the record: {create}")
    mine = [(v, p) for v, p in ours if p[1].get("accounturi") == accounturi]
    if not mine:
        found = ", ".join(sorted({p[1].get("accounturi", "(none)") for _v, p in ours}))
        return result("accounturi", f"{name} gives accounturi {found}, not this CA profile's "
                                    f"account {accounturi} (did the profile's account change?).",
                      f"Replace the value with \"{expected}\" at {name}.")
    if wildcard:
        mine_wild = [(v, p) for v, p in mine if p[1].get("policy", "").lower() == "wildcard"]
        if not mine_wild:
            return result("policy", f"{name} lacks policy=wildcard, which a wildcard name "
                                    "needs.", f"Replace the value with \"{expected}\" at {name}.")
        mine = mine_wild
    untils = []
    for _v, p in mine:
        raw = p[1].get("persistuntil", "")
        if not raw:
            return result("ok", f"{name} authorizes this CA account.", "")
        if re.fullmatch(r"\d+", raw):
            untils.append(int(raw))
    if not untils:
        return result("malformed", f"{name} has a persistUntil that is not a Unix time.",
                      f"Replace the value with \"{expected}\" at {name}.")
    until = max(untils)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(until))
    renew = (f"Replace the value with \"{expected}\" at {name} (no persistUntil), or one "
             "with a later persistUntil.")
    if until < now:
        return result("expired", f"{name} expired at {when} (persistUntil): the CA ignores it.",
                      renew)
    if until - now < SOON:
        return result("warning", f"{name} authorizes this CA account until {when} "
                                 f"(persistUntil, in {int((until - now) // 86400)} days).", renew)
    return result("ok", f"{name} authorizes this CA account until {when}.", "")


def check(domain: str, servers: list[tuple[str, str]], issuers: list[str], accounturi: str,
          wildcard: bool, resolvers: list[str] | None = None, *, port: int = 53,
          timeout: float = 3.0) -> PersistCheck:
    """Ask every authoritative server of the domain for its `_validation-persist` record and
    judge each answer: the worst verdict stands (the CA may ask any of them)."""
    name = record_name(domain)
    verdicts: dict[str, PersistCheck] = {}
    notes = []
    for host, address in servers:
        try:
            values = _served(name, address, resolvers, port, timeout)
        except (OSError, ValueError, dns.exception.DNSException, LookupFailed) as exc:
            notes.append(f"{host} ({address}): {exc or type(exc).__name__}")
            continue
        verdicts[f"{host} ({address})"] = judge(domain, values, issuers, accounturi, wildcard)
    if not verdicts:
        expected = record_value(issuers[0] if issuers else "<issuer domain>", accounturi, wildcard)
        return PersistCheck(domain, name, expected, "error",
                            f"Could not check {name}: no authoritative server answered "
                            f"({'; '.join(notes) or 'none found'}).",
                            "Retry in a moment; if it persists, check that the domain's DNS "
                            "servers answer.")
    rank = {"ok": 0, "warning": 1}
    server, worst = max(verdicts.items(), key=lambda item: rank.get(item[1].status, 2))
    if len({v.status for v in verdicts.values()}) > 1:
        worst.message += (f" (as {server} serves it; the domain's name servers disagree: "
                          "a zone transfer may lag)")
    return worst


def _served(name: str, address: str, resolvers: list[str] | None, port: int,
            timeout: float) -> list[str]:
    """TXT values one authoritative server serves at `name`; a CNAME there is followed through
    the resolver (BR 3.2.2.4.22 lets the CA follow it)."""
    query = dns.message.make_query(name, dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD
    reply, _tcp = dns.query.udp_with_fallback(query, address, port=port, timeout=timeout)
    if reply.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise LookupFailed(f"answered {dns.rcode.to_text(reply.rcode())}")
    txt = rrset_of(reply, reply.answer, name, "TXT")
    if txt is None and rrset_of(reply, reply.answer, name, "CNAME"):
        followed = lookup(make_resolver(resolvers, timeout), name, "TXT")
        txt = next((r for r in (followed.answer if followed else [])
                    if r.rdtype == dns.rdatatype.TXT), None)
    return sorted(b"".join(rd.strings).decode(errors="replace") for rd in txt) if txt else []
