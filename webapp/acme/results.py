"""What the ACME client hands back (accounts, orders, challenges) and how it reads the CA's
answers: statuses, identifiers, Link headers, and the problems that call for a second try
(an account the CA forgot, a `replaces` it refused). No Flask here."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field

import josepy as jose
import requests
from acme import messages
from requests.utils import parse_header_links

from webapp.errors import AcmeError

@dataclass
class AccountInfo:
    """An ACME account as the CA knows it."""

    url: str
    status: str
    contact: tuple[str, ...]


@dataclass
class Challenge:
    """One pending challenge: dns-01 and the TXT record that answers it, or dns-persist-01
    (no token, no value: the CA reads the domain owner's `_validation-persist` record)."""

    authz_url: str
    identifier: str      # as ordered: "*.example.com" for a wildcard authorization
    wildcard: bool
    url: str
    token: str
    txt_name: str        # _acme-challenge.<identifier without *.>
    txt_value: str       # base64url(SHA-256(key authorization)); "" for dns-persist-01
    status: str
    type: str = "dns-01"
    issuer_domain_names: list[str] = field(default_factory=list)  # dns-persist-01 only
    accounturi: str = ""                                           # dns-persist-01, if the CA says


@dataclass
class OrderInfo:
    """An ACME order's state."""

    url: str
    status: str
    authorizations: list[str]
    finalize: str
    certificate: str | None
    expires: datetime.datetime | None
    error: dict | None


class NewOrder(messages.NewOrder):
    """newOrder with RFC 9773's `replaces` (certbot's acme 5.x has `profile` but not this)."""

    replaces: str | None = jose.field("replaces", omitempty=True)


# Problem types that mean "this order may not carry `replaces`": retry once without it.
REPLACES_REFUSED = (":alreadyReplaced", ":malformed", ":conflict")


def refuses_replaces(exc: AcmeError) -> bool:
    """A CA's "no" to `replaces`: alreadyReplaced, malformed, or another 4xx that names it."""
    return exc.problem_type.endswith(REPLACES_REFUSED) or (
        400 <= (exc.status or 0) < 500 and "replace" in exc.detail.lower())


def account_lost(exc: AcmeError) -> bool:
    """The CA no longer knows our account (restarted, reset, deactivated, restored backup)."""
    kind = exc.problem_type.rsplit(":", 1)[-1]
    if kind == "accountDoesNotExist":
        return True
    words = exc.detail.lower()
    return kind == "unauthorized" and any(w in words for w in (
        "key id", "keyid", "kid", "account does not exist", "no such account",
        "account not found", "unknown account", "account is not valid", "deactivated"))


def order_info(url: str, body: messages.Order) -> OrderInfo:
    return OrderInfo(url=url, status=status_of(body.status), finalize=body.finalize,
                     authorizations=list(body.authorizations or ()),
                     certificate=body.certificate, expires=body.expires,
                     error=body.error.to_json() if body.error is not None else None)


def account_info(url: str, body: messages.Registration) -> AccountInfo:
    return AccountInfo(url=url, status=status_of(body.status) or "valid", contact=tuple(body.contact))


def status_of(status: messages.Status | str | None) -> str:
    """'pending', not 'Status(pending)' (Registration.status stays a plain string)."""
    return str(getattr(status, "name", status) or "")


def identifier_of(name: str) -> messages.Identifier:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=name)
    return messages.Identifier(typ=messages.IDENTIFIER_IP, value=name)


def links_of(response: requests.Response, rel: str) -> list[str]:
    """Every Link URL with this rel (requests' response.links keeps only one per rel)."""
    header = response.headers.get("Link")
    if not header:
        return []
    return [link["url"] for link in parse_header_links(header)
            if link.get("rel") == rel and "url" in link]
