"""Single sign-on with OpenID Connect: the authorization code flow with PKCE through Authlib's
client, the provider's settings from discovery, and the ID token checked with joserfc (the JOSE
library Authlib itself now builds on): signature against the provider's published keys,
issuer, audience (and azp), nonce, expiry and issue time.

Who gets in: the groups in a configurable claim map to roles (SSLMANAGER_OIDC_ROLES); a user is
made at the first sign-in only when a group gives a role, and at each sign-in takes the role the
groups give then (the identity provider is the authority). Everyone else is refused."""
from __future__ import annotations

import secrets
import threading
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry
from sqlalchemy import select

from .. import db
from ..errors import SSLManagerError
from ..models import Admin, utcnow
from . import audit, roles
from .addresses import address_problem

CACHE_SECONDS = 600        # discovery document and keys, refetched after this (or an unknown kid)
TIMEOUT = 10
LEEWAY = 60                # clock skew allowed on exp / iat
PENDING_SECONDS = 600      # from the redirect to the provider to the callback
_cache: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


class SsoRefused(SSLManagerError):
    """Sign-in through the provider refused: a wrong state, a bad ID token, no role."""


def enabled() -> bool:
    cfg = current_app.config
    return bool(cfg.get("SSLMANAGER_OIDC_ISSUER") and cfg.get("SSLMANAGER_OIDC_CLIENT_ID"))


def provider_origin() -> str | None:
    """scheme://host[:port] of the configured provider (None: single sign-on is off)."""
    if not enabled():
        return None
    parts = urlsplit(_issuer())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def _issuer() -> str:
    return str(current_app.config["SSLMANAGER_OIDC_ISSUER"]).rstrip("/")


def _fetch(url: str) -> Any:
    problem = address_problem(url, purpose="oidc")
    if problem:
        raise SsoRefused(f"The identity provider's address is refused: {problem}",
                         hint="Allow it with SSLMANAGER_OUTBOUND_ALLOW_OIDC.")
    try:
        answer = requests.get(url, timeout=TIMEOUT)
        answer.raise_for_status()
        return answer.json()
    except (requests.RequestException, ValueError) as exc:
        raise SsoRefused(f"The identity provider did not answer: {type(exc).__name__}", url=url) from None


def _cached(key: str, load, fresh: bool = False):
    with _lock:
        hit = _cache.get(key)
        if hit and not fresh and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
    value = load()
    with _lock:
        _cache[key] = (time.monotonic(), value)
    return value


def metadata() -> dict[str, Any]:
    """The provider's discovery document; its issuer must be the configured one exactly."""
    issuer = _issuer()

    def load():
        meta = _fetch(f"{issuer}/.well-known/openid-configuration")
        if meta.get("issuer") != issuer:
            raise SsoRefused(f"The discovery document names issuer {meta.get('issuer')!r}, not {issuer!r}.",
                             hint="Set SSLMANAGER_OIDC_ISSUER to the issuer exactly as the provider names it.")
        return meta
    return _cached("meta:" + issuer, load)


def _keys(fresh: bool = False) -> KeySet:
    uri = metadata()["jwks_uri"]
    return _cached("jwks:" + uri, lambda: KeySet.import_key_set(_fetch(uri)), fresh)


def _client(redirect_uri: str) -> OAuth2Session:
    cfg = current_app.config
    return OAuth2Session(cfg["SSLMANAGER_OIDC_CLIENT_ID"], cfg["SSLMANAGER_OIDC_CLIENT_SECRET"] or None,
                         scope=cfg["SSLMANAGER_OIDC_SCOPES"], redirect_uri=redirect_uri,
                         code_challenge_method="S256")


def begin(redirect_uri: str, *, fresh_login: bool = False) -> tuple[str, dict[str, Any]]:
    """(the provider's authorization URL, what to keep in the session until the callback)."""
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    extra = {"prompt": "login", "max_age": 0} if fresh_login else {}
    url, _ = _client(redirect_uri).create_authorization_url(
        metadata()["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier, **extra)
    return url, {"state": state, "nonce": nonce, "verifier": verifier, "at": int(time.time())}


def finish(args: dict[str, str], pending: dict[str, Any] | None, redirect_uri: str) -> tuple[dict, str]:
    """The callback: (the ID token's claims, the ID token). Raises SsoRefused."""
    if not isinstance(pending, dict) or not 0 <= time.time() - int(pending.get("at", 0)) < PENDING_SECONDS:
        raise SsoRefused("This sign-in was not started here, or took too long.", hint="Sign in again.")
    if not secrets.compare_digest(str(args.get("state", "")), str(pending.get("state", ""))):
        raise SsoRefused("The answer's state does not match this sign-in (a forged or replayed answer).",
                         hint="Sign in again.")
    if args.get("error"):
        raise SsoRefused(f"The identity provider refused: {args.get('error')}: "
                         f"{str(args.get('error_description', ''))[:200]}")
    token_url = metadata()["token_endpoint"]
    problem = address_problem(token_url, purpose="oidc")
    if problem:
        raise SsoRefused(f"The identity provider's token endpoint is refused: {problem}")
    try:
        token = _client(redirect_uri).fetch_token(token_url, code=str(args.get("code", "")),
                                                  code_verifier=pending["verifier"], timeout=TIMEOUT)
    except Exception as exc:  # noqa: BLE001 — Authlib's OAuthError, requests' errors: one answer
        raise SsoRefused(f"The code could not be exchanged for tokens: {exc}") from None
    id_token = token.get("id_token")
    if not id_token:
        raise SsoRefused("The identity provider sent no ID token (is `openid` among the scopes?).")
    return verify_id_token(id_token, pending["nonce"]), id_token


def verify_id_token(id_token: str, nonce: str, *, now: int | None = None) -> dict[str, Any]:
    """The claims of a valid ID token for this client and this sign-in; SsoRefused otherwise."""
    meta = metadata()
    algorithms = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in algorithms if a != "none"]
    client_id = current_app.config["SSLMANAGER_OIDC_CLIENT_ID"]
    try:
        try:
            token = jwt.decode(id_token, _keys(), algorithms=algorithms)
        except (JoseError, ValueError) as exc:
            if "key" not in str(exc).lower():
                raise
            token = jwt.decode(id_token, _keys(fresh=True), algorithms=algorithms)  # keys rotated
        registry = JWTClaimsRegistry(
            now=now, leeway=LEEWAY, iss={"essential": True, "value": meta["issuer"]},
            aud={"essential": True, "value": client_id}, sub={"essential": True},
            exp={"essential": True}, iat={"essential": True}, nonce={"essential": True, "value": nonce})
        registry.validate(token.claims)
    except (JoseError, ValueError) as exc:
        raise SsoRefused(f"The ID token was refused: {exc}") from None
    claims = token.claims
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise SsoRefused("The ID token was refused: several audiences and azp is not this client.")
    return claims


def role_for(claims: dict[str, Any]) -> str | None:
    """The highest role the user's groups map to (None: no group maps to one)."""
    cfg = current_app.config
    groups = claims.get(cfg["SSLMANAGER_OIDC_GROUPS_CLAIM"]) or []
    groups = [groups] if isinstance(groups, str) else groups
    mapping = cfg["SSLMANAGER_OIDC_ROLES"] or {}
    order = list(roles.ROLES)  # viewer, operator, admin
    found = [mapping[g] for g in groups if isinstance(g, str) and mapping.get(g) in roles.ROLES]
    return max(found, key=order.index) if found else None


def user_for(claims: dict[str, Any]) -> Admin:
    """The SSL Manager user of these claims: made at the first sign-in, its role kept in step
    with the groups. SsoRefused when no group gives a role, or the user is disabled here."""
    subject = f"{claims['iss']} {claims['sub']}"[:600]
    role = role_for(claims)
    s = db.session()
    user = s.execute(select(Admin).filter_by(oidc_subject=subject)).scalar_one_or_none()
    name = str(claims.get("preferred_username") or claims.get("email") or claims["sub"])[:120]
    if role is None:
        audit.record("sign-in refused", "admin", user.id if user else "",
                     f"{name} (single sign-on): no group maps to a role", actor=name)
        s.commit()
        raise SsoRefused(f"{name}: your account at the identity provider is in no group that SSL Manager "
                         "maps to a role.", hint="Ask an administrator to add you to one of those groups.")
    if user is None:
        taken = s.execute(select(Admin.id).filter_by(username=name)).first()
        username = f"{name}@{urlsplit(claims['iss']).hostname}" if taken else name
        if s.execute(select(Admin.id).filter_by(username=username)).first():
            raise SsoRefused(f"A local user named {username!r} exists already.",
                             hint="An admin renames or removes that user.")
        user = Admin(username=username, password_hash="!sso", session_epoch=0, disabled=False, role=role,
                     recovery_codes=[], oidc_subject=subject)
        s.add(user)
        s.flush()
        audit.record("user created", "admin", user.id, f"{username} ({role}, single sign-on)", actor=username)
    elif user.disabled:
        raise SsoRefused(f"{user.username} is disabled in SSL Manager.", hint="Ask an administrator.")
    elif user.role != role:
        audit.record("role changed", "admin", user.id, f"{user.username}: {user.role} → {role} (groups at "
                     "the identity provider)", actor=user.username)
        user.role = role
    user.last_login_at = utcnow()
    s.commit()
    return user


def logout_url(id_token: str | None, return_to: str) -> str | None:
    """RP-initiated logout at the provider, when it offers it (None: it does not)."""
    try:
        endpoint = metadata().get("end_session_endpoint")
    except SsoRefused:
        return None
    if not endpoint:
        return None
    query = {"client_id": current_app.config["SSLMANAGER_OIDC_CLIENT_ID"], "post_logout_redirect_uri": return_to}
    if id_token:
        query["id_token_hint"] = id_token
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"
