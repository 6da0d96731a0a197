"""Notifications: email over SMTP and signed JSON webhooks, per CA profile or global.

One event reaches each channel once, whichever process sends it: the NotificationSent row
(unique on dedupe key and channel) is inserted and committed BEFORE sending, and a process
that loses that insert skips. The price is at-most-once: a process that dies between the
insert and the send loses that one notification (the row stays with ok NULL).
The transport (SMTP, signed POST, retries) is in notification_senders.
"""
from __future__ import annotations

import logging
import re
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer

from .. import db
from ..errors import NotFound, ValidationError
from ..models import CAProfile, Certificate, NotificationChannel, NotificationSent, Setting, utcnow
from . import addresses, audit
from . import notification_senders as senders
from .addresses import checked_address
from .inputs import whole_number
from .notification_messages import EVENTS, build
from .notification_senders import SIGNATURE_HEADER, DeliveryError, Message
from .timeline import Timeline

log = logging.getLogger("sslmanager.notifications")

KINDS = {"email": "Email (SMTP)", "webhook": "Webhook"}
SECURITY = {"starttls": "STARTTLS", "tls": "Implicit TLS (SMTPS)", "none": "None (plain text)"}
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_EXPIRY_DAYS = [30, 14, 7, 1]
WEBHOOK_SECRET_MIN = 16
KEEP_SENT = timedelta(days=400)  # longer than any certificate's lifetime (398 days at most)
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:.]+\]?$")
_PATTERN = re.compile(r"^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$|^[0-9a-f:.]+$")


# -- settings ----------------------------------------------------------------------------------

def get_setting(key: str, default: Any = None) -> Any:
    row = db.session().get(Setting, key)
    return default if row is None else row.value


def set_setting(key: str, value: Any) -> None:
    """Set a setting in the session; the caller commits."""
    row = db.session().get(Setting, key)
    if row is None:
        db.session().add(Setting(key=key, value=value))
    else:
        row.value = value


def expiry_days() -> list[int]:
    """Days before expiry at which a certificate that will not renew in time is announced."""
    return sorted({int(d) for d in get_setting("expiry_days", DEFAULT_EXPIRY_DAYS)}, reverse=True)


def webhook_allowlist() -> list[str]:
    """Host patterns webhook URLs must match ("hooks.example.com", "*.example.com"); empty = any."""
    return list(get_setting("webhook_allowlist", []))


def save_options(values: dict[str, Any]) -> None:
    """The Notifications page's options: expiry reminder days and the webhook allow-list."""
    errors = {}
    days: list[int] = []
    for part in re.split(r"[,\s]+", str(values.get("expiry_days", "")).strip()):
        if not part:
            continue
        day = whole_number(part, 1, 365)
        if day is None:
            errors["expiry_days"] = "Enter whole numbers of days between 1 and 365, e.g. 30, 14, 7, 1."
            break
        days.append(day)
    if not errors and not days:
        errors["expiry_days"] = "Enter at least one number of days, e.g. 30, 14, 7, 1."
    patterns = [p.strip().lower().rstrip(".") for p in re.split(r"[,\s]+", str(values.get("webhook_allowlist", "")))
                if p.strip()]
    bad = [p for p in patterns if not _PATTERN.match(p)]
    if bad:
        errors["webhook_allowlist"] = (f"Not a host pattern: {', '.join(bad)}. Use a host name "
                                       "(hooks.example.com), *.example.com, or an IP address.")
    if errors:
        raise ValidationError(errors)
    set_setting("expiry_days", sorted(set(days), reverse=True))
    set_setting("webhook_allowlist", sorted(set(patterns)))
    audit.record("notification options saved", "setting", "notifications",
                 f"expiry days {', '.join(map(str, sorted(set(days), reverse=True)))}; "
                 f"webhook allow-list: {', '.join(sorted(set(patterns))) or 'any host'}")
    db.session().commit()


# -- channels ----------------------------------------------------------------------------------

def all_channels() -> list[NotificationChannel]:
    return list(db.session().execute(select(NotificationChannel).order_by(NotificationChannel.name)).scalars())


def get_channel(channel_id: int) -> NotificationChannel:
    channel = db.session().get(NotificationChannel, channel_id)
    if channel is None:
        raise NotFound(f"No notification channel with id {channel_id}.")
    return channel


def by_name(name: str) -> NotificationChannel:
    """A channel by name (case-insensitive) or by id."""
    channel = db.session().execute(select(NotificationChannel).where(
        func.lower(NotificationChannel.name) == name.strip().lower())).scalar_one_or_none()
    if channel is None and name.strip().isdecimal():
        channel = db.session().get(NotificationChannel, int(name))
    if channel is None:
        raise NotFound(f"No notification channel named {name!r}.",
                       hint="`sslmanager notify list` shows the channels.")
    return channel


def target(channel: NotificationChannel) -> str:
    """Where a channel sends, for lists (never a secret)."""
    s = channel.settings or {}
    if channel.kind == "email":
        return f"{', '.join(s.get('to', []))} via {s.get('host', '?')}:{s.get('port', '?')}"
    return s.get("url", "")


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in {"1", "true", "on", "yes", "y"}


def _email(value: str) -> str | None:
    from email_validator import EmailNotValidError, validate_email  # ~20 ms at import: forms only
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def validate_channel(channel: NotificationChannel | None, kind: str, values: dict[str, Any]) -> tuple[dict, str | None]:
    """Check the form; returns the clean columns and the secret to store (None = none)."""
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {"kind": kind}
    if kind not in KINDS:
        raise ValidationError({"kind": "Choose email or webhook."})
    name = str(values.get("name", "")).strip()
    # The exact name too: SQL lower() may leave non-ASCII letters alone ("Ê"), Python's does not.
    taken = select(NotificationChannel.id).where(or_(func.lower(NotificationChannel.name) == name.lower(),
                                                     NotificationChannel.name == name))
    if channel is not None:
        taken = taken.where(NotificationChannel.id != channel.id)
    if not name:
        errors["name"] = "Enter a name, e.g. Ops mailbox."
    elif len(name) > 100:
        errors["name"] = "Keep the name under 100 characters."
    elif any(ord(c) < 32 for c in name):
        errors["name"] = "Use a name on one line, without control characters."
    elif db.session().execute(taken).first():
        errors["name"] = f"A channel named {name!r} already exists; choose another name."
    clean["name"] = name
    clean["enabled"] = _truthy(values.get("enabled"))
    raw_profile = str(values.get("profile_id") or "").strip()
    clean["profile_id"] = None
    if raw_profile:
        profile_id = whole_number(raw_profile, 1, 2 ** 63 - 1)
        if profile_id is not None and db.session().get(CAProfile, profile_id):
            clean["profile_id"] = profile_id
        else:
            errors["profile_id"] = "Choose a CA profile, or All certificates."
    events = values.get("events") or []
    events = [events] if isinstance(events, str) else list(events)
    if any(e not in EVENTS for e in events):
        errors["events"] = "Choose among the listed events."
    # Every event ticked is the same as none: store [] so events added later are included.
    clean["events"] = [] if set(events) >= set(EVENTS) else [e for e in EVENTS if e in events]

    old_secret = channel.secret if channel is not None else None
    new_secret = str(values.get("secret", ""))
    secret = None if _truthy(values.get("secret_clear")) else (new_secret or old_secret or None)
    if kind == "email":
        clean["settings"] = _validate_email_settings(values, secret, errors)
    else:
        clean["settings"] = _validate_webhook_settings(values, errors)
        if not secret:
            errors["secret"] = (f"Enter a signing secret of at least {WEBHOOK_SECRET_MIN} characters: "
                                f"the receiver checks {SIGNATURE_HEADER} with it.")
        elif new_secret and len(new_secret) < WEBHOOK_SECRET_MIN:
            errors["secret"] = f"Use at least {WEBHOOK_SECRET_MIN} characters for the signing secret."
    if errors:
        raise ValidationError(errors)
    return clean, secret


def _validate_email_settings(values: dict, password: str | None, errors: dict) -> dict:
    host = str(values.get("host", "")).strip()
    if not host:
        errors["host"] = "Enter the SMTP server's host name, e.g. smtp.example.com."
    elif not _HOST.match(host):
        errors["host"] = "Enter a host name or IP address only (no scheme, no port)."
    else:
        problem = addresses.policy().resolve(host, "smtp")[1]
        if problem:
            errors["host"] = problem
    security = str(values.get("security", "starttls"))
    if security not in SECURITY:
        errors["security"] = "Choose STARTTLS, implicit TLS or none."
        security = "starttls"
    raw_port = str(values.get("port", "")).strip() or str(DEFAULT_PORTS[security])
    port = whole_number(raw_port, 1, 65535) or 0
    if not port:
        errors["port"] = "Enter a port between 1 and 65535 (587 for STARTTLS, 465 for implicit TLS)."
    username = str(values.get("username", "")).strip()
    if username and not password:
        errors["secret"] = f"Enter the password for {username}, or leave the username empty."
    if password and not username:
        errors["username"] = "Enter the username that goes with the password."
    if password and security == "none":
        errors["security"] = "A password is only sent over TLS: choose STARTTLS or implicit TLS."
    from_addr = _email(str(values.get("from_addr", "")).strip())
    if not from_addr:
        errors["from_addr"] = "Enter the sender address, e.g. sslmanager@example.com."
    to_raw = [t for t in re.split(r"[,;\s]+", str(values.get("to", ""))) if t]
    to = [_email(t) for t in to_raw]
    if not to_raw:
        errors["to"] = "Enter at least one recipient address."
    elif None in to:
        errors["to"] = f"Not an email address: {', '.join(t for t, ok in zip(to_raw, to) if not ok)}."
    ca_bundle = str(values.get("ca_bundle", "")).strip()
    if ca_bundle:
        try:
            ssl.create_default_context(cadata=ca_bundle)
        except (ssl.SSLError, ValueError, TypeError):  # TypeError: text that is not ASCII
            errors["ca_bundle"] = "Paste one or more PEM certificates (-----BEGIN CERTIFICATE-----), or leave empty."
    return {"host": host, "port": port, "security": security, "username": username,
            "from_addr": from_addr or "", "to": [t for t in to if t], "ca_bundle": ca_bundle}


def url_problem(url: str) -> str | None:
    """Why a webhook URL is refused: not http(s), not on the allow-list, or an internal address."""
    return _vetted_webhook(url)[1]


def _vetted_webhook(url: str) -> tuple[str | None, str | None]:
    """(the address to connect to, None) for a webhook URL SSL Manager may call, else (None, why)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[::1": an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, "Enter an http:// or https:// URL, e.g. https://hooks.example.com/sslmanager."
    if parts.username or parts.password:
        return None, "Put no credentials in the URL (lists show it): the signing secret authenticates us."
    host = parts.hostname.lower().rstrip(".")
    allowed = webhook_allowlist()
    if allowed and not any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in allowed):
        return None, (f"{host} is not on the webhook allow-list ({', '.join(allowed)}); add it under "
                      "Options below, or use an allowed host.")
    return checked_address(url, purpose="webhook")


def _validate_webhook_settings(values: dict, errors: dict) -> dict:
    url = str(values.get("url", "")).strip()
    problem = url_problem(url) if url else "Enter the URL that receives the JSON POST."
    if problem:
        errors["url"] = problem
    return {"url": url}


def save_channel(channel: NotificationChannel | None, kind: str, values: dict[str, Any]) -> NotificationChannel:
    """Create (channel None) or edit a channel; nothing is written when a field is wrong."""
    clean, secret = validate_channel(channel, kind, values)
    created = channel is None
    if created:
        channel = NotificationChannel(name=clean["name"], kind=kind, settings={}, events=[])
        db.session().add(channel)
    changed = sorted(k for k, v in clean.items() if getattr(channel, k, None) != v)
    if secret != channel.secret:
        changed.append("secret")
    for key, value in clean.items():
        setattr(channel, key, value)
    channel.secret = secret
    db.session().flush()
    # Field names only: the password and signing secret never enter the audit log.
    audit.record("notification channel created" if created else "notification channel edited",
                 "notification_channel", channel.id,
                 f"{channel.name} ({kind}): {'created' if created else ', '.join(changed) or 'no changes'}")
    db.session().commit()
    return channel


def delete_channel(channel: NotificationChannel) -> None:
    audit.record("notification channel deleted", "notification_channel", channel.id, channel.name)
    # By hand, not by ON DELETE CASCADE: a host's SQLite connections do not enforce foreign keys.
    db.session().execute(delete(NotificationSent).where(NotificationSent.channel_id == channel.id))
    db.session().delete(channel)
    db.session().commit()


# -- sending -----------------------------------------------------------------------------------

def deliver(channel: NotificationChannel, message: Message) -> int:
    """Send through one channel with this app's limits; returns the attempts, raises DeliveryError."""
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
    address, problem = _vetted_webhook(url)
    if problem:
        raise DeliveryError(problem, step="webhook", url=url, attempts=0)
    return senders.send_webhook(url, channel.secret, message, timeout=cfg["SSLMANAGER_NOTIFY_TIMEOUT"],
                                address=address,
                                attempts=int(cfg["SSLMANAGER_WEBHOOK_ATTEMPTS"]),
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
    if cert is not None and event == "renewal-failed":
        error = cert.last_error if error is None else error
        hint = cert.last_error_hint if hint is None else hint
    message = build(event, cert, profile, days=days, error=error or "", hint=hint or "", reason=reason, now=now)
    if sent is not None:  # known duplicates: no insert to lose, no commit
        done = [c for c in targets if (message.dedupe_key, c.id) in sent]
        targets = [c for c in targets if c not in done]
        if not targets:
            return [Delivery(c.name, "duplicate") for c in done]
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


def send_test(channel: NotificationChannel) -> TestResult:
    """Send Test: a sample message through this channel now (not deduplicated), result saved."""
    message = build("test", dedupe_key=f"test:{channel.id}:{time.time_ns()}")
    message.subject = f"[SSL Manager] Test notification: {channel.name}"
    message.text = (f"This is a test from SSL Manager's notification channel {channel.name!r}.\n"
                    f"If you read this, {KINDS[channel.kind].lower()} notifications work.\n")
    message.payload.update({"title": "Test notification", "channel": channel.name})
    try:
        attempts = deliver(channel, message)
        result = TestResult(True, f"Sent to {target(channel)}.", attempts=attempts)
    except DeliveryError as exc:
        result = TestResult(False, str(exc), exc.hint, exc.attempts)
    channel.last_test_ok, channel.last_test_at = result.ok, utcnow()
    channel.last_test_message = result.message[:2000]
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
        return f"the _acme-challenge CNAME is broken: {cert.delegation_message}"
    if cert.renew_at is None:
        return "no renewal is planned"
    if cert.not_after and cert.renew_at >= cert.not_after:
        return "the renewal is planned after expiry"
    if cert.renew_at < now - timedelta(days=1):
        return (f"renewal overdue since {cert.renew_at:%Y-%m-%d %H:%M} UTC: is the scheduler "
                "(`sslmanager run` or `sslmanager worker`) running?")
    return ""


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
    # Lists never load (and so never decrypt) keys.
    certs = db.session().execute(select(Certificate).options(
        defer(Certificate.private_key), defer(Certificate.account_key), defer(Certificate.csr))
        .where(Certificate.status.in_(("active", "failed")), Certificate.not_after > now,
               or_(Certificate.not_after <= horizon, Certificate.failing_since.is_not(None),
                   Certificate.delegation_ok.is_(False)))
        .order_by(Certificate.id)).scalars().all() if enabled else []
    # Held here: the session's identity map keeps objects only while something refers to them.
    profiles = {p.id: p for p in db.session().execute(select(CAProfile)).scalars()} if enabled else {}
    for cert in certs:
        why = will_not_renew(cert, now)
        crossed = [d for d in days if cert.not_after - now <= timedelta(days=d)]
        profile = profiles.get(cert.profile_id)
        if why and crossed:
            count("expiring", emit("expiring", cert, profile=profile, days=crossed[0], reason=why,
                                   now=now, **once))
        if cert.failing_since is not None and cert.status == "active":
            count("renewal-failed", emit("renewal-failed", cert, profile=profile, now=now, **once))
        if cert.delegation_ok is False:
            count("delegation-broken", emit("delegation-broken", cert, profile=profile,
                                            error=cert.delegation_message, now=now, **once))
    for profile in profiles.values():
        if profile.last_test_ok is False:
            count("profile-failing", emit("profile-failing", profile=profile,
                                          error=profile.last_test_message, now=now, **once))
    # Keys older than any certificate's lifetime can never come again: keep the table small.
    db.session().execute(delete(NotificationSent).where(NotificationSent.created_at < now - KEEP_SENT))
    db.session().commit()
    return sent

