"""The permission model, in one place: scopes, what each role may hold, and what a principal
(today an API token; with issue #18 a user too) may see and do.

A Principal holds a set of scopes and, optionally, a restriction to some certificates (by ID
and/or by tag). Every check the API makes goes through `require` and `can_see` /
`visible_certificates`, so a role-based user model only has to build a Principal from its role
(`ROLES[role]`) and a token never exceeds its user's role (`within_role`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import exists, false, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ..models import Certificate, CertificateTag

READ = "read"            # list and show everything but private keys
WRITE = "write"          # change CA profiles, zones and certificates (create, tag, revoke, delete)
ISSUE = "issue"          # process now and renew now
KEYS_READ = "keys:read"  # private keys: privkey.pem, the PEM bundle's key, PKCS#12
SCOPES = (READ, WRITE, ISSUE, KEYS_READ)
SCOPE_HELP = {READ: "list and show (no private keys)", WRITE: "change profiles, zones and certificates",
              ISSUE: "process and renew now", KEYS_READ: "read private keys"}

# Roles (issue #18) are named sets of scopes: a user's token may hold only its role's scopes.
ROLES: dict[str, frozenset[str]] = {
    "viewer": frozenset({READ}),
    "operator": frozenset({READ, ISSUE}),
    "admin": frozenset(SCOPES),
}


class Denied(Exception):
    """The principal lacks a scope, or the object lies outside its restriction."""

    def __init__(self, message: str, *, scope: str = ""):
        super().__init__(message)
        self.message = message
        self.scope = scope


@dataclass(frozen=True)
class Principal:
    """Who acts through the API: a name for the audit log ("token:deploy"), scopes, and the
    certificates it is restricted to (both empty: every certificate)."""

    name: str
    scopes: frozenset[str]
    cert_ids: frozenset[int] = field(default_factory=frozenset)
    tags: frozenset[str] = field(default_factory=frozenset)
    token_id: int | None = None

    @property
    def restricted(self) -> bool:
        return bool(self.cert_ids or self.tags)

    @property
    def actor(self) -> str:
        return self.name


def check_scopes(scopes) -> list[str]:
    """The scopes as given, in SCOPES order; ValueError naming any unknown one."""
    wanted = [str(s).strip() for s in scopes]
    unknown = [s for s in wanted if s not in SCOPES]
    if unknown:
        raise ValueError(f"Unknown scope {', '.join(map(repr, unknown))}: choose from {', '.join(SCOPES)}.")
    if not wanted:
        raise ValueError(f"Give at least one scope: {', '.join(SCOPES)}.")
    return [s for s in SCOPES if s in wanted]


def within_role(role: str, scopes) -> bool:
    """May a user of `role` hold (or hand a token) these scopes?"""
    return set(scopes) <= ROLES.get(role, frozenset())


def has(principal: Principal, scope: str) -> bool:
    return scope in principal.scopes


def require(principal: Principal, scope: str) -> None:
    """Raise Denied unless the principal holds `scope`."""
    if scope not in principal.scopes:
        raise Denied(f"This token lacks the {scope!r} scope ({SCOPE_HELP[scope]}).", scope=scope)


def can_see(principal: Principal, cert_id: int, tags) -> bool:
    """Is this certificate (with these tags) inside the principal's restriction?"""
    if not principal.restricted:
        return True
    return cert_id in principal.cert_ids or bool(principal.tags & set(tags))


def visible_certificates(principal: Principal) -> ColumnElement[bool] | None:
    """A WHERE clause on Certificate for a restricted principal's lists; None: no filter."""
    if not principal.restricted:
        return None
    clauses: list[ColumnElement[bool]] = []
    if principal.cert_ids:
        clauses.append(Certificate.id.in_(sorted(principal.cert_ids)))
    if principal.tags:
        clauses.append(exists(select(CertificateTag.certificate_id).where(
            CertificateTag.certificate_id == Certificate.id, CertificateTag.tag.in_(sorted(principal.tags)))))
    return or_(*clauses) if clauses else false()


def require_key_access(principal: Principal, cert_id: int, tags) -> None:
    """Private keys: the keys:read scope and the certificate inside the restriction. Both
    failures are 403 (never the key, and never a hint whether another certificate exists)."""
    require(principal, KEYS_READ)
    if not can_see(principal, cert_id, tags):
        raise Denied("This token is restricted to other certificates: it cannot read this key.")


def may_create_with(principal: Principal, tags) -> None:
    """A restricted principal may only make (or re-tag) certificates it will still see: those
    carrying one of its tags."""
    if principal.restricted and not (principal.tags & set(tags)):
        raise Denied("This token is restricted: a certificate it makes or re-tags must carry one of "
                     f"its tags ({', '.join(sorted(principal.tags)) or 'it has none'}).")
