"""Two-factor sign-in with TOTP (RFC 6238, pyotp): enrolment through a QR code the app draws
itself as SVG (segno; no outside service sees the secret), ten one-use recovery codes kept as
SHA-256 hashes, and the admin's switch that requires a second factor of every user.

The shared secret is an Encrypted column (the data key, like every other secret; the rotation
command re-encrypts it). A code is accepted once: the time step it belongs to is remembered."""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

import pyotp
import segno

from .. import db
from ..errors import ValidationError
from ..models import Admin, Setting, utcnow
from . import audit, auth, passkeys, roles

ISSUER = "SSL Manager"
RECOVERY_CODES = 10
REQUIRED_KEY = "require_2fa"


def required() -> bool:
    """Has an admin required a second factor of every user?"""
    row = db.session().get(Setting, REQUIRED_KEY)
    return bool(row and row.value)


def set_required(value: bool) -> None:
    roles.require(roles.ADMIN)
    row = db.session().get(Setting, REQUIRED_KEY)
    if row is None:
        db.session().add(Setting(key=REQUIRED_KEY, value=bool(value)))
    else:
        row.value = bool(value)
    audit.record("two-factor required" if value else "two-factor optional", "", "", "")
    db.session().commit()


def enabled(user: Admin) -> bool:
    """Is TOTP on for this user?"""
    return user.totp_enabled_at is not None and bool(user.totp_secret)


def has_second_factor(user: Admin) -> bool:
    """TOTP or at least one passkey: sign-in asks for it after the password."""
    return enabled(user) or bool(passkeys.of(user))


def pending_secret(user: Admin) -> str:
    """The secret being enrolled: made once, kept (encrypted) until confirmed or replaced."""
    if enabled(user):
        raise ValidationError({"code": "Two-factor sign-in is already on: turn it off first."})
    if not user.totp_secret:
        user.totp_secret = pyotp.random_base32()
        db.session().commit()
    return user.totp_secret


def provisioning_uri(user: Admin, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth:// URI as an inline SVG QR code (no script, no outside request)."""
    return segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff", title="TOTP QR code")


def _normalise(code: str) -> str:
    return "".join(ch for ch in str(code or "") if ch.isalnum()).upper()[:32]


def _hash(code: str) -> str:
    return hashlib.sha256(_normalise(code).encode()).hexdigest()


def _check_totp(user: Admin, code: str, at: float | None = None) -> bool:
    """A current code (one step of clock drift either way), never one already used."""
    code = _normalise(code)
    if not (code.isdigit() and len(code) == 6) or not user.totp_secret:
        return False
    at = time.time() if at is None else at
    totp = pyotp.TOTP(user.totp_secret)
    step = int(at // totp.interval)
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            if user.totp_last_step is not None and candidate <= user.totp_last_step:
                return False  # replayed
            user.totp_last_step = candidate
            return True
    return False


def confirm(user: Admin, code: str) -> list[str]:
    """Turn TOTP on once the app shows a right code; the recovery codes, shown once."""
    pending_secret(user)
    if not _check_totp(user, code):
        raise ValidationError({"code": "This code is not the one your app shows now. Check the "
                                       "phone's clock, then type the current 6 digits."})
    user.totp_enabled_at = utcnow()
    codes = new_recovery_codes(user)
    audit.record("two-factor enabled", "admin", user.id, user.username)
    db.session().commit()
    return codes


def new_recovery_codes(user: Admin) -> list[str]:
    """Ten fresh one-use codes (80 random bits each); only their hashes are kept."""
    codes = [secrets.token_hex(5).upper() for _ in range(RECOVERY_CODES)]
    user.recovery_codes = [_hash(c) for c in codes]
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def verify(user: Admin, code: str) -> str | None:
    """The sign-in's second step: "totp" or "recovery code" when `code` is good (a recovery
    code is used up), None otherwise. The caller commits and throttles."""
    if not enabled(user):
        return None
    if _check_totp(user, code):
        return "totp"
    digest = _hash(code)
    kept = list(user.recovery_codes or [])
    for stored in kept:
        if len(_normalise(code)) == 10 and hmac.compare_digest(stored, digest):
            kept.remove(stored)
            user.recovery_codes = kept
            return "recovery code"
    return None


def disable(user: Admin, code: str) -> None:
    """Turn TOTP off (a current code or a recovery code proves the user holds it)."""
    if not verify(user, code):
        raise ValidationError({"code": "Type a current code (or a recovery code) to turn it off."})
    reset(user)
    audit.record("two-factor disabled", "admin", user.id, user.username)
    db.session().commit()


def reset(user: Admin) -> None:
    """Forget the user's second factor (an admin's reset for a lost phone). The caller commits."""
    user.totp_secret, user.totp_enabled_at, user.totp_last_step = None, None, None
    user.recovery_codes = []


def finish_sign_in(code: str, address: str, *, passkey: str | None = None) -> Admin | None:
    """The sign-in's second step: the pending admin when `code` (or the browser's `passkey`
    answer) is good, else None. Throttled like the password (the same counters): raises
    auth.RateLimited."""
    admin = auth.pending_admin()
    if admin is None:
        return None
    address = address[:auth.ADDRESS_MAX]
    key = auth.account_key(admin.username)
    auth.check_throttle(key, address)
    if passkey is not None:
        how = "passkey" if passkeys.verify(admin, passkey) else None
    else:
        how = verify(admin, code)
    if how is None:
        db.session().commit()  # a used step stays used
        auth.record_failure(key, address)
        return None
    if how == "recovery code":
        audit.record("recovery code used", "admin", admin.id,
                     f"{admin.username}: {len(admin.recovery_codes)} left", actor=admin.username)
    db.session().commit()
    return admin
