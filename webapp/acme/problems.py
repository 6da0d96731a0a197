"""ACME problem documents (RFC 8555 6.7): what an operator reads for each type and what to do
(the one place a hint comes from), and the CA's own words. No Flask here."""
from __future__ import annotations

import json

import josepy as jose
import requests
from acme import messages

SNIPPET_CHARS = 200

# What to do when the CA could not see a TXT value: the usual cause is the delegation.
_CNAME_HINT = ("check that each _acme-challenge CNAME points at the technical zone, that both TXT "
               "values are published there, and that the zone's servers answer from the internet")


# Validation failures (a challenge's error) that most often mean the same.
_VALIDATION_PROBLEMS = ("dns", "incorrectResponse", "unauthorized", "connection")


# What an operator reads for each ACME problem type (RFC 8555 section 6.7), and what to do.
_PROBLEMS: dict[str, tuple[str, str]] = {
    "accountDoesNotExist": ("no account exists at the CA for this account key",
                            "register the account again"),
    "alreadyReplaced": ("the CA says the certificate named in `replaces` was already replaced",
                        ""),
    "alreadyRevoked": ("the certificate is already revoked", ""),
    "badCSR": ("the CA rejected the certificate request (CSR)", ""),
    "badNonce": ("the CA kept rejecting our anti-replay nonces",
                 "try again; if it persists the CA is misbehaving"),
    "badPublicKey": ("the CA does not accept this key type", "use an EC P-256 or RSA key"),
    "badRevocationReason": ("the CA does not accept this revocation reason", ""),
    "badSignatureAlgorithm": ("the CA does not accept the account key's signature algorithm",
                              "use an EC P-256 account key"),
    "caa": ("a CAA record forbids this CA from issuing for the name",
            "add an issue (and, for wildcards, issuewild) entry for this CA to the domain's CAA "
            "records"),
    "compound": ("the CA reported several problems", ""),
    "connection": ("the CA could not connect to the server to validate", ""),
    "dns": ("the CA's DNS lookup failed during validation", _CNAME_HINT),
    "externalAccountRequired": ("EAB required but missing: the CA requires External Account "
                                "Binding and no EAB key ID / HMAC key is set",
                                "enter the EAB key ID and HMAC key from the CA's account page"),
    "incorrectResponse": ("the CA found a wrong validation value", _CNAME_HINT),
    "invalidContact": ("the CA rejected the contact e-mail address",
                       "use a real, reachable e-mail address"),
    "malformed": ("the CA rejected the request as malformed", ""),
    "orderNotReady": ("the order is not ready to be finalized", ""),
    "rateLimited": ("the CA's rate limit was hit", "wait before trying again"),
    "rejectedIdentifier": ("the CA will not issue for this name", ""),
    "serverInternal": ("the CA had an internal error", "try again later"),
    "tls": ("the CA's TLS validation connection failed", ""),
    "unauthorized": ("the CA refused: not authorized", ""),
    "unsupportedContact": ("the CA does not support this contact type", ""),
    "unsupportedIdentifier": ("the CA does not support this identifier type", ""),
    "userActionRequired": ("the CA requires an action on its website (e.g. new terms)",
                           "visit the CA's website"),
}


def problem_in(response: requests.Response | None) -> messages.Error | None:
    """The problem document an error answer carries, or None."""
    if response is None or not response.headers.get("Content-Type", "").startswith(
            "application/problem+json"):
        return None
    try:
        return messages.Error.from_json(response.json())
    except (ValueError, jose.DeserializationError):
        return None


def problem_words(code: str) -> tuple[str, str] | None:
    """(what happened, what to do) for a problem type's last part, or None for one we do not know."""
    return _PROBLEMS.get(code)


def problem_hint(problem_type: str, *, validation: bool = False) -> str:
    """The one place a hint comes from for an ACME problem type (a URN or its last part);
    `validation`: the problem is a challenge's, where DNS delegation is the usual cause."""
    code = (problem_type or "").rsplit(":", 1)[-1]
    if validation and code in _VALIDATION_PROBLEMS:
        return _CNAME_HINT
    return _PROBLEMS.get(code, ("", ""))[1]


def problem_detail(problem: messages.Error) -> str:
    """The CA's own words: detail (or title), then each subproblem with its identifier."""
    text = problem.detail or problem.title or ""
    for sub in problem.subproblems or ():
        who = f"{sub.identifier.value}: " if sub.identifier is not None else ""
        text += f"; {who}{sub.detail or sub.typ}"
    return text


def problem_from_json(jobj: dict | None) -> messages.Error | None:
    """A problem document embedded in an order, authorization or challenge."""
    if not jobj:
        return None
    try:
        return messages.Error.from_json(jobj)
    except jose.DeserializationError:
        return messages.Error(typ="about:blank", detail=json.dumps(jobj)[:SNIPPET_CHARS])
