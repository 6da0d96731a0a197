"""Passkeys (WebAuthn, with the `webauthn` library): registered on the account page, then asked
for at sign-in after the password, as a second factor (like a TOTP code); or, alone, as a
password-less sign-in (`sign_in_options`, `sign_in`): a discoverable credential ("resident key")
with user verification is two factors at once, the device and its PIN or biometric.

The relying party is this site: its id is the host name the browser sees, the origin the scheme,
host and port (behind a proxy, SSLMANAGER_TRUSTED_PROXIES makes those the public ones). Browsers
allow WebAuthn in a secure context only: HTTPS, or http://localhost. Each ceremony's challenge
lives in the signed session cookie for PENDING seconds and is used once."""
from __future__ import annotations

import json
import time

from flask import current_app, request, session
from sqlalchemy import select
from webauthn import (generate_authentication_options, generate_registration_options, options_to_json,
                      verify_authentication_response, verify_registration_response)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (AuthenticatorSelectionCriteria, PublicKeyCredentialDescriptor,
                                      ResidentKeyRequirement, UserVerificationRequirement)

from .. import db
from ..errors import ValidationError
from ..models import Admin, Passkey, utcnow
from . import audit, auth

RP_NAME = "SSL Manager"
CHALLENGE_KEY = "sslmanager_webauthn"
PENDING = 300
NAME_MAX = 100
SIGN_IN_THROTTLE = "passkey-sign-in"  # failed password-less sign-ins count per address (no account yet)
REFUSED = "The passkey was not accepted."


class SignInRefused(Exception):
    """A password-less sign-in refused: `message` is for the page."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def of(user: Admin) -> list[Passkey]:
    return list(db.session().scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)))


def _rp() -> tuple[str, str]:
    """(relying party id, expected origin) from the address the browser used. WebAuthn takes
    domain names only (localhost included), never an IP address: browsers refuse those."""
    host = request.host
    rp_id = host[1:host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return rp_id, f"{request.scheme}://{host}"


def _remember(kind: str, challenge: bytes, user: Admin | None) -> None:
    """Keep the challenge (a password-less sign-in has no user yet: None)."""
    session[CHALLENGE_KEY] = [kind, bytes_to_base64url(challenge), user.id if user else None, int(time.time())]


def _challenge(kind: str, user: Admin | None) -> bytes | None:
    value = session.pop(CHALLENGE_KEY, None)  # used once, right or wrong
    if (not isinstance(value, list) or len(value) != 4 or value[0] != kind
            or value[2] != (user.id if user else None) or not 0 <= time.time() - value[3] < PENDING):
        return None
    return base64url_to_bytes(value[1])


def registration_options(user: Admin) -> str:
    """The options for navigator.credentials.create(), as JSON."""
    rp_id, _origin = _rp()
    options = generate_registration_options(
        rp_id=rp_id, rp_name=RP_NAME, user_name=user.username, user_id=f"sslm-user-{user.id}".encode(),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id)) for p in of(user)],
        # PREFERRED, not REQUIRED: browsers then make the passkey discoverable wherever the
        # authenticator can (platform authenticators, phones and password managers always can;
        # Chromium and Firefox also ask FIDO2 security keys for a resident slot), so it serves the
        # password-less sign-in. REQUIRED would make the browser refuse an older key without
        # resident slots altogether, though it still makes a good second factor: such a key simply
        # is not offered by the browser's password-less prompt.
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED))
    _remember("register", options.challenge, user)
    return options_to_json(options)


def register(user: Admin, credential: str, name: str) -> Passkey:
    """Check the browser's answer and keep the new passkey."""
    name = (name or "").strip()[:NAME_MAX] or "Passkey"
    if user.oidc_subject:  # the provider's sign-in decides who they are and what role they have
        raise ValidationError({"passkey": "You sign in through single sign-on: a passkey cannot be added."})
    challenge = _challenge("register", user)
    if challenge is None:
        raise ValidationError({"passkey": "The passkey request expired: start again."})
    data = _json(credential)
    if not isinstance(data, dict):
        raise ValidationError({"passkey": "The browser sent no passkey answer: start again."})
    rp_id, origin = _rp()
    try:
        verified = verify_registration_response(credential=data, expected_challenge=challenge,
                                                expected_rp_id=rp_id, expected_origin=origin)
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValidationError({"passkey": f"The browser's passkey answer was refused: {exc}"}) from None
    key = Passkey(user_id=user.id, credential_id=bytes_to_base64url(verified.credential_id),
                  public_key=bytes_to_base64url(verified.credential_public_key),
                  sign_count=verified.sign_count, name=name)
    db.session().add(key)
    audit.record("passkey added", "admin", user.id, f"{user.username}: {name}")
    db.session().commit()
    return key


def authentication_options(user: Admin) -> str:
    """The options for navigator.credentials.get(), limited to the user's passkeys, as JSON."""
    rp_id, _origin = _rp()
    options = generate_authentication_options(
        rp_id=rp_id, allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id))
                                        for p in of(user)],
        user_verification=UserVerificationRequirement.PREFERRED)
    _remember("authenticate", options.challenge, user)
    return options_to_json(options)


def verify(user: Admin, credential: str) -> bool:
    """Is this the browser's right answer with one of the user's passkeys? (The caller commits
    and throttles.) A signature counter that goes backwards means a cloned key: refused."""
    challenge = _challenge("authenticate", user)
    data = _json(credential)
    if challenge is None or not isinstance(data, dict):
        return False
    key = db.session().execute(select(Passkey).where(
        Passkey.user_id == user.id, Passkey.credential_id == str(data.get("id", "")))).scalar_one_or_none()
    if key is None:
        return False
    rp_id, origin = _rp()
    try:
        verified = verify_authentication_response(
            credential=data, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=base64url_to_bytes(key.public_key), credential_current_sign_count=key.sign_count)
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError):
        return False
    key.sign_count, key.last_used_at = verified.new_sign_count, utcnow()
    return True


def sign_in_options(address: str) -> str:
    """The options for a password-less sign-in, as JSON: no user is known yet, so no
    allowCredentials (the browser offers this site's discoverable passkeys), and user
    verification required (the PIN or biometric is the second factor). Raises
    auth.RateLimited first: a throttled address does not get to touch its key for nothing."""
    auth.check_throttle(SIGN_IN_THROTTLE, address[:auth.ADDRESS_MAX])
    rp_id, _origin = _rp()
    options = generate_authentication_options(rp_id=rp_id, allow_credentials=[],
                                              user_verification=UserVerificationRequirement.REQUIRED)
    _remember("sign-in", options.challenge, None)
    return options_to_json(options)


def sign_in(credential: str, address: str) -> Admin:
    """The user whose discoverable passkey signed this challenge, with user verification: a
    whole sign-in (the caller starts the session). Any failure (expired challenge, unknown
    credential or user handle, a bad signature, no user verification, a counter gone backwards,
    a disabled user) raises SignInRefused with one message and counts in the sign-in throttle
    for this address; auth.RateLimited when the address must wait. The policy on local sign-in
    (`refusal_without_password`) has its own message and is not counted: the key was right."""
    address = address[:auth.ADDRESS_MAX]
    auth.check_throttle(SIGN_IN_THROTTLE, address)
    found = _discoverable(_challenge("sign-in", None), _json(credential))
    if found is None:
        db.session().rollback()
        auth.record_failure(SIGN_IN_THROTTLE, address)
        raise SignInRefused(REFUSED)
    user, key, sign_count = found
    refusal = refusal_without_password(user)
    if refusal:
        db.session().rollback()
        raise SignInRefused(refusal)
    key.sign_count, key.last_used_at = sign_count, utcnow()
    user.last_login_at = utcnow()
    return user


def refusal_without_password(user: Admin) -> str | None:
    """Why this user may not sign in with a passkey alone (None: may). A user made by single
    sign-on signs in there (its groups at the provider keep its role, and disabling it there
    must count); with local passwords off, only the break-glass users, as with passwords."""
    cfg = current_app.config
    if user.oidc_subject:
        return "This account signs in with single sign-on."
    if not cfg["SSLMANAGER_PASSWORD_SIGN_IN"] and user.username not in cfg["SSLMANAGER_BREAK_GLASS_USERS"]:
        return "Local sign-in is turned off here: sign in with single sign-on."
    return None


def _discoverable(challenge: bytes | None, data) -> tuple[Admin, Passkey, int] | None:
    """(user, passkey, new signature counter) when `data` is a valid answer to `challenge`. The
    credential id finds the passkey; the user handle (registration's `sslm-user-<id>`) must
    name the passkey's owner, as WebAuthn asks of a sign-in that named no user beforehand."""
    response = data.get("response") if isinstance(data, dict) else None
    if challenge is None or not isinstance(response, dict) or not isinstance(response.get("userHandle"), str):
        return None
    key = db.session().execute(select(Passkey).where(
        Passkey.credential_id == str(data.get("id", "")))).scalar_one_or_none()
    try:
        handle = base64url_to_bytes(response["userHandle"])
    except ValueError:
        return None
    if key is None or handle != f"sslm-user-{key.user_id}".encode():
        return None
    rp_id, origin = _rp()
    try:
        verified = verify_authentication_response(
            credential=data, expected_challenge=challenge, expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=base64url_to_bytes(key.public_key), credential_current_sign_count=key.sign_count,
            require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError):
        return None
    user = db.session().get(Admin, key.user_id)
    if user is None or user.disabled:
        return None
    return user, key, verified.new_sign_count


def remove(user: Admin, passkey_id: int) -> None:
    key = db.session().get(Passkey, passkey_id) if 0 < passkey_id < 2 ** 63 else None
    if key is None or key.user_id != user.id:
        raise ValidationError({"passkey": "No such passkey."})
    db.session().delete(key)
    audit.record("passkey removed", "admin", user.id, f"{user.username}: {key.name}")
    db.session().commit()


def _json(text: str):
    try:
        return json.loads(text or "")
    except ValueError:
        return None
