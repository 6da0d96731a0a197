"""When to renew (ARI, else the lifetime rule, else the profile's override) and renewing: a new
version of the same certificate, same names and CNAMEs, a new key by default."""
from __future__ import annotations

import random
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from .. import db
from ..acme_client import AcmeClient
from ..crypto import generate_private_key, make_csr
from ..errors import SSLManagerError
from ..models import CAProfile, Certificate, CertificateVersion, utcnow
from . import audit
from .issuance import Timeline


def lifetime_rule(not_before: datetime, not_after: datetime) -> tuple[datetime, str]:
    """Renew when a third of the lifetime remains (half for lifetimes under 10 days)."""
    lifetime = not_after - not_before
    share, words = (2, "half") if lifetime < timedelta(days=10) else (3, "a third")
    return not_after - lifetime / share, f"rule: {words} of the {lifetime.days}-day lifetime remains"


def plan(cert: Certificate, version: CertificateVersion, profile: CAProfile,
         client: AcmeClient | None) -> None:
    """Set cert.renew_at and renew_reason for the version just issued (or re-planned)."""
    ari = None
    if client is not None:
        try:
            ari = client.renewal_info(version.cert_pem)
        except SSLManagerError as exc:  # ARI is advice: fall back to the rule, say so
            Timeline(cert)(f"renewal info unavailable ({exc.message}); using the lifetime rule", "warning")
    if ari:
        window = ari["suggestedWindow"]
        start, end = window["start"], window["end"]
        at = start + (end - start) * random.random()  # spread load across the window (RFC 9773 4.2)
        reason = f"ARI window {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
        if ari.get("explanationURL"):
            reason += f" ({ari['explanationURL']})"
    elif profile.renew_days_before:
        at = version.not_after - timedelta(days=profile.renew_days_before)
        reason = f"profile override: {profile.renew_days_before} days before expiry"
        earliest = version.not_before + (version.not_after - version.not_before) / 2
        if at < earliest:  # an override longer than the lifetime would renew in a loop
            at, reason = earliest, reason + " (capped: never before half the lifetime)"
    else:
        at, reason = lifetime_rule(version.not_before, version.not_after)
    cert.renew_at, cert.renew_reason = at, reason
    Timeline(cert)(f"next renewal {at:%Y-%m-%d %H:%M} UTC ({reason})")


def due(limit: int = 500) -> list[int]:
    """Active, auto-renewing certificates whose renewal time has come (and not backing off)."""
    now = utcnow()
    rows = db.session().execute(
        select(Certificate.id).where(Certificate.status == "active", Certificate.auto_renew.is_(True),
                                     Certificate.renew_at <= now,
                                     or_(Certificate.next_run_at.is_(None), Certificate.next_run_at <= now))
        .order_by(Certificate.renew_at).limit(limit))
    return [r[0] for r in rows]


def start(cert: Certificate, *, reason: str = "due") -> None:
    """Turn an Active certificate into a renewal in progress: new key (unless reuse), new CSR.
    The current version stays downloadable until the new one is Active."""
    if not (cert.reuse_key and cert.private_key):
        cert.private_key = generate_private_key(cert.key_type)
    cert.csr = make_csr(cert.private_key, cert.domains)
    cert.status, cert.order_url, cert.step = "processing", "", "renewing"
    Timeline(cert)(f"renewal started ({reason}): {'same' if cert.reuse_key else 'new'} key, new CSR")
    db.session().commit()


def renew(cert_id: int, *, reason: str = "due") -> str:
    """Renew one certificate now (claimed, so one process at a time)."""
    from . import certificates
    if not certificates.claim(cert_id):
        return "busy"
    try:
        cert = certificates.get(cert_id)
        if cert.status != "active":
            return cert.status
        start(cert, reason=reason)
    finally:
        certificates.release(cert_id)
    return certificates.process(cert_id)


def renew_many(app, cert_ids: list[int], *, per_ca: int, reason: str = "requested",
               done=None) -> dict[int, str]:
    """Renew these certificates now, at most `per_ca` orders in flight per CA profile
    (bulk.per_ca: `done(id, status, domains, last_error)` as each finishes)."""
    from . import bulk
    return bulk.per_ca(app, cert_ids, lambda cert_id: renew(cert_id, reason=reason),
                       limit=per_ca, done=done)


def expire() -> int:
    """Mark certificates past their not-after as Expired."""
    result = db.session().execute(update(Certificate).where(Certificate.status.in_(("active", "failed")),
                                                            Certificate.not_after < utcnow())
                                  .values(status="expired").execution_options(synchronize_session=False))
    db.session().commit()
    return result.rowcount


def recover_failed_renewal(cert: Certificate, delay: timedelta) -> bool:
    """A failed renewal keeps the current version serving: back to Active, retried later."""
    from . import certificates
    version = certificates.current_version(cert)
    if version is None or version.revoked_at or version.not_after <= utcnow():
        return False
    cert.status, cert.order_url = "active", ""
    cert.private_key = version.private_key  # the key that matches what is served
    cert.next_run_at = utcnow() + delay
    audit.record("renewal failed", "certificate", cert.id,
                 f"{', '.join(cert.domains)}: {cert.last_error[:300]}")
    return True
