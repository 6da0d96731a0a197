"""Technical zones and the DNS provider that writes each one's TXT records."""
from __future__ import annotations

import json
from typing import Any

from flask import current_app
from sqlalchemy import select

from .. import db
from ..dns.base import DnsProvider, get_provider_class
from ..errors import ConfigError, DnsError, NotFound, ValidationError
from ..models import TechZone, utcnow
from . import addresses, audit
from .ca_profiles import is_fqdn


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
        errors["name"] = f"The zone {name} is already configured."
    try:
        cls = get_provider_class(provider)
    except DnsError as exc:
        errors["provider"] = exc.message
        raise ValidationError(errors) from None
    given = {k: str(v) for k, v in options.items() if v not in (None, "")}
    settings = {o.name: given.get(o.name, o.default) for o in cls.options}
    errors.update(cls.validate_options(settings))
    outbound = addresses.policy()
    for option, host in cls.address_fields(settings).items():
        problem = None if option in errors else outbound.resolve(host, "dns")[1]
        if problem:
            errors[option] = problem
    if errors:
        raise ValidationError(errors)
    secret_names = {o.name for o in cls.options if o.secret}
    zone = TechZone(name=name, provider=provider,
                    options={k: v for k, v in given.items() if k not in secret_names},
                    secrets=json.dumps({k: v for k, v in given.items() if k in secret_names}) or None)
    db.session().add(zone)
    db.session().flush()
    audit.record("technical zone added", "zone", zone.id, f"{name} ({provider})")
    db.session().commit()
    return zone


def provider_for(zone_name: str, *, timeout: float = 10.0) -> DnsProvider:
    """A ready provider for the technical zone, with its secrets decrypted."""
    try:
        zone = get(zone_name)
    except NotFound as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    options: dict[str, Any] = dict(zone.options or {})
    options.update(json.loads(zone.secrets) if zone.secrets else {})
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
