"""dns-persist-01 for certificates: whether a CA profile's CA offers it (Save and Test asks
with a probe order; every dns-persist-01 order since confirms it), the `_validation-persist`
record to create per base domain, and its check at the domain's authoritative servers.
Reads DNS; writes only the profile's challenge_info."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select

from .. import db
from ..acme import challenge_types
from ..dns import nameservers
from ..dns import persist as records
from ..errors import SSLManagerError
from ..models import CAProfile, Certificate, utcnow
from . import addresses, domains
from .accounts import acme_client, plugin_for, view_of

CNAME, PERSIST = "cname", challenge_types.PERSIST
MODES = {CNAME: "CNAME into the technical zone (dns-01)",
         PERSIST: "dns-persist-01: one TXT record, set once"}
WORDS = {"persist": PERSIST, PERSIST: PERSIST, CNAME: CNAME, "dns-01": CNAME}  # what the CLI takes


def mode(value: str | None) -> str | None:
    """The validation mode a form or the CLI names ("" is the default, CNAME); None if unknown."""
    return WORDS.get((value or CNAME).strip().lower())


# -- does the CA offer it? ----------------------------------------------------------------------

# What a probe learnt holds this long for the same account; dns-persist-01 orders refresh the
# issuer names meanwhile (learn).
PROBE_KEPT = timedelta(days=7)


def offer(profile: CAProfile | None) -> tuple[bool, str]:
    """(offered, why not): dns-persist-01 only where the CA's authorizations list it."""
    if profile is None:
        return False, "Choose a CA profile first."
    info = profile.challenge_info or {}
    if not info:
        return False, (f"Not known yet whether the CA of {profile.name} offers dns-persist-01: "
                       "Save and Test the CA profile (it asks the CA with a probe order).")
    if not info.get("types"):
        return False, (f"Save and Test could not ask the CA of {profile.name} which challenges "
                       f"it offers: {info.get('error') or 'no answer'}.")
    if PERSIST not in info["types"]:
        return False, (f"The CA of {profile.name} does not offer dns-persist-01 (its "
                       f"authorizations offer {', '.join(info['types'])}; asked "
                       f"{info.get('checked_at', '')[:16].replace('T', ' ')} UTC).")
    if not info.get("issuer_domain_names"):
        return False, (f"The CA of {profile.name} offers dns-persist-01 but names no issuer "
                       "domain in its challenge, so no record can be written for it.")
    return True, ""


def probe(profile: CAProfile) -> None:
    """Save and Test: ask the CA which challenges it offers, with an order for the technical
    zone's name that is never answered; remember the answer on the profile (or why none)."""
    info = profile.challenge_info or {}
    if (info.get("types") and info.get("account_url") == profile.account_url
            and info.get("checked_at", "") >= (utcnow() - PROBE_KEPT).isoformat()):
        return  # known for this account: an order at every Save and Test would pile up at the CA
    if plugin_for(profile).account_per_certificate(view_of(profile)):
        profile.challenge_info = {"types": [], "checked_at": utcnow().isoformat(),
                                  "error": "each certificate has its own ACME account here"}
        return
    client = acme_client(profile, account_key=profile.account_key, account_url=profile.account_url)
    try:
        found = challenge_types.probe(client, profile.dns_zone)
    except SSLManagerError as exc:
        profile.challenge_info = {"types": [], "checked_at": utcnow().isoformat(),
                                  "error": str(exc)[:500]}
        return
    finally:
        client.close()
    profile.challenge_info = {**found, "checked_at": utcnow().isoformat(), "account_url": profile.account_url,
                              "how": f"a probe order for {profile.dns_zone} at Save and Test"}


def learn(profile: CAProfile, challenges: list) -> None:
    """An order's dns-persist-01 challenges name the issuer domains the CA accepts now."""
    issuers = next((c.issuer_domain_names for c in challenges if c.issuer_domain_names), [])
    info = dict(profile.challenge_info or {})
    if issuers and issuers != info.get("issuer_domain_names"):
        types = info.get("types") or []
        info.update(issuer_domain_names=issuers, checked_at=utcnow().isoformat(),
                    how="the CA's challenge in an order",
                    types=types if PERSIST in types else [*types, PERSIST])
        profile.challenge_info = info


def certificates_using(profile: CAProfile) -> int:
    """How many certificates of the profile validate by dns-persist-01 (their records name its
    account)."""
    return db.session().scalar(select(func.count()).select_from(Certificate).where(
        Certificate.profile_id == profile.id, Certificate.validation == PERSIST)) or 0


def issuer_source(profile: CAProfile) -> str:
    """Where the issuer domain name in the record comes from, in words."""
    info = profile.challenge_info or {}
    if info.get("issuer_domain_names"):
        return (f"the CA's dns-persist-01 challenge (issuer-domain-names), seen in "
                f"{info.get('how', 'an order')} on {info.get('checked_at', '')[:10]}")
    return ("the CA's dns-persist-01 challenge (issuer-domain-names): Save and Test the CA "
            "profile and it is learned before the first order")


# -- the records --------------------------------------------------------------------------------

@dataclass
class PersistInstruction:
    domain: str
    domain_unicode: str
    name: str
    value: str
    wildcard: bool
    record: str  # the zone-file line to paste


def instructions(cert: Certificate) -> list[PersistInstruction]:
    """The one `_validation-persist` TXT record per base domain the domain owner must create."""
    profile = db.session().get(CAProfile, cert.profile_id)
    issuers = (profile.challenge_info or {}).get("issuer_domain_names") or ["<issuer domain>"]
    account = profile.account_url or "<the profile's ACME account URL, after Save and Test>"
    out = []
    for base, wildcard in _bases(cert):
        value = records.record_value(issuers[0], account, wildcard)
        name = records.record_name(base)
        out.append(PersistInstruction(base, domains.to_unicode(base), name, value, wildcard,
                                      f'{name}. IN TXT "{value}"'))
    return out


def _bases(cert: Certificate) -> list[tuple[str, bool]]:
    """(base domain, whether a wildcard name rides on it) per base domain."""
    return [(base, f"*.{base}" in cert.domains) for base in domains.challenge_bases(cert.domains)]


# -- the check at the authoritative servers ------------------------------------------------------

@dataclass
class Target:
    """What one base domain's record must say (plain values: checked in worker threads)."""

    domain: str
    issuers: list[str]
    accounturi: str
    wildcard: bool


def targets(cert: Certificate) -> list[Target]:
    profile = db.session().get(CAProfile, cert.profile_id)
    issuers = (profile.challenge_info or {}).get("issuer_domain_names") or []
    return [Target(base, issuers, profile.account_url, wildcard) for base, wildcard in _bases(cert)]


def lookup_settings() -> dict:
    """Resolvers, the NS port and the outbound policy, read once (threads have no app)."""
    outbound = addresses.policy()
    return {"resolvers": current_app.config["SSLMANAGER_DNS_RESOLVERS"] or None,
            "port": int(current_app.config.get("SSLMANAGER_DNS_NS_PORT", 53)),
            "address_check": lambda address: outbound.address_problem(address, "dns")}


def check_targets(found: list[Target], settings: dict) -> list[records.PersistCheck]:
    """Each record as the domain's authoritative servers serve it, judged. No app needed."""
    out = []
    for target in found:
        name = records.record_name(target.domain)
        _zone, servers, problem = nameservers.authoritative_servers(
            name, settings["resolvers"], port=settings["port"],
            address_check=settings["address_check"])
        if not servers:
            out.append(records.PersistCheck(
                target.domain, name, "", "error", f"Could not check {name}: {problem}.",
                "Retry in a moment; if it persists, check the domain's delegation."))
            continue
        out.append(records.check(target.domain, servers, target.issuers, target.accounturi,
                                 target.wildcard, settings["resolvers"], port=settings["port"]))
    return out


def report(cert: Certificate) -> list[records.PersistCheck]:
    """The check of every `_validation-persist` record of the certificate, now."""
    return check_targets(targets(cert), lookup_settings())
