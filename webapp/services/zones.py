"""Technical zones and the DNS provider that writes each one's TXT records."""
from __future__ import annotations

import json
from typing import Any

from flask import current_app
from sqlalchemy import select

from .. import db
from ..dns.base import DnsProvider, get_provider_class
from ..errors import Conflict, ConfigError, DnsError, NotFound, SSLManagerError, ValidationError
from ..models import CAProfile, Certificate, DnsRecord, TechZone, utcnow
from . import addresses, audit
from .ca_profiles import is_fqdn

# Certificates in these states will never order again: they do not hold a zone.
DONE = ("revoked", "expired")


def get(name: str) -> TechZone:
    zone = db.session().execute(select(TechZone).filter_by(name=name.lower().rstrip("."))).scalar_one_or_none()
    if zone is None:
        raise NotFound(f"No technical zone {name!r} is configured.",
                       hint=f"Add it in DNS Manager, or: sslmanager zone add {name} --provider rfc2136 ...")
    return zone


def all_zones() -> list[TechZone]:
    return list(db.session().execute(select(TechZone).order_by(TechZone.name)).scalars())


def add(name: str, provider: str, options: dict[str, Any]) -> TechZone:
    """Configure a technical zone; secrets (per the provider's options) are stored encrypted."""
    name = name.strip().lower().rstrip(".")
    errors = {}
    if not is_fqdn(name):
        errors["name"] = "Enter the technical zone as a DNS name, e.g. acme.example.com."
    elif db.session().execute(select(TechZone.id).filter_by(name=name)).first():
        errors["name"] = (f"The zone {name} is already configured: edit it in DNS Manager "
                          f"(or: sslmanager zone edit {name} ...).")
    plain, secrets = _checked_options(provider, options, {}, errors)
    zone = TechZone(name=name, provider=provider, options=plain, secrets=json.dumps(secrets) or None)
    db.session().add(zone)
    db.session().flush()
    audit.record("technical zone added", "zone", zone.id, f"{name} ({provider})")
    db.session().commit()
    return zone


def _checked_options(provider: str, options: dict[str, Any], kept_secrets: dict[str, str],
                     errors: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(plain options, secrets) for the provider, or ValidationError naming each bad field.
    A secret left empty keeps its value from `kept_secrets` (write-only, as on CA profiles)."""
    try:
        cls = get_provider_class(provider)
    except DnsError as exc:
        errors["provider"] = exc.message
        raise ValidationError(errors) from None
    given = {k: str(v).strip() for k, v in options.items() if v not in (None, "")}
    secret_names = {o.name for o in cls.options if o.secret}
    for key in secret_names:
        if key not in given and kept_secrets.get(key):
            given[key] = kept_secrets[key]
    settings = {o.name: given.get(o.name, o.default) for o in cls.options}
    errors.update(cls.validate_options(settings))
    outbound = addresses.policy()  # the server and API addresses, judged before they are saved
    for option, host in cls.address_fields(settings).items():
        problem = None if option in errors else outbound.resolve(host, "dns")[1]
        if problem:
            errors[option] = problem
    if errors:
        raise ValidationError(errors)
    return ({k: v for k, v in given.items() if k not in secret_names},
            {k: v for k, v in given.items() if k in secret_names})


def stored_secrets(zone: TechZone) -> dict[str, str]:
    return json.loads(zone.secrets) if zone.secrets else {}


def update(zone: TechZone, provider: str, options: dict[str, Any]) -> TechZone:
    """Change a zone's provider settings (the name stays: profiles and CNAMEs point at it).
    Secrets left empty keep their stored value while the provider stays the same."""
    kept = stored_secrets(zone) if provider == zone.provider else {}
    plain, secrets = _checked_options(provider, options, kept, {})
    changed = sorted({k for k in set(plain) | set(zone.options or {})
                      if plain.get(k) != (zone.options or {}).get(k)}
                     | {k for k in set(secrets) | set(kept) if secrets.get(k) != kept.get(k)})
    if provider != zone.provider:
        changed.insert(0, f"provider {zone.provider} → {provider}")
    zone.provider, zone.options, zone.secrets = provider, plain, json.dumps(secrets) if secrets else None
    # The old check said nothing about the new settings.
    zone.last_check_ok, zone.last_check_at, zone.last_check_message = None, None, ""
    # Field names only: secrets never enter the audit log.
    audit.record("technical zone edited", "zone", zone.id, f"{zone.name}: {', '.join(changed) or 'no changes'}")
    db.session().commit()
    return zone


def dependents(zone: TechZone) -> tuple[list[Certificate], list[str], str]:
    """What stops the zone from going: (certificates that order through it, live values or
    CNAMEs SSL Manager keeps in it, a note when the provider could not list them)."""
    s = db.session()
    certs = list(s.execute(select(Certificate).join(CAProfile, CAProfile.id == Certificate.profile_id)
                           .where(CAProfile.dns_zone == zone.name, Certificate.status.not_in(DONE))
                           .order_by(Certificate.id)).scalars())
    recorded = [f"{name} {value}" for name, value in s.execute(
        select(DnsRecord.name, DnsRecord.value).filter_by(zone=zone.name).order_by(DnsRecord.name))]
    # A customer zone (options role=customer) holds CNAMEs we made, recorded; never TXT values.
    if (zone.options or {}).get("role") == "customer":
        return certs, recorded, ""
    try:
        live = provider_for(zone.name).list_txt()
    except SSLManagerError as exc:  # a zone stuck on a wrong secret: go by what we wrote
        return certs, recorded, f"the provider could not list the zone ({exc}); going by the values SSL Manager recorded"
    return certs, [f"{name} TXT {value}" for name, values in sorted(live.items()) for value in values], ""


def delete(zone: TechZone, *, actor: str | None = None) -> None:
    """Remove a zone no certificate orders through and that holds no live value.
    Conflict names the certificates and values that depend on it."""
    certs, values, note = dependents(zone)
    if certs or values:
        parts = []
        if certs:
            shown = ", ".join(f"#{c.id} {c.common_name} ({c.status})" for c in certs[:10])
            more = f" and {len(certs) - 10} more" if len(certs) > 10 else ""
            parts.append(f"{len(certs)} certificate{'s order' if len(certs) != 1 else ' orders'} through it: {shown}{more}")
        if values:
            shown = "; ".join(values[:10]) + (f"; and {len(values) - 10} more" if len(values) > 10 else "")
            parts.append(f"it holds {len(values)} live value{'s' if len(values) != 1 else ''}: {shown}")
        raise Conflict(f"The zone {zone.name} cannot be deleted: " + "; ".join(parts) + ".",
                       hint=("Delete or reissue those certificates under a profile with another zone, "
                             "and let the sweeper (Sweep now in DNS Manager) remove the values."
                             + (f" Note: {note}." if note else "")))
    s = db.session()
    s.execute(DnsRecord.__table__.delete().where(DnsRecord.zone == zone.name))
    audit.record("technical zone deleted", "zone", zone.id, f"{zone.name} ({zone.provider})", actor=actor)
    s.delete(zone)
    s.commit()


def provider_for(zone_name: str, *, timeout: float = 10.0) -> DnsProvider:
    """A ready provider for the technical zone, with its secrets decrypted."""
    try:
        zone = get(zone_name)
    except NotFound as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    options: dict[str, Any] = dict(zone.options or {})
    options.update(stored_secrets(zone))
    if zone.provider == "builtin":
        options["_engine"] = current_app.extensions["sslmanager"].engine
    return get_provider_class(zone.provider)(zone.name, options, timeout=timeout,
                                             policy=addresses.policy())


def check(zone: TechZone) -> tuple[bool, str]:
    """Run the provider's health check and record it on the zone."""
    try:
        health = provider_for(zone.name).health()
        ok, message = health.ok, health.message
    except DnsError as exc:
        ok, message = False, str(exc)
    zone.last_check_ok, zone.last_check_at, zone.last_check_message = ok, utcnow(), message
    db.session().commit()
    return ok, message
