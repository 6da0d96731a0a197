"""Admins, passwords (Argon2id, memory-hard), sign-in rate limits, and the access check."""
from __future__ import annotations

import importlib
from datetime import timedelta
from typing import Any, Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, session
from sqlalchemy import delete, func, select
from werkzeug.wrappers import Response

from .. import db
from ..errors import ValidationError
from ..models import Admin, LoginAttempt, utcnow

_hasher = PasswordHasher()  # argon2id with the library's memory-hard defaults
SESSION_KEY = "sslmanager_admin_id"
_dummy_hash: list[str] = []


def _dummy() -> str:
    """A hash to verify against for unknown usernames, so a wrong name and a wrong password
    take the same time. Made on first sign-in, not at import: every CLI process imports this."""
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash("sslmanager-timing-equaliser"))
    return _dummy_hash[0]


def create_admin(username: str, password: str) -> Admin:
    """Create an admin, or set a new password for an existing one."""
    username = username.strip()
    errors = {}
    if not username:
        errors["username"] = "Enter a username."
    if len(password) < 10:
        errors["password"] = "Use a password of at least 10 characters."
    if errors:
        raise ValidationError(errors)
    admin = db.session().execute(select(Admin).filter_by(username=username)).scalar_one_or_none()
    if admin is None:
        admin = Admin(username=username, password_hash="")
        db.session().add(admin)
    admin.password_hash = _hasher.hash(password)
    db.session().commit()
    return admin


class RateLimited(Exception):
    """Too many failed sign-ins for this account or address."""


def authenticate(username: str, password: str, address: str) -> Admin | None:
    """The admin when the password matches; None otherwise. Raises RateLimited when throttled."""
    cfg = current_app.config
    since = utcnow() - timedelta(seconds=cfg["SSLMANAGER_LOGIN_WINDOW_SECONDS"])
    s = db.session()
    by_account = s.scalar(select(func.count()).select_from(LoginAttempt)
                          .where(LoginAttempt.username == username, LoginAttempt.at >= since))
    by_address = s.scalar(select(func.count()).select_from(LoginAttempt)
                          .where(LoginAttempt.address == address, LoginAttempt.at >= since))
    if (by_account >= cfg["SSLMANAGER_LOGIN_MAX_PER_ACCOUNT"]
            or by_address >= cfg["SSLMANAGER_LOGIN_MAX_PER_ADDRESS"]):
        raise RateLimited()
    admin = s.execute(select(Admin).filter_by(username=username)).scalar_one_or_none()
    try:
        _hasher.verify(admin.password_hash if admin else _dummy(), password)
        ok = admin is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok:
        s.add(LoginAttempt(username=username, address=address))
        s.commit()
        return None
    s.execute(delete(LoginAttempt).where(LoginAttempt.username == username))
    admin.last_login_at = utcnow()
    if _hasher.check_needs_rehash(admin.password_hash):
        admin.password_hash = _hasher.hash(password)
    s.commit()
    return admin


def current_admin() -> Admin | None:
    """The signed-in standalone admin, if any."""
    admin_id = session.get(SESSION_KEY)
    return db.session().get(Admin, admin_id) if admin_id else None


def _resolve(value: Any) -> Callable[[], Any] | None:
    if value is None or callable(value):
        return value
    module, _, name = str(value).partition(":")
    return getattr(importlib.import_module(module), name)


def access() -> bool | Response:
    """May the current request see SSL Manager? The host's check when embedded: exactly True
    allows; a response it returns (Flask-Login's `login_manager.unauthorized()` redirect) denies
    that way; anything else denies. One it raises (abort) goes through the host's handlers."""
    check = _resolve(current_app.config.get("SSLMANAGER_AUTHORIZE"))
    if check is not None:
        verdict = check()
        # Never truthiness: a redirect response is truthy, and must not let anyone in.
        return verdict if verdict is True or isinstance(verdict, Response) else False
    if current_app.extensions["sslmanager"].standalone:
        return current_admin() is not None
    return False  # embedded without a check: closed, never open by accident


def is_authorized() -> bool:
    """True only when the current request may see SSL Manager."""
    return access() is True


def actor_name() -> str:
    """Who is acting, for the audit log."""
    getter = _resolve(current_app.config.get("SSLMANAGER_CURRENT_USER"))
    if getter is not None:
        return str(getter() or "")
    admin = current_admin()
    return admin.username if admin else ""
