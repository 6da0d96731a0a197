"""When to renew (ARI, else the lifetime rule, else the profile's override) and renewing: a new
version of the same certificate, same names and CNAMEs, a new key by default."""
from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, or_, select, update

from .. import db
from ..acme.client import generate_account_key
from ..crypto import generate_private_key, make_csr
from ..errors import SSLManagerError
from ..models import CAProfile, Certificate, CertificateVersion, Status, Step, utcnow
from . import audit, ca_profiles, certificates, claims, failover, lifetimes
from .timeline import Timeline

log = logging.getLogger("sslmanager.renewals")


JITTER = 1 / 20  # the rule's renewal comes up to this share of the lifetime earlier, at random


def lifetime_rule(not_before: datetime, not_after: datetime, spread: float = 0.0) -> tuple[datetime, str]:
    """Renew when a third of the lifetime remains (half for lifetimes under 10 days), and
    `spread` (0..1) times a twentieth of the lifetime earlier: certificates issued together
    (a bulk import, a CA's outage) then do not all renew in the same minute. No later than
    the rule, so the margin for retries only grows."""
    life = not_after - not_before
    share, words = (2, "half") if life < timedelta(days=10) else (3, "a third")
    at = not_after - life / share - life * JITTER * spread
    reason = f"rule: {words} of the {lifetimes.adjective(life)} lifetime remains"
    if spread:
        reason += f", {lifetimes.duration(life * JITTER * spread)} earlier at random"
    return at, reason


def plan(cert: Certificate, version: CertificateVersion, profile: CAProfile,
         ari: dict | None, ari_error: str = "") -> None:
    """Set cert.renew_at and renew_reason for the version just issued: from the CA's renewal
    information (`ari`, RFC 9773) when it gave one, else the lifetime rule or the override."""
    if ari_error:  # ARI is advice: fall back to the rule, say so, and ask again later
        Timeline(cert)(f"renewal info unavailable ({ari_error}); using the lifetime rule", "warning")
        cert.ari_next_poll_at = utcnow() + timedelta(seconds=_poll_bounds()[0])
    if ari:
        _take_window(cert, version, ari, fresh=True)
        return
    cert.ari_window_start = cert.ari_window_end = None
    if not ari_error:  # the CA offers no renewalInfo: nothing to poll
        cert.ari_next_poll_at = None
    if profile.renew_days_before:
        at = version.not_after - timedelta(days=profile.renew_days_before)
        reason = f"profile override: {profile.renew_days_before} days before expiry"
        earliest = version.not_before + (version.not_after - version.not_before) / 2
        if at < earliest:  # an override longer than the lifetime would renew in a loop
            at, reason = earliest, reason + " (capped: never before half the lifetime)"
    else:
        at, reason = lifetime_rule(version.not_before, version.not_after, random.random())
    cert.renew_at, cert.renew_reason = at, reason
    Timeline(cert)(f"next renewal {at:%Y-%m-%d %H:%M} UTC ({reason})")


def ari_time(start: datetime, end: datetime, not_after: datetime, now: datetime, *,
             fresh: bool) -> tuple[datetime, str]:
    """When to renew inside the CA's window, and why. A random time in the window's first half
    (RFC 9773 4.2 asks for a random time, to spread the CA's load), so that retries with
    backoff (1, 2, 4 ... minutes, capped at 6 hours) still fit in the second half; the window
    is cut at not-after. A window already open means now; but for a version issued moments
    ago that would renew in a loop, so it waits for the next poll."""
    end = min(end, not_after)
    words = f"ARI window {start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
    if start > now and end > start:
        return start + (end - start) / 2 * random.random(), words
    if fresh:
        wait = timedelta(seconds=_poll_bounds()[0])
        return now + wait, words + (": already open for the certificate just issued; renewing "
                                    "after the next poll, not in a loop")
    return now, words + ": open, renewing now"


def _take_window(cert: Certificate, version: CertificateVersion, ari: dict, *, fresh: bool) -> None:
    """Store an ARI answer; re-plan when the window is new or moved; set the next poll."""
    now = utcnow()
    window = ari["suggestedWindow"]
    start, end = window["start"], window["end"]
    moved = (start, end) != (cert.ari_window_start, cert.ari_window_end)
    cert.ari_window_start, cert.ari_window_end = start, end
    cert.ari_explanation_url = (ari.get("explanationURL") or "")[:500]
    cert.ari_checked_at = now
    low, high, default = _poll_bounds()
    wait = min(max(ari.get("retryAfter") or default, low), high)
    cert.ari_next_poll_at = now + timedelta(seconds=wait * random.uniform(0.9, 1.0))
    if not (fresh or moved):
        return
    at, reason = ari_time(start, end, version.not_after, now, fresh=fresh)
    if cert.ari_explanation_url:
        reason += f" ({cert.ari_explanation_url})"
    cert.renew_at, cert.renew_reason = at, reason
    Timeline(cert)(("" if fresh else "the CA moved the renewal window: ")
                   + f"next renewal {at:%Y-%m-%d %H:%M} UTC ({reason})")


def _poll_bounds() -> tuple[int, int, int]:
    """(min, max, default) seconds between ARI polls, from the settings."""
    config = current_app.config
    low = max(1, int(config["SSLMANAGER_ARI_POLL_MIN"]))
    high = max(low, int(config["SSLMANAGER_ARI_POLL_MAX"]))
    return low, high, min(max(int(config["SSLMANAGER_ARI_POLL_DEFAULT"]), low), high)


def ari_due_clause(now: datetime):
    """SQL: an Active, auto-renewing certificate whose renewalInfo is due to be asked again."""
    return and_(Certificate.status == Status.ACTIVE, Certificate.auto_renew.is_(True),
                Certificate.ari_next_poll_at <= now)


def ari_due(limit: int = 500) -> list[int]:
    """Active, auto-renewing certificates whose renewalInfo is due to be asked again."""
    now = utcnow()
    rows = db.session().execute(
        select(Certificate.id).where(ari_due_clause(now), claims.unclaimed(now))
        .order_by(Certificate.ari_next_poll_at).limit(limit))
    return [r[0] for r in rows]


def poll_ari(cert_id: int, holder: str | None = None) -> str:
    """Ask the CA for the certificate's renewal window again (claimed, one process at a time),
    and re-plan when it moved: a window moved into the past ("renew now", e.g. after a mass
    revocation) makes the certificate due at once."""
    if not claims.claim(cert_id, holder):
        return "busy"
    try:
        cert = certificates.get(cert_id)
        version = certificates.current_version(cert)
        if cert.status != Status.ACTIVE or not cert.auto_renew or version is None:
            cert.ari_next_poll_at = None
            db.session().commit()
            return "skipped"
        profile = failover.issuing_profile(cert, version)  # ARI follows the CA that issued it
        key = profile.account_key or cert.account_key or generate_account_key().decode()
        client = ca_profiles.acme_client(profile, account_key=key)  # renewalInfo is a plain GET
        try:
            ari = client.renewal_info(version.cert_pem)
        except SSLManagerError as exc:
            # The plan stands; the log says so (a timeline line per hourly poll would drown it).
            log.warning("certificate %s: renewal info unavailable, keeping the plan: %s", cert_id, exc)
            cert.ari_checked_at = utcnow()
            cert.ari_next_poll_at = cert.ari_checked_at + timedelta(seconds=_poll_bounds()[0])
            db.session().commit()
            return "failed"
        finally:
            client.close()
        profile.unreachable_since = profile.unreachable_seen_at = None  # it answered
        if ari is None:  # the CA has no renewalInfo (any more): the plan stands, polls stop
            cert.ari_next_poll_at = None
        else:
            _take_window(cert, version, ari, fresh=False)
        db.session().commit()
        return "polled"
    finally:
        claims.release(cert_id, holder)


def due(limit: int = 500) -> list[int]:
    """Active, auto-renewing certificates whose renewal time has come (and not backing off)."""
    now = utcnow()
    rows = db.session().execute(
        select(Certificate.id).where(due_clause(now), claims.unclaimed(now))
        .order_by(Certificate.renew_at).limit(limit))
    return [r[0] for r in rows]


def due_clause(now: datetime):
    """SQL: an Active, auto-renewing certificate whose renewal time has come (not backing off).
    The scheduler's claim repeats it: a list read a moment before may be stale (another node
    renewed the certificate meanwhile), the claim's own UPDATE is not."""
    return and_(Certificate.status == Status.ACTIVE, Certificate.auto_renew.is_(True),
                Certificate.renew_at <= now,
                or_(Certificate.next_run_at.is_(None), Certificate.next_run_at <= now))


def start(cert: Certificate, *, reason: str = "due") -> None:
    """Turn an Active certificate into a renewal in progress: new key (unless reuse), new CSR.
    The current version stays downloadable until the new one is Active."""
    if not (cert.reuse_key and cert.private_key):
        cert.private_key = generate_private_key(cert.key_type)
    cert.csr = make_csr(cert.private_key, cert.domains)
    cert.status, cert.order_url, cert.step = Status.PROCESSING, "", Step.RENEWING
    Timeline(cert)(f"renewal started ({reason}): {'same' if cert.reuse_key else 'new'} key, new CSR")
    db.session().commit()


def expire() -> int:
    """Mark certificates past their not-after as Expired."""
    result = db.session().execute(update(Certificate).where(Certificate.status.in_((Status.ACTIVE, Status.FAILED)),
                                                            Certificate.not_after < utcnow())
                                  .values(status=Status.EXPIRED).execution_options(synchronize_session=False))
    db.session().commit()
    return result.rowcount


def recover_failed_renewal(cert: Certificate, delay: timedelta) -> bool:
    """A failed renewal keeps the current version serving: back to Active, retried later."""
    version = certificates.current_version(cert)
    if version is None or version.revoked_at or version.not_after <= utcnow():
        return False
    cert.status, cert.order_url = Status.ACTIVE, ""
    cert.private_key = version.private_key  # the key that matches what is served
    cert.next_run_at = utcnow() + delay
    audit.record("renewal failed", "certificate", cert.id,
                 f"{', '.join(cert.domains)}: {cert.last_error[:300]}")
    return True
