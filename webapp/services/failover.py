"""CA failover per certificate: the ordered fallback lists (a certificate's own, else its CA
profile's default), each profile's health as issuance sees it, and the decision to issue
through the next profile when the current one cannot issue and the expiry is close.

The rules (README "CA failover"):
- a profile cannot issue when its directory has been unreachable for longer than
  SSLMANAGER_FAILOVER_UNREACHABLE, when it is rate limited past the renewal deadline, after
  SSLMANAGER_FAILOVER_SERVER_ERRORS serverInternal answers in a row, or when it refused the account;
- the expiry is close once a third of the current version's lifetime remains (a first issuance,
  or a version revoked or expired, is always close); a first issuance also fails over when its
  attempts run out (SSLMANAGER_MAX_ATTEMPTS) on a CA that fails for transient reasons;
- every new version clears the choice: the next renewal tries the primary first, and fails over
  again (at once, its health being known) only while it still cannot issue.

No Flask request here and no call up to the pipeline: it decides and records; the pipeline acts.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select

from .. import db
from ..errors import AcmeError, AcmeNetworkError, AcmeRateLimited, SSLManagerError, ValidationError
from ..models import CAFallback, CAProfile, Certificate, CertificateVersion, utcnow
from . import audit
from .accounts import plugin_for, view_of
from .timeline import Timeline

MAX_FALLBACKS = 3
ACCOUNT_STEPS = ("new account", "find account", "update account", "new order")
ACCOUNT_REFUSALS = (":unauthorized", ":accountDoesNotExist", ":externalAccountRequired",
                    ":userActionRequired")


# -- the lists ---------------------------------------------------------------------------------

def _profile(profile_id: int | None) -> CAProfile | None:
    return db.session().get(CAProfile, profile_id) if profile_id else None


def _listed(owner) -> list[CAProfile]:
    rows = db.session().execute(select(CAProfile).join(CAFallback, CAFallback.fallback_id == CAProfile.id)
                                .where(owner).order_by(CAFallback.position)).scalars()
    return list(rows)


def own_fallbacks(cert: Certificate) -> list[CAProfile]:
    """The certificate's own fallback list (empty: it takes its profile's default)."""
    return _listed(CAFallback.certificate_id == cert.id)


def profile_fallbacks(profile: CAProfile) -> list[CAProfile]:
    """The profile's default fallback list for its certificates."""
    return _listed(CAFallback.owner_profile_id == profile.id)


def fallbacks(cert: Certificate) -> list[CAProfile]:
    """The fallbacks in force: the certificate's own list, else its profile's default."""
    own = own_fallbacks(cert)
    if own:
        return own
    primary = _profile(cert.profile_id)
    return [p for p in profile_fallbacks(primary) if p.id != cert.profile_id] if primary else []


def chain(cert: Certificate) -> list[CAProfile]:
    """Primary first, then the fallbacks in order."""
    primary = _profile(cert.profile_id)
    return ([primary] if primary else []) + fallbacks(cert)


def parse(values: dict[str, Any], primary_id: int | None, field: str = "fallback") -> list[int] | None:
    """Fallback profile ids from a form (fallback_1 .. fallback_3) or the CLI (`fallbacks`: ids or
    names), in order; None when the values carry no fallback field at all (leave the list as it is).
    Raises ValidationError naming the field."""
    if "fallbacks" in values:
        raw = list(values["fallbacks"] or [])
    elif any(f"{field}_{i}" in values for i in range(1, MAX_FALLBACKS + 1)):
        raw = [values.get(f"{field}_{i}") for i in range(1, MAX_FALLBACKS + 1)]
    else:
        return None
    ids: list[int] = []
    for given in (str(r).strip() for r in raw if r not in (None, "")):
        found = _profile(int(given)) if given.isdigit() else db.session().execute(
            select(CAProfile).filter_by(name=given)).scalar_one_or_none()
        if found is None:
            raise ValidationError({field: f"No CA profile {given!r} to fall back to; choose one "
                                          "from the list (`sslmanager ca list`)."})
        if found.id == primary_id:
            raise ValidationError({field: f"{found.name} is the primary CA profile; a fallback "
                                          "must be another profile."})
        if found.id in ids:
            raise ValidationError({field: f"{found.name} is listed twice; list each fallback once."})
        if _per_certificate_account(found):
            raise ValidationError({field: f"{found.name} gives each certificate its own ACME "
                                          "account (no account keys); give it EAB keys to use it "
                                          "as a fallback."})
        ids.append(found.id)
    if len(ids) > MAX_FALLBACKS:
        raise ValidationError({field: f"List at most {MAX_FALLBACKS} fallbacks."})
    return ids


def _per_certificate_account(profile: CAProfile) -> bool:
    try:
        return plugin_for(profile).account_per_certificate(view_of(profile))
    except SSLManagerError:
        return False


def set_certificate_fallbacks(cert: Certificate, ids: list[int]) -> None:
    """Replace the certificate's own list (empty: its profile's default applies). Not committed."""
    _replace(CAFallback.certificate_id == cert.id, ids, certificate_id=cert.id)
    audit.record("certificate fallbacks set", "certificate", cert.id, _names(ids))


def set_profile_fallbacks(profile: CAProfile, ids: list[int]) -> None:
    """Replace the profile's default list. Not committed."""
    _replace(CAFallback.owner_profile_id == profile.id, ids, owner_profile_id=profile.id)


def _replace(owner, ids: list[int], **key: int) -> None:
    db.session().execute(delete(CAFallback).where(owner))
    for position, fallback_id in enumerate(ids, 1):
        db.session().add(CAFallback(fallback_id=fallback_id, position=position, **key))
    db.session().flush()


def _names(ids: list[int]) -> str:
    return ", ".join(p.name for p in (_profile(i) for i in ids) if p) or "none (the profile's default)"


def forget_certificate(cert_id: int) -> None:
    """The certificate is deleted: its list goes too (host SQLite may not enforce foreign keys)."""
    db.session().execute(delete(CAFallback).where(CAFallback.certificate_id == cert_id))


def forget_profile(profile_id: int) -> None:
    """The profile is deleted: its default list goes too."""
    db.session().execute(delete(CAFallback).where(CAFallback.owner_profile_id == profile_id))


def fallback_users(profile: CAProfile) -> int:
    """How many lists name the profile as a fallback (a profile in use cannot be deleted)."""
    return len(db.session().execute(select(CAFallback.id).where(CAFallback.fallback_id == profile.id)).all())


def other_zone(primary: CAProfile | None, fallback: CAProfile) -> bool:
    """A fallback on another technical zone needs other _acme-challenge CNAMEs."""
    return primary is not None and fallback.dns_zone != primary.dns_zone


# -- which profile issues ----------------------------------------------------------------------

def attempt_profile(cert: Certificate) -> CAProfile:
    """The profile this certificate's attempt in flight uses: a fallback after failing over,
    else its own."""
    return _profile(cert.attempt_profile_id) or _profile(cert.profile_id)  # type: ignore[return-value]


def issuing_profile(cert: Certificate, version: CertificateVersion | None) -> CAProfile:
    """The profile that issued `version` (its ARI, its revocation), else the certificate's own."""
    return (_profile(version.profile_id) if version is not None else None) or _profile(cert.profile_id)  # type: ignore[return-value]


def issued(cert: Certificate, version: CertificateVersion) -> None:
    """A version was issued: note which profile and why, the profile is healthy, and the next
    renewal starts from the primary again. Not committed (saved with the version)."""
    profile = attempt_profile(cert)
    version.profile_id, version.failover_reason = profile.id, cert.failover_reason if cert.attempt_profile_id else ""
    profile.healthy_again()
    if cert.attempt_profile_id:
        Timeline(cert)(f"failover: issued by the fallback {profile.name}; the next renewal tries "
                       f"{_profile(cert.profile_id).name} first again")
    cert.attempt_profile_id, cert.failover_reason = None, ""


# -- health and the decision -------------------------------------------------------------------

def _setting(key: str) -> int:
    return int(current_app.config[key])


def record(profile: CAProfile, exc: SSLManagerError, now: datetime) -> None:
    """What a failed attempt says about the profile's CA."""
    if isinstance(exc, AcmeNetworkError):
        gap = max(2 * _setting("SSLMANAGER_FAILOVER_UNREACHABLE"), 3600)
        # A streak is only as continuous as its sightings: after a long silence it starts again.
        if profile.unreachable_seen_at is None or now - profile.unreachable_seen_at > timedelta(seconds=gap):
            profile.unreachable_since = now
        profile.unreachable_seen_at = now
        return
    if not isinstance(exc, AcmeError) or isinstance(exc, AcmeRateLimited):
        return  # DNS, our own errors, a rate limit (stored apart): nothing about the CA's health
    profile.unreachable_since = profile.unreachable_seen_at = None  # it answered
    if exc.problem_type.endswith(":serverInternal"):
        profile.server_errors = (profile.server_errors or 0) + 1
    else:
        profile.server_errors = 0
    if exc.step in ACCOUNT_STEPS and exc.problem_type.endswith(ACCOUNT_REFUSALS):
        profile.account_refused = str(exc)[:1000]


def cannot_issue(profile: CAProfile, deadline: datetime, now: datetime, *,
                 unreachable: int, server_errors: int) -> str:
    """Why the profile cannot issue in time ("" when it may): the rules, as plain values."""
    if profile.account_refused:
        return f"{profile.name} refused the ACME account ({profile.account_refused})"
    if profile.rate_limited_until and profile.rate_limited_until > deadline:
        return (f"{profile.name} is rate limited until {profile.rate_limited_until:%Y-%m-%d %H:%M} UTC, "
                f"past the renewal deadline {deadline:%Y-%m-%d %H:%M} UTC")
    if (profile.server_errors or 0) >= server_errors:
        return f"{profile.name} answered serverInternal {profile.server_errors} times in a row"
    if profile.unreachable_since and now - profile.unreachable_since >= timedelta(seconds=unreachable):
        return (f"{profile.name}'s directory has been unreachable since "
                f"{profile.unreachable_since:%Y-%m-%d %H:%M:%S} UTC")
    return ""


def serving(cert: Certificate) -> CertificateVersion | None:
    """The version clients use now: the latest, unless revoked or expired."""
    version = db.session().execute(select(CertificateVersion).filter_by(certificate_id=cert.id)
                                   .order_by(CertificateVersion.number.desc()).limit(1)).scalar_one_or_none()
    if version is None or version.revoked_at is not None or version.not_after <= utcnow():
        return None
    return version


def margin_reached(version: CertificateVersion | None, now: datetime) -> bool:
    """Close to expiry: a third of the lifetime left (nothing serving: always)."""
    if version is None:
        return True
    return now >= version.not_after - (version.not_after - version.not_before) / 3


def deadline(version: CertificateVersion | None, now: datetime) -> datetime:
    """The renewal deadline a rate limit is measured against: a sixth of the lifetime before
    expiry (half the margin, so a fallback still has time); for a first issuance, as long as an
    unreachable CA is waited for."""
    if version is None:
        return now + timedelta(seconds=_setting("SSLMANAGER_FAILOVER_UNREACHABLE"))
    return version.not_after - (version.not_after - version.not_before) / 6


@dataclass
class Decision:
    """What failover made of a failed attempt."""

    to: CAProfile | None = None   # the profile the next attempt uses after failing over
    reason: str = ""              # why the profile it left cannot issue
    retry_within: timedelta | None = None  # try again no later than this (the rules may change)


def decide(cert: Certificate, exc: SSLManagerError, *, attempts_exhausted: bool = False,
           now: datetime | None = None) -> Decision:
    """After a failed attempt: record the profile's health, then fail over when the rules say so
    (the certificate's attempt_profile_id, failover_reason, timeline and audit set here; the
    caller commits and notifies). Nothing happens to a certificate without fallbacks."""
    now = now or utcnow()
    current = attempt_profile(cert)
    record(current, exc, now)
    if isinstance(exc, AcmeRateLimited) and exc.retry_after:
        until = now + timedelta(seconds=exc.retry_after)
        current.rate_limited_until = max(current.rate_limited_until or until, until)
    order = chain(cert)
    if len(order) < 2:
        return Decision()
    version = serving(cert)
    limits = {"unreachable": _setting("SSLMANAGER_FAILOVER_UNREACHABLE"),
              "server_errors": max(1, _setting("SSLMANAGER_FAILOVER_SERVER_ERRORS"))}
    when = deadline(version, now)
    why = cannot_issue(current, when, now, **limits)
    if not why and attempts_exhausted and version is None:
        why = f"{current.name} failed {cert.attempts} attempts in a row ({exc})"
    if not why:
        left = None
        if current.unreachable_since and margin_reached(version, now):
            left = current.unreachable_since + timedelta(seconds=limits["unreachable"]) - now
        return Decision(retry_within=max(left, timedelta(seconds=1)) if left is not None else None)
    if not margin_reached(version, now):
        return Decision(reason=why)  # far from expiry: keep retrying the same CA
    position = next((i for i, p in enumerate(order) if p.id == current.id), 0)
    nxt = next((p for p in order[position + 1:]
                if not cannot_issue(p, when, now, **limits)), None)
    timeline = Timeline(cert)
    if nxt is None:
        if cert.attempt_profile_id is not None:  # the list is used up: the primary again, with backoff
            cert.attempt_profile_id, cert.order_url = None, ""
        timeline(f"failover: {why}; no fallback can issue either", "warning")
        return Decision(reason=why)
    cert.attempt_profile_id = None if nxt.id == cert.profile_id else nxt.id
    cert.failover_reason, cert.order_url, cert.attempts = why, "", 0
    timeline(f"failover: {why}; the next attempt goes to {nxt.name}", "warning")
    audit.record("certificate failed over", "certificate", cert.id,
                 f"{', '.join(cert.domains)}: {current.name} → {nxt.name}: {why}"[:500])
    return Decision(to=nxt, reason=why)


def health_line(profile: CAProfile) -> str:
    """One line on the profile's health as failover sees it ("" when nothing is wrong)."""
    parts = []
    if profile.unreachable_since:
        parts.append(f"directory unreachable since {profile.unreachable_since:%Y-%m-%d %H:%M} UTC")
    if profile.server_errors:
        parts.append(f"{profile.server_errors} serverInternal in a row")
    if profile.account_refused:
        parts.append(f"account refused: {profile.account_refused}")
    return "; ".join(parts)

