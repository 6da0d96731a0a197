"""Admins, passwords (Argon2id, memory-hard), the sign-in throttle, sessions that end, and the
access check.

A standalone session is a signed cookie holding the admin's id, the admin's session epoch at
sign-in, a random token naming its row in sslm_session (services/sessions.py: listed, revocable)
and three times: sign-in, last page opened, last password typed. Every request checks them
against the database and the clock here, so a kept cookie stops working the moment the admin
signs out, changes password, is disabled or has the session revoked, and after the idle and
absolute limits.
"""
from __future__ import annotations

import hashlib
import hmac
import importlib
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, has_request_context, request, session
from sqlalchemy import delete, select
from werkzeug.wrappers import Response

from .. import db
from ..errors import ValidationError
from ..models import Admin, LoginAttempt, utcnow
from . import roles, sessions

_hasher = PasswordHasher()  # argon2id with the library's memory-hard defaults
SESSION_KEY = "sslmanager_admin_id"
EPOCH_KEY = "sslmanager_epoch"
STARTED_KEY = "sslmanager_started"      # sign-in time (absolute lifetime)
SEEN_KEY = "sslmanager_seen"            # last page opened (idle timeout)
VERIFIED_KEY = "sslmanager_verified"    # last time the password was typed (key downloads)
TOKEN_KEY = "sslmanager_session"        # the session row's token (services/sessions.py)
PENDING_KEY = "sslmanager_pending"      # password right, second factor still to come
SSO_PENDING_KEY = "sslmanager_sso"      # a single sign-on in flight (state, nonce, PKCE verifier)
ID_TOKEN_KEY = "sslmanager_id_token"    # signed in through the provider: its ID token (logout hint)
RESUME_KEY = "sslmanager_resume"        # a request kept across a re-authentication (services/reauth.py)
PENDING_SECONDS = 300
_KEYS = (SESSION_KEY, EPOCH_KEY, STARTED_KEY, SEEN_KEY, VERIFIED_KEY, TOKEN_KEY, PENDING_KEY, ID_TOKEN_KEY,
         RESUME_KEY)
USERNAME_MAX = 150   # the column's size
PASSWORD_MAX = 1024  # Argon2 hashes any length; a bound keeps a huge one from costing time
ADDRESS_MAX = 64
_dummy_hash: list[str] = []


def now() -> datetime:
    """The clock every session and throttle decision reads (tests move it)."""
    return utcnow()


def _dummy() -> str:
    """A hash to verify against for unknown usernames, so a wrong name and a wrong password
    take the same time. Made on first sign-in, not at import: every CLI process imports this."""
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash("sslmanager-timing-equaliser"))
    return _dummy_hash[0]


# -- admins --------------------------------------------------------------------------------------

def _find(username: str) -> Admin | None:
    return db.session().execute(select(Admin).filter_by(username=username)).scalar_one_or_none()


def _check_password(password: str, field: str = "password") -> dict[str, str]:
    if len(password) < 10:
        return {field: "Use a password of at least 10 characters."}
    if len(password) > PASSWORD_MAX:
        return {field: f"Use a password of at most {PASSWORD_MAX} characters."}
    return {}


def create_admin(username: str, password: str, role: str | None = None) -> Admin:
    """Create a user (an admin unless `role` says otherwise), or set a new password for an
    existing one (which ends its sessions; its role stays)."""
    username = username.strip()
    errors = _check_password(password)
    if not username:
        errors["username"] = "Enter a username."
    elif len(username) > USERNAME_MAX:
        errors["username"] = f"Use a username of at most {USERNAME_MAX} characters."
    if errors:
        raise ValidationError(errors)
    admin = _find(username)
    if admin is None:
        admin = Admin(username=username, password_hash="", session_epoch=0, disabled=False,
                      role=role or roles.ADMIN_ROLE, recovery_codes=[])
        db.session().add(admin)
    else:
        end_sessions(admin)
    admin.password_hash = _hasher.hash(password)
    db.session().commit()
    return admin


def change_password(admin: Admin, current: str, new: str, confirm: str) -> None:
    """An admin's own password change: the current one first. Ends the admin's other sessions
    (the caller re-signs the session it is in)."""
    errors = _check_password(new, "new_password")
    keep = session.get(TOKEN_KEY) if has_request_context() else None
    if not _verify(admin.password_hash, current[:PASSWORD_MAX]):
        errors = {"current_password": "This is not your current password.", **errors}
    if new != confirm:
        errors.setdefault("confirm_password", "The two new passwords differ.")
    if errors:
        raise ValidationError(errors)
    admin.password_hash = _hasher.hash(new)
    end_sessions(admin, keep=keep)
    db.session().commit()


def end_sessions(admin: Admin, keep: str | None = None) -> None:
    """Every session signed in under the current epoch stops working, and its row goes; but
    the row of token `keep` (the caller re-signs that browser). The caller commits."""
    admin.session_epoch = (admin.session_epoch or 0) + 1
    sessions.revoke_all(admin, keep=keep)


# -- the sign-in throttle -----------------------------------------------------------------------

class RateLimited(Exception):
    """Too many recent failed sign-ins for this account from this address, or from this
    address; `retry_after` seconds until the next try is allowed."""

    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


def account_key(username: str) -> str:
    """What a failed sign-in records for the account: a keyed hash of the normalised name, 64
    characters whatever was typed (often a password in the wrong field)."""
    normal = username.strip().casefold()[:4 * USERNAME_MAX].encode("utf-8", "replace")
    key = current_app.extensions["sslmanager"].keyring.primary
    return hmac.new(key, b"login-attempt:" + normal, hashlib.sha256).hexdigest()


def _wait(failures: list[datetime], allowed: int, at: datetime) -> int:
    """Seconds still to wait after `failures` (newest first), when more than `allowed`: the
    delay doubles with each failure past the allowance, up to the window."""
    if len(failures) < allowed:
        return 0
    cfg = current_app.config
    delay = min(cfg["SSLMANAGER_LOGIN_DELAY_SECONDS"] * 2 ** (len(failures) - allowed),
                cfg["SSLMANAGER_LOGIN_WINDOW_SECONDS"])
    remaining = (failures[0] + timedelta(seconds=delay) - at).total_seconds()
    return max(0, int(remaining + 0.999))


def check_throttle(key: str, address: str) -> None:
    """Raise RateLimited when this (account, address) pair or this address must wait. Only
    failures from `address` count: another address's failures never slow this one."""
    cfg = current_app.config
    at = now()
    since = at - timedelta(seconds=cfg["SSLMANAGER_LOGIN_WINDOW_SECONDS"])
    s = db.session()
    recent = (select(LoginAttempt.at).where(LoginAttempt.address == address, LoginAttempt.at >= since)
              .order_by(LoginAttempt.at.desc()))
    by_pair = s.scalars(recent.where(LoginAttempt.username == key)
                        .limit(64)).all()
    by_address = s.scalars(recent.limit(cfg["SSLMANAGER_LOGIN_MAX_PER_ADDRESS"] + 64)).all()
    wait = max(_wait(by_pair, cfg["SSLMANAGER_LOGIN_MAX_PER_ACCOUNT"], at),
               _wait(by_address, cfg["SSLMANAGER_LOGIN_MAX_PER_ADDRESS"], at))
    if wait:
        raise RateLimited(wait)


def record_failure(key: str, address: str) -> None:
    """Count a failure, and delete those too old to matter (the table never grows past a
    window's worth of failures)."""
    at = now()
    s = db.session()
    s.execute(delete(LoginAttempt).where(
        LoginAttempt.at < at - timedelta(seconds=current_app.config["SSLMANAGER_LOGIN_WINDOW_SECONDS"])))
    s.add(LoginAttempt(username=key, address=address, at=at))
    s.commit()


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(username: str, password: str, address: str) -> Admin | None:
    """The admin when the password matches and the admin is enabled; None otherwise. Raises
    RateLimited when this pair or address must wait first."""
    address = address[:ADDRESS_MAX]
    key = account_key(username)
    check_throttle(key, address)
    admin = _find(username) if len(username) <= USERNAME_MAX else None
    # Verify even when the name is unknown or the password over-long: the same time either way.
    ok = _verify(admin.password_hash if admin else _dummy(), password[:PASSWORD_MAX])
    if not ok or len(password) > PASSWORD_MAX or admin is None or admin.disabled:
        record_failure(key, address)
        return None
    s = db.session()
    s.execute(delete(LoginAttempt).where(LoginAttempt.username == key, LoginAttempt.address == address))
    admin.last_login_at = utcnow()
    if _hasher.check_needs_rehash(admin.password_hash):
        admin.password_hash = _hasher.hash(password)
    s.commit()
    return admin


# -- sessions ------------------------------------------------------------------------------------

def _seconds() -> int:
    return int(now().timestamp())


def start_session(admin: Admin) -> None:
    """Sign `admin` in on this browser: a fresh session (nothing from before carries over, a
    new token and row). The caller commits."""
    session.clear()
    stamp = _seconds()
    token = sessions.open_session(admin, request.remote_addr or "", request.user_agent.string or "",
                                  datetime.fromtimestamp(stamp, timezone.utc))
    session.update({SESSION_KEY: admin.id, EPOCH_KEY: admin.session_epoch, STARTED_KEY: stamp,
                    SEEN_KEY: stamp, VERIFIED_KEY: stamp, TOKEN_KEY: token})
    g.pop("sslmanager_admin", None)


def end_session() -> None:
    """Sign out: this session and every other of the same admin stop working."""
    admin = current_admin()
    if admin is not None:
        end_sessions(admin)
        db.session().commit()
    for key in _KEYS:
        session.pop(key, None)
    g.pop("sslmanager_admin", None)


def start_second_step(admin: Admin) -> None:
    """The password was right and a second factor is on: remember who, for PENDING_SECONDS,
    without signing in (nothing but the code page opens)."""
    session.clear()
    session[PENDING_KEY] = [admin.id, admin.session_epoch, _seconds()]
    g.pop("sslmanager_admin", None)


def pending_admin() -> Admin | None:
    """The admin between the password and the code, while that step is still open."""
    value = session.get(PENDING_KEY)
    if not (isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) for v in value)):
        return None
    admin = db.session().get(Admin, value[0])
    if (admin is None or admin.disabled or admin.session_epoch != value[1]
            or not 0 <= _seconds() - value[2] < PENDING_SECONDS):
        session.pop(PENDING_KEY, None)
        return None
    return admin


def renew_session(admin: Admin) -> None:
    """After the admin's own password change: keep this browser signed in under the new epoch
    (its row was kept by change_password)."""
    session[EPOCH_KEY] = admin.session_epoch
    session[VERIFIED_KEY] = _seconds()


def _session_admin() -> Admin | None:
    admin_id = session.get(SESSION_KEY)
    if not isinstance(admin_id, int):
        return None
    admin = db.session().get(Admin, admin_id)
    cfg = current_app.config
    at = _seconds()
    started, seen = session.get(STARTED_KEY), session.get(SEEN_KEY)
    valid = (admin is not None and not admin.disabled and session.get(EPOCH_KEY) == admin.session_epoch
             and isinstance(started, int) and isinstance(seen, int)
             and at - started < cfg["SSLMANAGER_SESSION_MAX_HOURS"] * 3600
             and at - seen < cfg["SSLMANAGER_SESSION_IDLE_MINUTES"] * 60)
    row = sessions.find(admin.id, session.get(TOKEN_KEY)) if valid else None
    if row is None:  # revoked, or signed in before sessions had rows
        for key in _KEYS:
            session.pop(key, None)
        return None
    changed = False
    if row.role != admin.role:  # a role change: this browser goes on under a fresh token
        session[TOKEN_KEY] = sessions.rotate(row, admin.role)
        changed = True
    # htmx's background GETs (status polling) are not the admin at the keyboard: only pages
    # opened and forms sent keep an idle session alive. Rewritten at most every 10 s.
    background = request.method == "GET" and bool(request.headers.get("HX-Request"))
    if not background and at - seen >= 10:
        session[SEEN_KEY] = at
        row.last_seen_at = datetime.fromtimestamp(at, timezone.utc)
        changed = True
    if changed:
        db.session().commit()
    return admin


def current_admin() -> Admin | None:
    """The signed-in standalone admin, if the session is still valid."""
    if not has_request_context():
        return None
    if "sslmanager_admin" not in g:
        g.sslmanager_admin = _session_admin()
    return g.sslmanager_admin


def recently_verified() -> bool:
    """Did the standalone admin type the password within SSLMANAGER_REAUTH_MINUTES? Embedded:
    the host's SSLMANAGER_RECENT_AUTH check, or True when it has none (its login decides)."""
    if not current_app.extensions["sslmanager"].standalone:
        check = _resolve(current_app.config.get("SSLMANAGER_RECENT_AUTH"))
        return True if check is None else bool(check())
    verified = session.get(VERIFIED_KEY)
    return (current_admin() is not None and isinstance(verified, int)
            and _seconds() - verified < current_app.config["SSLMANAGER_REAUTH_MINUTES"] * 60)


def verify_again(password: str, address: str) -> bool:
    """The signed-in admin types the password again (throttled like sign-in). True: the
    session counts as freshly verified. Raises RateLimited."""
    admin = current_admin()
    if admin is None:
        return False
    address = address[:ADDRESS_MAX]
    key = account_key(admin.username)
    check_throttle(key, address)
    if len(password) > PASSWORD_MAX or not _verify(admin.password_hash, password):
        record_failure(key, address)
        return False
    session[VERIFIED_KEY] = _seconds()
    return True


# -- access --------------------------------------------------------------------------------------

def _resolve(value: Any) -> Callable[[], Any] | None:
    if value is None or callable(value):
        return value
    module, _, name = str(value).partition(":")
    return getattr(importlib.import_module(module), name)


def access() -> bool | Response:
    """May the current request see SSL Manager, and as which role (services/roles.py)? The
    host's check when embedded: a role name ("viewer", "operator", "admin") allows as that
    role, exactly True as an admin; a response it returns (Flask-Login's `login_manager.unauthorized()` redirect) denies
    that way; anything else denies. One it raises (abort) goes through the host's handlers."""
    roles.set_request_role(None)
    check = _resolve(current_app.config.get("SSLMANAGER_AUTHORIZE"))
    if check is not None:
        verdict = check()
        # A role name lets the host's user in with that role; exactly True, as an admin.
        if isinstance(verdict, str) and verdict in roles.ROLES:
            roles.set_request_role(verdict)
            return True
        if verdict is True:
            roles.set_request_role(roles.ADMIN_ROLE)
            return True
        # Never truthiness: a redirect response is truthy, and must not let anyone in.
        return verdict if isinstance(verdict, Response) else False
    if current_app.extensions["sslmanager"].standalone:
        admin = current_admin()
        if admin is not None:
            roles.set_request_role(admin.role)
        return admin is not None
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

