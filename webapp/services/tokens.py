"""API tokens: made by an admin (page or `sslmanager token create`), shown once, kept as a
sha256 of their secret; an expiry, revocation, and the last time and address each was used.

A token reads `sslm_<id>_<secret>`: the id finds the row, the secret (256 random bits) is
compared in constant time against the stored hash. A fast hash is enough for that much
entropy (nothing to guess), and keeps each API call cheap."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from .. import db
from ..errors import NotFound, ValidationError
from ..models import Admin, ApiToken, utcnow
from . import audit, permissions, roles, tags as tag_service, touches
from .inputs import whole_number

PREFIX = "sslm_"
_FORMAT = re.compile(r"sslm_([0-9]{1,18})_([A-Za-z0-9_-]{20,100})")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@:-]{0,99}")
EXPIRES = re.compile(r"([0-9]{1,5})([dhm]?)")
LAST_USED_EVERY = timedelta(seconds=60)  # an agent polling every minute writes once a minute


@dataclass
class Created:
    token: ApiToken
    secret: str  # the whole bearer token: shown this once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_expiry(text: str | None, *, now: datetime | None = None) -> datetime | None:
    """"90d", "12h", "30m" or a bare number of days; "" / "never" / None: no expiry."""
    raw = (text or "").strip().lower()
    if raw in ("", "never", "0"):
        return None
    match = EXPIRES.fullmatch(raw)
    if not match or int(match.group(1)) == 0:
        raise ValidationError({"expires": f"Not a duration: {raw[:40]!r}. Write e.g. 90d, 12h or 30m "
                                          "(or never)."})
    amount = int(match.group(1))
    unit = {"d": "days", "": "days", "h": "hours", "m": "minutes"}[match.group(2)]
    if unit == "days" and amount > 3660:
        raise ValidationError({"expires": "At most 3660 days (ten years)."})
    return (now or utcnow()) + timedelta(**{unit: amount})


def create(name: str, scopes, *, cert_ids=(), tags=(), expires: str | None = None,
           created_by: str = "", owner: Admin | None = None) -> Created:
    """A new token of `owner` (None: the instance owner's, made at the shell); ValidationError
    naming each field in error (name, scopes, cert_ids, tags, expires). Its scopes stay within
    the owner's role and the acting role (a token never exceeds its maker)."""
    errors: dict[str, str] = {}
    name = (name or "").strip()
    if not NAME.fullmatch(name):
        errors["name"] = ("Name the token (1-100 characters: letters, digits, space, '.', '_', '@', "
                          "':' or '-'; e.g. the server or panel that uses it).")
    elif db.session().scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        errors["name"] = f"A token named {name!r} exists already; choose another name."
    try:
        scope_list = permissions.check_scopes(scopes)
    except ValueError as exc:
        errors["scopes"] = str(exc)
        scope_list = []
    beyond = [s for s in scope_list if not roles.can(s) or (owner is not None and not roles.can(s, owner.role))]
    if beyond:
        role = owner.role if owner is not None else roles.current_role()
        errors["scopes"] = (f"A token of the {role} role cannot hold {', '.join(beyond)}: "
                            f"a token never exceeds its user's role.")
    ids: list[int] = []
    for raw in (cert_ids.split(",") if isinstance(cert_ids, str) else cert_ids):
        if str(raw).strip() == "":
            continue
        number = whole_number(raw, 1, 2 ** 63 - 1)
        if number is None:
            errors["cert_ids"] = f"Not a certificate ID: {str(raw)[:20]!r}."
            break
        ids.append(number)
    try:
        tag_list = tag_service.parse(tags)
    except ValidationError as exc:
        errors.update(exc.errors)
        tag_list = []
    try:
        expires_at = parse_expiry(expires)
    except ValidationError as exc:
        errors.update(exc.errors)
        expires_at = None
    if errors:
        raise ValidationError(errors)
    row = ApiToken(name=name, secret_hash="", scopes=scope_list, cert_ids=sorted(set(ids)), tags=tag_list,
                   created_by=created_by or audit.current_actor(), expires_at=expires_at, last_used_address="",
                   user_id=owner.id if owner is not None else None)
    s = db.session()
    s.add(row)
    s.flush()
    secret = secrets.token_urlsafe(32)
    row.secret_hash = _hash(secret)
    restriction = describe_restriction(row)
    audit.record("API token created", "api_token", row.id,
                 f"{name}: {', '.join(scope_list)}{'; ' + restriction if restriction else ''}"
                 f"{'; expires ' + expires_at.strftime('%Y-%m-%d %H:%M UTC') if expires_at else ''}")
    s.commit()
    return Created(row, f"{PREFIX}{row.id}_{secret}")


def describe_restriction(token: ApiToken) -> str:
    parts = []
    if token.cert_ids:
        parts.append("certificates " + ", ".join(f"#{i}" for i in token.cert_ids))
    if token.tags:
        parts.append("tags " + ", ".join(token.tags))
    return "only " + " and ".join(parts) if parts else ""


def all_tokens() -> list[ApiToken]:
    return list(db.session().scalars(select(ApiToken).order_by(ApiToken.id)))


def get(ref: Any) -> ApiToken:
    """A token by id or name."""
    s = db.session()
    token = None
    number = whole_number(ref, 1, 2 ** 63 - 1)
    if number is not None:
        token = s.get(ApiToken, number)
    if token is None:
        token = s.scalar(select(ApiToken).where(ApiToken.name == str(ref)))
    if token is None:
        raise NotFound(f"No API token {str(ref)[:100]!r}.", hint="`sslmanager token list` shows them.")
    return token


def revoke(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record("API token revoked", "api_token", token.id, token.name)
    db.session().commit()


def state(token: ApiToken, now: datetime | None = None) -> str:
    """"active", "expired" or "revoked"."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or utcnow()):
        return "expired"
    return "active"


class Invalid(Exception):
    """The bearer token is malformed, unknown, revoked or expired (`reason` says which, for
    the log and the problem's detail: telling a revoked token from an unknown one helps the
    operator and gives a guesser nothing)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def authenticate(bearer: str, address: str) -> permissions.Principal:
    """The principal a bearer token stands for; Invalid otherwise. Records the use (at most
    once a minute per token, so polling agents do not write on every call)."""
    match = _FORMAT.fullmatch(bearer.strip())
    if not match:
        raise Invalid("not an SSL Manager API token (sslm_<id>_<secret>)")
    token = db.session().get(ApiToken, int(match.group(1)))
    given = _hash(match.group(2))
    if token is None or not hmac.compare_digest(token.secret_hash, given):
        raise Invalid("unknown token")
    now = utcnow()
    verdict = state(token, now)
    if verdict != "active":
        raise Invalid(f"this token is {verdict}")
    if token.last_used_at is None:
        token.last_used_at, token.last_used_address = now, address[:64]
        db.session().commit()
    elif now - token.last_used_at >= LAST_USED_EVERY or token.last_used_address != address[:64]:
        # Batched with other pollers' (services.touches): an agent polling each minute costs no
        # commit of its own.
        touches.touch(ApiToken, token.id, last_used_at=now, last_used_address=address[:64])
    return principal_of(token)


def principal_of(token: ApiToken) -> permissions.Principal:
    """What the token may do now: its scopes, cut to its user's role as it is today (a user
    demoted after making the token takes the token down with them)."""
    scopes = frozenset(token.scopes or ())
    if token.user_id is not None:
        owner = db.session().get(Admin, token.user_id)
        if owner is None or owner.disabled:
            raise Invalid("its user is disabled")
        scopes &= permissions.ROLES.get(owner.role, frozenset())
    return permissions.Principal(name=f"token:{token.name}", scopes=scopes,
                                 cert_ids=frozenset(token.cert_ids or ()), tags=frozenset(token.tags or ()),
                                 token_id=token.id)
