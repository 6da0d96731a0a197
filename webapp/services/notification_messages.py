"""What a notification says: the events, and each one's subject, text (email) and JSON payload
(webhook), with the key that makes it one delivery per channel."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ..models import CAProfile, Certificate, utcnow
from . import domains, lifetimes
from .notification_senders import Message

EVENTS = {
    "issued": "Certificate issued",
    "renewed": "Certificate renewed",
    "renewal-failed": "Renewal failed",
    "failover": "Failed over to a fallback CA",
    "expiring": "Certificate expiring",
    "delegation-broken": "Delegation CNAME broken",
    "profile-failing": "CA profile test failing",
}

def key_for(event: str, cert: Certificate | None = None, profile: CAProfile | None = None, *,
            days: int | None = None, now: datetime | None = None) -> str:
    """The delivery's dedupe key: one notice per channel per key. Apart from build() so that
    the hourly scan can tell a notice already sent without writing its text."""
    today = f"{now or utcnow():%Y-%m-%d}"
    key_of = {
        "issued": lambda: f"issued:{cert.id}:{cert.serial}",
        "renewed": lambda: f"renewed:{cert.id}:{cert.serial}",
        "renewal-failed": lambda: f"renewal-failed:{cert.id}:{today}",
        "failover": lambda: f"failover:{cert.id}:{cert.attempt_profile_id or cert.profile_id}:{today}",
        "expiring": lambda: f"expiring:{cert.id}:{cert.serial}:{days}",
        "delegation-broken": lambda: f"delegation-broken:{cert.id}:{today}",
        "profile-failing": lambda: f"profile-failing:{profile.id}:{today}",
    }
    return key_of[event]()


def _names(cert: Certificate) -> str:
    return ", ".join(domains.to_unicode(n) for n in cert.domains)


def build(event: str, cert: Certificate | None = None, profile: CAProfile | None = None, *,
          days: int | None = None, error: str = "", hint: str = "", reason: str = "",
          now: datetime | None = None, dedupe_key: str | None = None) -> Message:
    """The subject, text and JSON payload of one event."""
    now = now or utcnow()
    title = EVENTS.get(event, "Test notification")
    # A certificate shorter than 90 days had its thresholds scaled down: say hours, not "0 days".
    life = lifetimes.lifetime(cert.not_before, cert.not_after) if cert is not None else None
    short = life is not None and life < lifetimes.REFERENCE
    if event == "expiring":
        title = (f"Certificate expiring in {lifetimes.duration(cert.not_after - now)}" if short
                 else f"Certificate expiring in {days} day{'s' if days != 1 else ''}")
    about = _names(cert) if cert is not None else (profile.name if profile is not None else "")
    subject = f"[SSL Manager] {title}" + (f": {about}" if about else "")
    if dedupe_key is None:
        dedupe_key = key_for(event, cert, profile, days=days, now=now)
    lines = [subject.removeprefix("[SSL Manager] "), ""]
    payload: dict[str, Any] = {"event": event, "title": title, "delivery": dedupe_key,
                               "at": now.isoformat(), "certificate": None, "profile": None}
    if cert is not None:
        left = (cert.not_after - now).days if cert.not_after else None
        lines += [f"Domains:      {_names(cert)}", f"Status:       {cert.status}"]
        if cert.serial:
            lines.append(f"Serial:       {cert.serial}")
        if cert.not_after:
            lines.append(f"Valid until:  {cert.not_after:%Y-%m-%d %H:%M} UTC ("
                         + (f"{lifetimes.duration(cert.not_after - now)} left)" if short else f"{left} days left)"))
        if cert.renew_at and cert.auto_renew:
            lines.append(f"Next renewal: {cert.renew_at:%Y-%m-%d %H:%M} UTC ({cert.renew_reason})")
        if cert.deploy_last_at and event in ("issued", "renewed"):
            lines.append(f"Deploy:       {'ok' if cert.deploy_last_ok else 'FAILED'}: {cert.deploy_last_message}")
        payload["certificate"] = {
            "id": cert.id, "domains": list(cert.domains), "common_name": cert.common_name,
            "status": cert.status, "serial": cert.serial,
            "not_after": cert.not_after.isoformat() if cert.not_after else None,
            "auto_renew": cert.auto_renew,
            "failing_since": cert.failing_since.isoformat() if cert.failing_since else None,
            "deploy_ok": cert.deploy_last_ok}
    if profile is not None:
        lines.append(f"CA profile:   {profile.name}")
        payload["profile"] = {"id": profile.id, "name": profile.name}
    if days is not None:
        payload["days"] = days
    for label, value, key in (("Why", reason, "reason"), ("Error", error, "error"), ("What to do", hint, "hint")):
        if value:
            lines += ["", f"{label}: {value}"]
            payload[key] = value
    lines += ["", f"Sent by SSL Manager at {now:%Y-%m-%d %H:%M:%S} UTC."]
    return Message(event, dedupe_key, subject, "\n".join(lines) + "\n", payload,
                   cert.id if cert is not None else None, profile.id if profile is not None else None)
