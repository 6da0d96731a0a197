"""Notification channels and options: email (SMTP) and webhook channels with their checks, the
expiry days and the webhook allow-list; what the Notifications page saves. Sending is in
notifications.py, the wire in notification_senders.py."""
from __future__ import annotations

import re
import ssl
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, or_, select

from .. import db
from ..errors import NotFound, ValidationError
from ..models import CAProfile, NotificationChannel, NotificationSent, Setting
from . import addresses, audit
from .addresses import checked_address
from .inputs import whole_number
from .notification_messages import EVENTS
from .notification_senders import SIGNATURE_HEADER

KINDS = {"email": "Email (SMTP)", "webhook": "Webhook"}


SECURITY = {"starttls": "STARTTLS", "tls": "Implicit TLS (SMTPS)", "none": "None (plain text)"}


DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}


DEFAULT_EXPIRY_DAYS = [30, 14, 7, 1]


WEBHOOK_SECRET_MIN = 16


_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:.]+\]?$")


_PATTERN = re.compile(r"^(\*\.)?[a-z0-9-]+(\.[a-z0-9-]+)*$|^[0-9a-f:.]+$")


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
    return vetted_webhook(url)[1]


def vetted_webhook(url: str) -> tuple[str | None, str | None]:
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
