"""Notifications: email over SMTP and signed JSON webhooks, per CA profile or global.

One event reaches each channel once, whichever process sends it: the NotificationSent row
(unique on dedupe key and channel) is inserted and committed BEFORE sending, and a process
that loses that insert skips. The price is at-most-once: a process that dies between the
insert and the send loses that one notification (the row stays with ok NULL).
The transport (SMTP, signed POST, retries) is in notification_senders.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import and_, delete, or_, select
from sqlalchemy.exc import IntegrityError

from .. import db
from ..models import CAProfile, Certificate, NotificationChannel, NotificationSent, utcnow
from . import addresses, audit, lifetimes
from . import notification_senders as senders
from .notification_messages import EVENTS, build, key_for
from .notification_senders import SIGNATURE_HEADER, DeliveryError, Message  # noqa: F401 (the page shows it)
from .timeline import Timeline
# The channels and options the page saves live in notification_channels; callers reach the
# whole of notifications through here.
from .notification_channels import (DEFAULT_EXPIRY_DAYS, DEFAULT_PORTS, KINDS, SECURITY,  # noqa: F401
                                    WEBHOOK_SECRET_MIN, all_channels, by_name, delete_channel,
                                    expiry_days, get_channel, get_setting, save_channel,
                                    save_options, set_setting, target, url_problem,
                                    validate_channel, vetted_webhook, webhook_allowlist)

log = logging.getLogger("sslmanager.notifications")

KEEP_SENT = timedelta(days=400)  # longer than any certificate's lifetime (398 days at most)


# -- sending -----------------------------------------------------------------------------------

def deliver(channel: NotificationChannel, message: Message, *, attempts: int | None = None) -> int:
    """Send through one channel with this app's limits; returns the attempts, raises DeliveryError.
    `attempts` overrides SSLMANAGER_WEBHOOK_ATTEMPTS (Send test tries once)."""
    cfg = current_app.config
    if channel.kind == "email":
        # Judged again at send time, and the connection goes to the very address judged.
        host = channel.settings["host"]
        address, problem = addresses.policy().resolve(host, "smtp")
        where = f"{host}:{channel.settings.get('port', '')}"
        if problem:
            raise DeliveryError(problem, step="SMTP connect", url=where, attempts=0)
        if address is None:
            raise DeliveryError(f"cannot resolve the SMTP host {host}", step="SMTP connect", url=where,
                                attempts=0, hint="Check the host name and this machine's DNS.")
        return senders.send_email(channel.settings, channel.secret, message,
                                  timeout=cfg["SSLMANAGER_NOTIFY_TIMEOUT"], address=address)
    url = channel.settings["url"]
    # Checked again at send time (the allow-list or the name's addresses may have changed), and
    # the request goes to the address judged here, not to a second lookup's answer.
    address, problem = vetted_webhook(url)
    if problem:
        raise DeliveryError(problem, step="webhook", url=url, attempts=0)
    return senders.send_webhook(url, channel.secret, message, timeout=cfg["SSLMANAGER_NOTIFY_TIMEOUT"],
                                address=address,
                                attempts=attempts or int(cfg["SSLMANAGER_WEBHOOK_ATTEMPTS"]),
                                backoff=float(cfg["SSLMANAGER_WEBHOOK_BACKOFF"]))


@dataclass
class Delivery:
    channel: str
    status: str          # sent, failed, duplicate
    error: str = ""
    attempts: int = 0


def enabled_channels() -> list[NotificationChannel]:
    return db.session().execute(select(NotificationChannel).where(
        NotificationChannel.enabled.is_(True)).order_by(NotificationChannel.id)).scalars().all()


def channels_for(event: str, profile_id: int | None,
                 enabled: list[NotificationChannel] | None = None) -> list[NotificationChannel]:
    """Enabled channels for this event: the global ones and the CA profile's own (picked from
    `enabled` when the caller loaded them once for many events)."""
    if enabled is None:
        enabled = enabled_channels()
    return [c for c in enabled if (c.profile_id is None or c.profile_id == profile_id)
            and (not c.events or event in c.events)]


def emit(event: str, cert: Certificate | None = None, *, profile: CAProfile | None = None,
         days: int | None = None, error: str | None = None, hint: str | None = None, reason: str = "",
         now: datetime | None = None, enabled: list[NotificationChannel] | None = None,
         sent: set[tuple[str, int]] | None = None) -> list[Delivery]:
    """Send `event` to every matching channel, once per channel whichever process asks.
    `enabled` (the enabled channels) and `sent` (the (dedupe key, channel) pairs already in
    the table) let a scan over thousands of certificates skip the queries for each one.

    Commits the caller's session first (the row insert must not wait on our own lock, and a
    lost insert's rollback must not take the caller's work with it)."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    if profile is None and cert is not None:
        profile = db.session().get(CAProfile, cert.profile_id)
    targets = channels_for(event, profile.id if profile is not None else None, enabled)
    if not targets:
        return []
    if sent is not None:  # known duplicates: no message to write, no insert to lose, no commit
        key = key_for(event, cert, profile, days=days, now=now)
        done = [c for c in targets if (key, c.id) in sent]
        targets = [c for c in targets if c not in done]
        if not targets:
            return [Delivery(c.name, "duplicate") for c in done]
    if cert is not None and event == "renewal-failed":
        error = cert.last_error if error is None else error
        hint = cert.last_error_hint if hint is None else hint
    message = build(event, cert, profile, days=days, error=error or "", hint=hint or "", reason=reason, now=now)
    s = db.session()
    s.commit()
    results = []
    for channel in targets:
        channel_id, name = channel.id, channel.name
        row = NotificationSent(dedupe_key=message.dedupe_key, channel_id=channel_id, event=event,
                               certificate_id=message.certificate_id, ok=None, error="", attempts=0)
        s.add(row)
        try:
            s.commit()  # the unique (dedupe_key, channel) decides who sends
        except IntegrityError:
            s.rollback()
            results.append(Delivery(name, "duplicate"))
            continue
        try:
            row.attempts, row.ok = deliver(channel, message), True
            results.append(Delivery(name, "sent", attempts=row.attempts))
            log.info("notification %s sent via %s", message.dedupe_key, name)
        except DeliveryError as exc:
            row.ok, row.error, row.attempts = False, str(exc)[:2000], exc.attempts
            results.append(Delivery(name, "failed", str(exc), exc.attempts))
            log.warning("notification %s via %s failed: %s", message.dedupe_key, name, exc)
        s.commit()
    if cert is not None and results and any(r.status != "duplicate" for r in results):
        Timeline(cert)(f"notified ({EVENTS[event].lower()}): " + "; ".join(
            f"{r.channel} {r.status}" + (f" ({r.error})" if r.error else "")
            for r in results if r.status != "duplicate"),
            "info" if all(r.status != "failed" for r in results) else "warning")
        s.commit()
    return results


@dataclass
class TestResult:
    ok: bool
    message: str
    hint: str = ""
    attempts: int = 0
    details: list[str] = field(default_factory=list)
    step: str = ""   # where it failed ("SMTP STARTTLS", "webhook connect"...)
    url: str = ""    # the server involved


def send_test(channel: NotificationChannel) -> TestResult:
    """Send Test: a sample message through this channel now (not deduplicated), result saved."""
    message = build("test", dedupe_key=f"test:{channel.id}:{time.time_ns()}")
    message.subject = f"[SSL Manager] Test notification: {channel.name}"
    message.text = (f"This is a test from SSL Manager's notification channel {channel.name!r}.\n"
                    f"If you read this, {KINDS[channel.kind].lower()} notifications work.\n")
    message.payload.update({"title": "Test notification", "channel": channel.name})
    try:
        # One attempt, no backoff: the answer comes within SSLMANAGER_NOTIFY_TIMEOUT.
        attempts = deliver(channel, message, attempts=1)
        result = TestResult(True, f"Sent to {target(channel)}.", attempts=attempts)
    except DeliveryError as exc:
        result = TestResult(False, exc.message, exc.hint, exc.attempts, step=exc.step, url=exc.url)
    channel.last_test_ok, channel.last_test_at = result.ok, utcnow()
    channel.last_test_message = (f"{result.step}: " if result.step else "") + result.message[:2000]
    audit.record("notification channel tested", "notification_channel", channel.id,
                 f"{channel.name}: {'sent' if result.ok else 'failed'}")
    db.session().commit()
    return result


# -- the periodic look -------------------------------------------------------------------------

def will_not_renew(cert: Certificate, now: datetime) -> str:
    """Why this certificate will not be renewed in time by itself ("" when it will)."""
    if not cert.auto_renew:
        return "auto-renew is off"
    if cert.status != "active":
        return f"the certificate is {cert.status}"
    if cert.failing_since is not None:
        return f"renewal failing since {cert.failing_since:%Y-%m-%d %H:%M} UTC: {cert.last_error}"
    if cert.delegation_ok is False:
        what = ("its _validation-persist record no longer authorizes it"
                if cert.validation == "dns-persist-01" else "the _acme-challenge CNAME is broken")
        return f"{what}: {cert.delegation_message}"
    if cert.renew_at is None:
        return "no renewal is planned"
    if cert.not_after and cert.renew_at >= cert.not_after:
        return "the renewal is planned after expiry"
    if cert.renew_at < now - lifetimes.overdue_grace(lifetimes.lifetime(cert.not_before, cert.not_after)):
        return (f"renewal overdue since {cert.renew_at:%Y-%m-%d %H:%M} UTC: is the scheduler "
                "(`sslmanager run` or `sslmanager worker`) running?")
    return ""


def _all_sent(event: str, cert, profile: CAProfile | None, days: int | None, now: datetime, *,
              enabled: list[NotificationChannel], sent: set[tuple[str, int]]) -> bool:
    """Has every channel for this event had this notice already (or is there none)?"""
    key = key_for(event, cert, profile, days=days, now=now)
    return all((key, ch.id) in sent for ch in channels_for(event, profile.id if profile else None, enabled))


def scan(now: datetime | None = None) -> dict[str, int]:
    """The hourly look (one node, under a lease): expiring certificates that will not renew in
    time, renewals still failing (daily), broken delegations (daily), CA profiles failing their
    test (daily). The dedupe keys make a second look the same day send nothing again."""
    now = now or utcnow()
    days = sorted(expiry_days())
    sent: dict[str, int] = {}

    def count(event: str, results: list[Delivery]) -> None:
        sent[event] = sent.get(event, 0) + sum(r.status == "sent" for r in results)
    # Loaded once for the whole look: with thousands of certificates a query (and a commit)
    # per certificate took seconds, and nearly every one is a duplicate or has no channel.
    enabled = enabled_channels()
    done = {(key, channel_id) for key, channel_id in db.session().execute(
        select(NotificationSent.dedupe_key, NotificationSent.channel_id))} if enabled else set()
    once = {"enabled": enabled, "sent": done}
    horizon = now + timedelta(days=max(days, default=0))
    # Only what can send something: the expiring ones that will not renew by themselves (the
    # conditions of will_not_renew, which still decides), failing renewals, broken delegations.
    # With 100,000 certificates the look once read the ~30,000 expiring within the horizon.
    c = Certificate
    columns = (c.id, c.profile_id, c.attempt_profile_id, c.status, c.auto_renew, c.serial, c.validation,
               c.not_before, c.not_after, c.renew_at, c.failing_since, c.last_error, c.delegation_ok,
               c.delegation_message)
    # Plain rows, not certificate objects: on a steady hour nearly every notice was sent
    # already, and loading 30,000 objects to learn that took most of the look. The object is
    # loaded (and the message written) only for a notice still to send.
    rows = db.session().execute(select(*columns).where(
        c.status.in_(("active", "failed")), c.not_after > now,
        or_(and_(c.not_after <= horizon, or_(
            c.auto_renew.is_(False), c.status != "active", c.failing_since.is_not(None),
            c.delegation_ok.is_(False), c.renew_at.is_(None), c.renew_at >= c.not_after,
            c.renew_at < now - lifetimes.OVERDUE_FLOOR)),  # the shortest grace (short-lived)
            c.failing_since.is_not(None), c.delegation_ok.is_(False)))
        .order_by(c.id)).all() if enabled else []
    # Held here: the session's identity map keeps objects only while something refers to them.
    profiles = {p.id: p for p in db.session().execute(select(CAProfile)).scalars()} if enabled else {}
    for row in rows:
        why = will_not_renew(row, now)
        # The days are set for 90-day certificates; a shorter one's shrink with its lifetime.
        life = lifetimes.lifetime(row.not_before, row.not_after)
        crossed = [d for d in days if row.not_after - now <= lifetimes.scaled(timedelta(days=d), life)]
        profile = profiles.get(row.profile_id)
        due = []
        if why and crossed:
            due.append(("expiring", {"days": crossed[0], "reason": why}))
        if row.failing_since is not None and row.status == "active":
            due.append(("renewal-failed", {}))
        if row.delegation_ok is False:
            due.append(("delegation-broken", {"error": row.delegation_message}))
        for event, extra in due:
            if _all_sent(event, row, profile, extra.get("days"), now, **once):
                count(event, [])
                continue
            cert = db.session().get(Certificate, row.id)
            count(event, emit(event, cert, profile=profile, now=now, **extra, **once))
    for profile in profiles.values():
        if profile.last_test_ok is False:
            count("profile-failing", emit("profile-failing", profile=profile,
                                          error=profile.last_test_message, now=now, **once))
    # Keys older than any certificate's lifetime can never come again: keep the table small.
    db.session().execute(delete(NotificationSent).where(NotificationSent.created_at < now - KEEP_SENT))
    db.session().commit()
    return sent

