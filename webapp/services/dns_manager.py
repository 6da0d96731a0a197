"""DNS Manager: what each technical zone holds and for which certificate, the preflight of a
certificate's DNS before ordering, the sweeper of TXT values no order needs, the daily watch
of Active certificates' CNAMEs, and opt-in `_acme-challenge` CNAMEs in customer zones.

A customer zone is a TechZone row whose options say {"role": "customer"}: the same providers
write it, but it holds the CNAMEs SSL Manager made (one DnsRecord row each, the CNAME target
as value), never TXT values, so the sweeper leaves it alone.
"""
from __future__ import annotations

import logging
import os
import socket
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from .. import db
from ..dns import checks
from ..dns.base import available_providers, normalize_name
from ..errors import DnsUnsupported, SSLManagerError
from ..models import CAProfile, Certificate, CnameLabel, DnsRecord, TechZone, utcnow
from . import addresses, audit, ca_profiles, domains, issuance, zones

log = logging.getLogger("sslmanager.dns_manager")

CUSTOMER = "customer"
SWEEP_MAX_AGE = timedelta(hours=1)
WATCH_LOOKUPS = 16  # CNAME checks in flight at once in the daily delegation watch
SWEEPER = f"sweeper:{socket.gethostname()}:{os.getpid()}"  # claim holder while removing


def _resolvers() -> list[str] | None:
    return current_app.config["SSLMANAGER_DNS_RESOLVERS"] or None


def is_customer_zone(zone: TechZone) -> bool:
    return (zone.options or {}).get("role") == CUSTOMER


# -- zones and their TXT values ----------------------------------------------------------------

@dataclass
class TxtValue:
    """One TXT value live in a technical zone, and who it is for."""

    name: str
    value: str
    certificates: list[Certificate]
    created_at: datetime | None  # when SSL Manager wrote it, if it has a record of that

    @property
    def age(self) -> timedelta | None:
        return utcnow() - self.created_at if self.created_at else None


@dataclass
class ZoneView:
    zone: TechZone
    provider_label: str
    customer: bool
    values: list[TxtValue] = field(default_factory=list)
    values_error: str = ""
    cnames: list[DnsRecord] = field(default_factory=list)  # customer zones: CNAMEs we made
    delegation: dict | None = None


class _Owners:
    """Which certificates each TXT value of one technical zone belongs to: the certificate
    recorded with it, else the certificates whose base domain has that stable label.

    Plain values, read once: the sweeper commits (claims) while it uses them, and a row
    another process deletes meanwhile must not turn into an error here."""

    def __init__(self, zone: str):
        s = db.session()
        self.labels = {f"{label}.{zone}": domain for label, domain in
                       s.execute(select(CnameLabel.label, CnameLabel.domain).filter_by(zone=zone))}
        certs = s.execute(select(Certificate).join(CAProfile, CAProfile.id == Certificate.profile_id)
                          .where(CAProfile.dns_zone == zone)).scalars().all()
        self.certs = {c.id: c for c in certs}
        self.status = {c.id: c.status for c in certs}
        self.by_domain: dict[str, list[int]] = defaultdict(list)
        for cert in sorted(certs, key=lambda c: (c.status != "processing", -c.id)):
            for base in domains.challenge_bases(cert.domains):
                self.by_domain[base].append(cert.id)
        self.rows: dict[tuple[str, str], list[tuple[int | None, datetime]]] = defaultdict(list)
        for name, value, cert_id, created in s.execute(select(
                DnsRecord.name, DnsRecord.value, DnsRecord.certificate_id, DnsRecord.created_at)
                .filter_by(zone=zone)):
            self.rows[(name, value)].append((cert_id, created))

    def ids(self, name: str, value: str) -> list[int]:
        recorded = {i for i, _ in self.rows.get((name, value), ()) if i in self.certs}
        return sorted(recorded) or list(self.by_domain.get(self.labels.get(name, ""), []))

    def created_at(self, name: str, value: str) -> datetime | None:
        return min((at for _, at in self.rows.get((name, value), ())), default=None)


def zone_view(zone: TechZone, *, with_delegation: bool = True) -> ZoneView:
    """One zone for the page: provider, health, live TXT values (or our CNAMEs), delegation."""
    cls = available_providers().get(zone.provider)
    view = ZoneView(zone, cls.label if cls else f"{zone.provider} (unavailable)", is_customer_zone(zone))
    if view.customer:
        view.cnames = list(db.session().execute(select(DnsRecord).filter_by(zone=zone.name)
                                                .order_by(DnsRecord.name)).scalars())
    else:
        try:
            live = zones.provider_for(zone.name).list_txt()
        except SSLManagerError as exc:
            view.values_error = str(exc) + (f" {exc.hint}" if exc.hint else "")
        else:
            owners = _Owners(zone.name)
            view.values = [TxtValue(name, value, [owners.certs[i] for i in owners.ids(name, value)],
                                    owners.created_at(name, value))
                           for name, values in live.items() for value in values]
    if with_delegation:
        view.delegation = delegation(zone.name)
    return view


def zone_overview(*, with_delegation: bool = True) -> list[ZoneView]:
    """Every configured zone as zone_view shows it."""
    return [zone_view(zone, with_delegation=with_delegation) for zone in zones.all_zones()]


def delegation(zone_name: str) -> dict:
    """The parent's NS records for the zone and whether each answers its SOA (checks.zone_delegation)."""
    outbound = addresses.policy()
    return checks.zone_delegation(zone_name, _resolvers(),
                                  address_check=lambda address: outbound.address_problem(address, "dns"),
                                  port=int(current_app.config.get("SSLMANAGER_DNS_NS_PORT", 53)))


# -- preflight ---------------------------------------------------------------------------------

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
    """Per base domain: the CNAME, stale TXT at _acme-challenge, and CAA for each name."""
    resolvers = _resolvers()
    cnames = {c.domain: c for c in issuance.cname_report(cert)}
    caa = _caa_checks(cert, resolvers)
    report = Preflight(cert, [])
    for base in domains.challenge_bases(cert.domains):
        names = [n for n in cert.domains if domains.base_domain(n) == base]
        found = [_cname_check(cnames[base]), _stale_check(base, resolvers)]
        report.domains.append(DomainPreflight(base, names, found + [caa[n] for n in names]))
    return report


def blocking_problems(cert: Certificate) -> list[str]:
    """What makes the CA refuse for sure (CAA forbids it): worth waiting on before ordering."""
    return [f"{c.diagnosis} {c.fix}".strip() for c in _caa_checks(cert, _resolvers()).values()
            if c.blocking]


def _cname_check(c: checks.CnameCheck) -> Check:
    # A chain that reaches us works; a lookup failure says nothing about the record.
    status = "ok" if c.status == "ok" else "warning" if c.ok or c.status == "error" else "error"
    return Check("CNAME", c.name, status, c.message, c.fix)


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


def _caa_checks(cert: Certificate, resolvers: list[str] | None) -> dict[str, Check]:
    """CAA per certificate name against the profile's CAA identities (issuewild for wildcards)."""
    profile = ca_profiles.get(cert.profile_id)
    identities = list((profile.directory_meta or {}).get("caaIdentities") or [])
    found = {}
    for name in cert.domains:
        c = checks.check_caa(name, identities, name.startswith("*."), resolvers)
        if c.ok:
            status = "warning" if c.fix else "ok"
        else:
            # Records that exclude the CA are final; a failed lookup may be passing.
            status = "error" if c.records else "warning"
        found[name] = Check("CAA", name, status, c.message, c.fix,
                            blocking=not c.ok and bool(c.records))
    return found


# -- the sweeper -------------------------------------------------------------------------------

@dataclass
class Swept:
    zone: str
    name: str
    value: str
    certificate_ids: list[int]
    why: str


@dataclass
class SweepReport:
    removed: list[Swept] = field(default_factory=list)
    kept: list[Swept] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sweep(max_age: timedelta = SWEEP_MAX_AGE, *, actor: str | None = None) -> SweepReport:
    """Remove TXT values no live order needs from every technical zone.

    A value stays while a certificate it belongs to is Processing and the value is younger
    than max_age (an order may still be validating it), and while another process holds that
    certificate (it may be writing it right now). The sweeper holds each owner's claim while
    it removes, so no order can start writing the same value back meanwhile."""
    report = SweepReport()
    for zone in zones.all_zones():
        if is_customer_zone(zone):
            continue
        try:
            _sweep_zone(zone, max_age, actor, report)
        except SSLManagerError as exc:
            db.session().rollback()
            report.errors.append(f"{zone.name}: {exc}")
            log.warning("sweep of %s failed: %s", zone.name, exc)
    return report


def _sweep_zone(zone: TechZone, max_age: timedelta, actor: str | None, report: SweepReport) -> None:
    from . import certificates  # certificates calls into this module; import at use
    provider = zones.provider_for(zone.name)
    owners = _Owners(zone.name)
    candidates = set(owners.rows)  # everything SSL Manager recorded writing
    try:
        live = provider.list_txt()
    except SSLManagerError as exc:  # e.g. AXFR refused: the recorded values can still go
        report.errors.append(f"{zone.name}: could not list TXT values ({exc}); swept only the "
                             "values SSL Manager recorded")
    else:
        # Values at our labels whose record was lost (a cleanup that failed) are ours too.
        candidates |= {(n, v) for n, values in live.items() if n in owners.labels for v in values}
    if not candidates:
        return

    def needed(name: str, value: str) -> str:
        created, now = owners.created_at(name, value), utcnow()
        for cert_id in owners.ids(name, value):
            if owners.status[cert_id] == "processing" and (created is None or now - created < max_age):
                return f"certificate {cert_id} is Processing and may still need it"
        return ""

    to_claim = {i for n, v in candidates if not needed(n, v) for i in owners.ids(n, v)}
    claimed = {i for i in sorted(to_claim) if certificates.claim(i, SWEEPER, seconds=60)}
    try:
        removable = []
        # Their status as of our claim: it cannot change while we hold it.
        owners.status.update((i, status) for i, status in db.session().execute(
            select(Certificate.id, Certificate.status).where(Certificate.id.in_(claimed))))
        for name, value in sorted(candidates):
            ids = owners.ids(name, value)
            why = needed(name, value) or next(
                (f"certificate {i} is being worked on" for i in ids if i not in claimed), "")
            item = Swept(zone.name, name, value, ids, why or ("no certificate needs it" if ids else
                                                               "no certificate uses it"))
            (report.kept if why else removable).append(item)
        if not removable:
            return
        db.session().commit()  # end our read before the provider writes (SQLite snapshots)
        provider.remove_txt([(r.name, r.value) for r in removable])
        for r in removable:
            db.session().execute(delete(DnsRecord).filter_by(zone=zone.name, name=r.name, value=r.value))
        audit.record("DNS sweep", "zone", zone.id,
                     f"{zone.name}: removed {len(removable)} TXT value(s) at "
                     f"{', '.join(sorted({r.name for r in removable}))}", actor=actor)
        db.session().commit()
        report.removed += removable
        log.info("sweep: removed %d TXT value(s) from %s", len(removable), zone.name)
    finally:
        for cert_id in claimed:
            certificates.release(cert_id, SWEEPER)


# -- delegation watch --------------------------------------------------------------------------

# Certificate columns the watch keeps (migration 0004); without them it writes the timeline only.


def delegation_watch() -> list[tuple[int, list[str]]]:
    """Re-check the CNAMEs of Active auto-renewing certificates; (id, problems) of the broken.

    A change of state goes to the certificate's timeline; lookups that fail say nothing
    about the records, so they change nothing."""
    broken = []
    active = db.session().execute(select(Certificate).where(
        Certificate.status == "active", Certificate.auto_renew.is_(True))
        .order_by(Certificate.id)).scalars().all()
    for cert, report in _cname_reports(active):
        if isinstance(report, SSLManagerError):
            log.warning("delegation watch: certificate %s: %s", cert.id, report)
            continue
        bad = [c for c in report if not c.ok and c.status != "error"]
        if not bad and any(not c.ok for c in report):
            continue  # only lookup failures: undecided
        problems = [f"{c.name}: {c.message} Fix: {c.fix}" for c in bad]
        previous = cert.delegation_ok
        timeline = issuance.Timeline(cert)
        if problems:
            broken.append((cert.id, problems))
            if previous is not False:
                timeline("delegation: renewal will wait until this is fixed: " + " ".join(problems),
                         "warning")
        elif previous is False:
            timeline("delegation: every CNAME resolves into the technical zone again")
        cert.delegation_ok, cert.delegation_checked_at = not problems, utcnow()
        cert.delegation_message = " ".join(problems)
    db.session().commit()
    return broken


def _cname_reports(certs: list[Certificate]):
    """(certificate, its CNAME checks or the error) for each, the lookups WATCH_LOOKUPS at a
    time: with 10,000 certificates one after the other would take minutes of round trips. The
    threads only resolve (dns.checks has no Flask and no database); the rest stays here."""
    resolvers = current_app.config["SSLMANAGER_DNS_RESOLVERS"] or None
    targets: dict[int, list[tuple[str, str]] | SSLManagerError] = {}
    for cert in certs:
        try:
            targets[cert.id] = issuance.cname_targets(cert)
        except SSLManagerError as exc:
            targets[cert.id] = exc

    def check(pairs):
        try:
            return [checks.check_cname(base, target, resolvers) for base, target in pairs]
        except SSLManagerError as exc:
            return exc
    with ThreadPoolExecutor(WATCH_LOOKUPS, thread_name_prefix="sslm-watch") as pool:
        results = {cert_id: pool.submit(check, pairs) for cert_id, pairs in targets.items()
                   if not isinstance(pairs, SSLManagerError)}
        for cert in certs:
            found = targets[cert.id]
            yield cert, found if isinstance(found, SSLManagerError) else results[cert.id].result()


# -- CNAMEs in customer zones ------------------------------------------------------------------

@dataclass
class CustomerCname:
    domain: str
    name: str
    target: str
    zone: str     # the customer zone ("" when none contains the domain)
    status: str   # created, present, conflict, no zone, unsupported, removed, kept, error
    message: str


def customer_zone_for(domain: str) -> TechZone | None:
    """The most specific customer zone containing domain."""
    domain = normalize_name(domain)
    found = [z for z in zones.all_zones() if is_customer_zone(z)
             and (domain == z.name or domain.endswith("." + z.name))]
    return max(found, key=lambda z: len(z.name), default=None)


def ensure_customer_cname(cert: Certificate, ttl: int = 300) -> list[CustomerCname]:
    """Opt-in at creation: make each `_acme-challenge` CNAME in the customer zone that holds it.

    Never overwrites: a name already in use is left as it is and reported. Only CNAMEs made
    here are recorded, so only those are ever removed (remove_customer_cnames)."""
    zone_name = ca_profiles.get(cert.profile_id).dns_zone
    results = []
    for base in domains.challenge_bases(cert.domains):
        results.append(_ensure_one(cert, base, domains.cname_target(base, zone_name), ttl))
    db.session().commit()
    return results


def _ensure_one(cert: Certificate, base: str, target: str, ttl: int) -> CustomerCname:
    name, zone = f"_acme-challenge.{base}", customer_zone_for(base)
    if zone is None:
        return CustomerCname(base, name, target, "", "no zone",
                             f"No customer zone managed by SSL Manager contains {base}: "
                             f"create {name}. CNAME {target}. at its DNS host.")

    def result(status: str, message: str) -> CustomerCname:
        return CustomerCname(base, name, target, zone.name, status, message)
    try:
        # Only a name that does not exist is written (a wildcard's answer does not count).
        held = zones.provider_for(zone.name).add_cname(name, target, ttl)
        if held == target:
            return result("present", f"{name} already is a CNAME to {target}.")
        if held is not None:
            return result("conflict", f"{name} is in use ({held}); SSL Manager leaves it alone. "
                                      f"Replace it with {name}. CNAME {target}.")
    except DnsUnsupported as exc:
        return result("unsupported", f"{exc.message}. {exc.hint}")
    except SSLManagerError as exc:
        return result("error", str(exc))
    db.session().add(DnsRecord(zone=zone.name, name=name, value=target, ttl=ttl,
                               certificate_id=cert.id))
    audit.record("customer CNAME created", "certificate", cert.id, f"{name} CNAME {target}")
    return result("created", f"Created {name}. CNAME {target}. in {zone.name}.")


def remove_customer_cnames(cert: Certificate) -> list[CustomerCname]:
    """Before deleting a certificate: remove the CNAMEs made for it that no other certificate
    uses (those pass to one that does), and only while they still point at our target."""
    results = []
    customer = {z.name: z for z in zones.all_zones() if is_customer_zone(z)}
    rows = db.session().execute(select(DnsRecord).where(
        DnsRecord.certificate_id == cert.id, DnsRecord.zone.in_(customer))).scalars().all()
    for row in rows:
        base = row.name.removeprefix("_acme-challenge.")
        heir = _other_user(cert, base, row.value)
        if heir is not None:
            row.certificate_id = heir
            results.append(CustomerCname(base, row.name, row.value, row.zone, "kept",
                                         f"{row.name} stays: certificate {heir} uses it too."))
            continue
        try:
            removed = zones.provider_for(row.zone).remove_cname(row.name, row.value)
        except SSLManagerError as exc:
            results.append(CustomerCname(base, row.name, row.value, row.zone, "error", str(exc)))
            continue
        db.session().delete(row)
        audit.record("customer CNAME removed", "certificate", cert.id, f"{row.name} CNAME {row.value}")
        results.append(CustomerCname(
            base, row.name, row.value, row.zone, "removed" if removed else "kept",
            f"Removed {row.name}." if removed else
            f"{row.name} no longer points at {row.value}: someone changed it, so it stays."))
    db.session().commit()
    return results


def _other_user(cert: Certificate, base: str, target: str) -> int | None:
    """Another certificate whose CNAME for base is the same target, if any."""
    others = db.session().execute(select(Certificate, CAProfile.dns_zone)
                                  .join(CAProfile, CAProfile.id == Certificate.profile_id)
                                  .where(Certificate.id != cert.id)).all()
    for other, zone in others:
        if base in domains.challenge_bases(other.domains) and domains.cname_target(base, zone) == target:
            return other.id
    return None

