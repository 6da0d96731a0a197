"""DNS Manager: what each technical zone holds and for which certificate, its delegation, the
sweeper of TXT values no order needs, and opt-in `_acme-challenge` CNAMEs in customer zones.
(A certificate's own DNS checks, preflight and the daily watch, are in delegation.py.)

A customer zone is a TechZone row whose options say {"role": "customer"}: the same providers
write it, but it holds the CNAMEs SSL Manager made (one DnsRecord row each, the CNAME target
as value), never TXT values, so the sweeper leaves it alone.
"""
from __future__ import annotations

import logging
import os
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import delete, select

from .. import db
from ..dns import nameservers
from ..dns.base import available_providers, normalize_name
from ..errors import DnsUnsupported, SSLManagerError
from ..models import CAProfile, Certificate, CnameLabel, DnsRecord, TechZone, utcnow
from . import addresses, audit, ca_profiles, claims, domains, zones
from .delegation import configured_resolvers

log = logging.getLogger("sslmanager.dns_manager")

CUSTOMER = "customer"
SWEEP_MAX_AGE = timedelta(hours=1)
SWEEPER = f"sweeper:{socket.gethostname()}:{os.getpid()}"  # claim holder while removing


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
    """The parent's NS records for the zone and whether each answers its SOA (dns.nameservers)."""
    outbound = addresses.policy()
    return nameservers.zone_delegation(zone_name, configured_resolvers(),
                                  address_check=lambda address: outbound.address_problem(address, "dns"),
                                  port=int(current_app.config.get("SSLMANAGER_DNS_NS_PORT", 53)))


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
    claimed = {i for i in sorted(to_claim) if claims.claim(i, SWEEPER, seconds=60)}
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
            claims.release(cert_id, SWEEPER)


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

