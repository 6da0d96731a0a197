"""Passkeys (WebAuthn, with the `webauthn` library): registered on the account page, then asked
for at sign-in after the password, as a second factor (like a TOTP code).

The relying party is this site: its id is the host name the browser sees, the origin the scheme,
host and port (behind a proxy, SSLMANAGER_TRUSTED_PROXIES makes those the public ones). Browsers
allow WebAuthn in a secure context only: HTTPS, or http://localhost. Each ceremony's challenge
lives in the signed session cookie for PENDING seconds and is used once."""
from __future__ import annotations

import json
import time

from flask import request, session
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
from . import audit

RP_NAME = "SSL Manager"
CHALLENGE_KEY = "sslmanager_webauthn"
PENDING = 300
NAME_MAX = 100


def of(user: Admin) -> list[Passkey]:
    return list(db.session().scalars(select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.id)))


def _rp() -> tuple[str, str]:
    """(relying party id, expected origin) from the address the browser used. WebAuthn takes
    domain names only (localhost included), never an IP address: browsers refuse those."""
    host = request.host
    rp_id = host[1:host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    return rp_id, f"{request.scheme}://{host}"


def _remember(kind: str, challenge: bytes, user: Admin) -> None:
    session[CHALLENGE_KEY] = [kind, bytes_to_base64url(challenge), user.id, int(time.time())]


def _challenge(kind: str, user: Admin) -> bytes | None:
    value = session.pop(CHALLENGE_KEY, None)  # used once, right or wrong
    if (not isinstance(value, list) or len(value) != 4 or value[0] != kind or value[2] != user.id
            or not 0 <= time.time() - value[3] < PENDING):
        return None
    return base64url_to_bytes(value[1])


def registration_options(user: Admin) -> str:
    """The options for navigator.credentials.create(), as JSON."""
    rp_id, _origin = _rp()
    options = generate_registration_options(
        rp_id=rp_id, rp_name=RP_NAME, user_name=user.username, user_id=f"sslm-user-{user.id}".encode(),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(p.credential_id)) for p in of(user)],
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=UserVerificationRequirement.PREFERRED))
    _remember("register", options.challenge, user)
    return options_to_json(options)


def register(user: Admin, credential: str, name: str) -> Passkey:
    """Check the browser's answer and keep the new passkey."""
    name = (name or "").strip()[:NAME_MAX] or "Passkey"
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
