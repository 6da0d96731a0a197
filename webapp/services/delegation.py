"""Does the customer's DNS let the CA validate? The CNAME of every base domain into the
technical zone (and its stable target), preflight (CNAME, stale TXT, CAA), and the daily
delegation watch over Active certificates. Reads DNS; writes only the certificate's
delegation state and timeline."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import defer

from .. import db
from ..dns import checks
from ..errors import SSLManagerError
from ..models import CAProfile, Certificate, utcnow
from . import ca_profiles, domains, failover, persist
from .timeline import Timeline

log = logging.getLogger("sslmanager.delegation")
WATCH_LOOKUPS = 16  # CNAME checks in flight at once in the daily delegation watch
WATCH_BATCH = 1000  # certificates read, checked and committed at a time


def configured_resolvers() -> list[str] | None:
    return current_app.config["SSLMANAGER_DNS_RESOLVERS"] or None


def cname_report(cert: Certificate) -> list[checks.CnameCheck]:
    """The CNAME check of every base domain of the certificate, against its stable target."""
    resolvers = configured_resolvers()
    return [checks.check_cname(base, target, resolvers) for base, target in cname_targets(cert)]


def validation_report(cert: Certificate) -> list:
    """The DNS check the certificate's validation mode needs: its CNAMEs (CnameCheck), or its
    `_validation-persist` records at the authoritative servers (PersistCheck). Both carry
    name, status, ok, message and fix; status "error" is a lookup that failed."""
    return persist.report(cert) if cert.validation == persist.PERSIST else cname_report(cert)


def cname_targets(cert: Certificate) -> list[tuple[str, str]]:
    """(base domain, the stable target its _acme-challenge CNAME must point at) of each name."""
    zone = cert_profile(cert).dns_zone
    return [(base, domains.cname_target(base, zone)) for base in domains.challenge_bases(cert.domains)]


def cert_profile(cert: Certificate) -> CAProfile:
    return ca_profiles.get(cert.profile_id)


@dataclass
class Check:
    """One finding, worded for the operator."""

    kind: str       # "CNAME", "TXT", "CAA"
    subject: str    # the DNS name or certificate name checked
    status: str     # ok, warning, error
    diagnosis: str
    fix: str = ""
    blocking: bool = False  # the CA will refuse: ordering now would only fail


@dataclass
class DomainPreflight:
    domain: str         # the base domain: one _acme-challenge name
    names: list[str]    # the certificate's names validated through it
    checks: list[Check]


@dataclass
class Preflight:
    cert: Certificate
    domains: list[DomainPreflight]

    @property
    def checks(self) -> list[Check]:
        return [c for d in self.domains for c in d.checks]

    @property
    def ok(self) -> bool:
        return all(c.status != "error" for c in self.checks)


def preflight(cert: Certificate) -> Preflight:
    """Per base domain: the CNAME and stale TXT at _acme-challenge (or, for dns-persist-01, the
    `_validation-persist` record at the authoritative servers), and CAA for each name."""
    resolvers = configured_resolvers()
    persistent = cert.validation == persist.PERSIST
    if persistent:
        records = {c.domain: c for c in persist.report(cert)}
    else:
        cnames = {c.domain: c for c in cname_report(cert)}
    caa = _caa_checks(cert, resolvers)
    fallback = _fallback_checks(cert, resolvers)
    report = Preflight(cert, [])
    for base in domains.challenge_bases(cert.domains):
        names = [n for n in cert.domains if domains.base_domain(n) == base]
        found = ([_persist_check(records[base])] if persistent else
                 [_cname_check(cnames[base]), _stale_check(base, resolvers)])
        report.domains.append(DomainPreflight(base, names, found + [caa[n] for n in names]
                                              + fallback.get(base, [])))
    return report


def _fallback_checks(cert: Certificate, resolvers: list[str] | None) -> dict[str, list[Check]]:
    """No surprise at failover: per base domain, each fallback's CAA for every name, and for a
    fallback on another technical zone the CNAME it would need (a name has one CNAME, so the
    owner would have to switch it: a warning, not an error, while the primary's is in place)."""
    primary = cert_profile(cert)
    found: dict[str, list[Check]] = {}
    for profile in failover.fallbacks(cert):
        caa = _caa_checks(cert, resolvers, profile)
        for base in domains.challenge_bases(cert.domains):
            checks_ = found.setdefault(base, [])
            if failover.other_zone(primary, profile):
                c = checks.check_cname(base, domains.cname_target(base, profile.dns_zone), resolvers)
                checks_.append(Check(
                    "CNAME", f"{c.name} for fallback {profile.name}", "ok" if c.status == "ok" else "warning",
                    f"Failing over to {profile.name} needs this CNAME into its technical zone "
                    f"{profile.dns_zone} instead: {c.message}",
                    c.fix or f"Choose a fallback on the technical zone {primary.dns_zone}, or switch "
                             "the CNAME when failing over."))
            for name in (n for n in cert.domains if domains.base_domain(n) == base):
                c = caa[name]
                checks_.append(Check("CAA", f"{name} for fallback {profile.name}", c.status,
                                     f"Fallback {profile.name}: {c.diagnosis}", c.fix))
    return found


def blocking_problems(cert: Certificate) -> list[str]:
    """What makes the CA refuse for sure (CAA forbids it): worth waiting on before ordering."""
    return [f"{c.diagnosis} {c.fix}".strip() for c in _caa_checks(cert, configured_resolvers()).values()
            if c.blocking]


def _cname_check(c: checks.CnameCheck) -> Check:
    # A chain that reaches us works; a lookup failure says nothing about the record.
    status = "ok" if c.status == "ok" else "warning" if c.ok or c.status == "error" else "error"
    return Check("CNAME", c.name, status, c.message, c.fix)


def _persist_check(c) -> Check:
    status = c.status if c.status in ("ok", "warning") else "warning" if c.status == "error" else "error"
    return Check("TXT", c.name, status, c.message, c.fix)


def _stale_check(base: str, resolvers: list[str] | None) -> Check:
    name = f"_acme-challenge.{base}"
    try:
        values = checks.stale_txt(base, resolvers)
    except SSLManagerError as exc:
        return Check("TXT", name, "warning", f"Could not look for TXT records at {name}: {exc}.",
                     "Retry in a moment.")
    if not values:
        return Check("TXT", name, "ok", f"No TXT records sit at {name} itself.")
    shown = ", ".join(f'"{v}"' for v in values)
    return Check("TXT", name, "error",
                 f"TXT records {shown} sit at {name} itself, probably left by an earlier DNS-01 "
                 "setup. A CNAME cannot share a name with other records, so DNS-01 through the "
                 "technical zone cannot work while they are there.",
                 f"At the DNS host of {base}, delete the TXT records at {name}; keep (or create) "
                 "only the CNAME.")


def _caa_checks(cert: Certificate, resolvers: list[str] | None,
                profile: CAProfile | None = None) -> dict[str, Check]:
    """CAA per certificate name against the profile's CAA identities (issuewild for wildcards):
    the certificate's own profile, or `profile` (a fallback's)."""
    profile = profile or ca_profiles.get(cert.profile_id)
    identities = list((profile.directory_meta or {}).get("caaIdentities") or [])
    method = persist.PERSIST if cert.validation == persist.PERSIST else "dns-01"
    found = {}
    for name in cert.domains:
        c = checks.check_caa(name, identities, name.startswith("*."), resolvers, method=method)
        if c.ok:
            status = "warning" if c.fix else "ok"
        else:
            # Records that exclude the CA are final; a failed lookup may be passing.
            status = "error" if c.records else "warning"
        found[name] = Check("CAA", name, status, c.message, c.fix,
                            blocking=not c.ok and bool(c.records))
    return found


def delegation_watch(batch: int = WATCH_BATCH) -> list[tuple[int, list[str]]]:
    """Re-check the CNAMEs (or dns-persist-01 records) of Active auto-renewing certificates; (id, problems) of the broken.

    A change of state goes to the certificate's timeline; lookups that fail say nothing
    about the records, so they change nothing. The certificates are read `batch` at a time
    (keys never loaded) and each batch is committed: 100,000 certificates never sit in memory
    at once (the watch stays well under 200 MiB, bench/scale.py)."""
    broken: list[tuple[int, list[str]]] = []
    s = db.session()
    after = 0
    with ThreadPoolExecutor(WATCH_LOOKUPS, thread_name_prefix="sslm-watch") as pool:
        while True:
            certs = s.execute(select(Certificate).options(
                defer(Certificate.private_key), defer(Certificate.account_key), defer(Certificate.csr))
                .where(Certificate.status == "active", Certificate.auto_renew.is_(True), Certificate.id > after)
                .order_by(Certificate.id).limit(batch)).scalars().all()
            if not certs:
                break
            after = certs[-1].id
            for cert, report in _cname_reports(certs, pool):
                _record(cert, report, broken)
            s.commit()  # the session holds clean objects weakly: the batch goes with `certs`
    return broken


def _record(cert: Certificate, report, broken: list) -> None:
    if isinstance(report, SSLManagerError):
        log.warning("delegation watch: certificate %s: %s", cert.id, report)
        return
    bad = [c for c in report if not c.ok and c.status != "error"]
    if not bad and any(not c.ok for c in report):
        return  # only lookup failures: undecided
    problems = [f"{c.name}: {c.message} Fix: {c.fix}" for c in bad]
    previous = cert.delegation_ok
    timeline = Timeline(cert)
    if problems:
        broken.append((cert.id, problems))
        if previous is not False:
            timeline("delegation: renewal will wait until this is fixed: " + " ".join(problems),
                     "warning")
    elif previous is False:
        timeline("delegation: every _validation-persist record authorizes this account again"
                 if cert.validation == persist.PERSIST else
                 "delegation: every CNAME resolves into the technical zone again")
    # A persistUntil close at hand still works: said once in the timeline, kept as the message.
    soon = [f"{c.name}: {c.message} Fix: {c.fix}" for c in report if c.status == "warning"]
    message = " ".join(problems or soon)
    if soon and not problems and message != cert.delegation_message:
        timeline("delegation: " + message, "warning")
    if (cert.delegation_ok, cert.delegation_message) != (not problems, message):
        cert.delegation_ok, cert.delegation_message = not problems, message
    cert.delegation_checked_at = utcnow()


def _cname_reports(certs: list[Certificate], pool: ThreadPoolExecutor):
    """(certificate, its CNAME checks or the error) for each, the lookups WATCH_LOOKUPS at a
    time in `pool`: with 100,000 certificates one after the other would take hours of round
    trips. The threads only resolve (dns.checks has no Flask and no database); the labels are
    read in one query per batch, the rest stays here."""
    resolvers = configured_resolvers()
    settings = persist.lookup_settings() if any(c.validation == persist.PERSIST for c in certs) else {}
    zones = {p: ca_profiles.get(p).dns_zone for p in {c.profile_id for c in certs}}
    wanted = {(base, zones[c.profile_id]) for c in certs for base in domains.challenge_bases(c.domains)}
    labels = domains.known_labels(wanted)
    targets: dict[int, list | SSLManagerError] = {}
    for cert in certs:
        zone = zones[cert.profile_id]
        try:
            targets[cert.id] = (persist.targets(cert) if cert.validation == persist.PERSIST else
                                [(base, f"{labels[(base, zone)]}.{zone}" if (base, zone) in labels
                                  else domains.cname_target(base, zone))
                                 for base in domains.challenge_bases(cert.domains)])
        except SSLManagerError as exc:
            targets[cert.id] = exc

    def check(pairs):
        try:
            if pairs and isinstance(pairs[0], persist.Target):
                return persist.check_targets(pairs, settings)
            return [checks.check_cname(base, target, resolvers) for base, target in pairs]
        except SSLManagerError as exc:
            return exc
    results = {cert_id: pool.submit(check, pairs) for cert_id, pairs in targets.items()
               if not isinstance(pairs, SSLManagerError)}
    for cert in certs:
        found = targets[cert.id]
        yield cert, found if isinstance(found, SSLManagerError) else results[cert.id].result()
