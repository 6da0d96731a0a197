"""The two challenge types SSL Manager answers: dns-01 (acme's own classes) and dns-persist-01
(draft-ietf-acme-dns-persist) on certbot's `acme`, which does not know it:
the challenge arrives as acme's UnrecognizedChallenge (its JSON kept whole), and the answer is
acme's generic ChallengeResponse, an empty JSON object. No token, no key authorization: the
CA reads `_validation-persist.<domain>` and checks the issuer domain and our account URL.
No Flask here."""
from __future__ import annotations

from typing import Any

import josepy as jose
from acme import challenges as acme_challenges
from acme import messages

from webapp.acme.results import Challenge, status_of
from webapp.errors import AcmeError

PERSIST = "dns-persist-01"
DNS01 = "dns-01"
LABEL = "_validation-persist"


class PersistResponse(acme_challenges.ChallengeResponse):
    """The answer to a dns-persist-01 challenge: `{}` (ChallengeResponse drops the type)."""

    typ = PERSIST

    def __bool__(self) -> bool:
        # No fields makes it an empty (falsy) mapping, and ClientNetwork signs a falsy object
        # as an empty payload: a POST-as-GET, which must not start validation (RFC 8555 7.5.1).
        return True


def challenge_type(challb: messages.ChallengeBody) -> str:
    """The challenge's type, also for one acme does not know ("dns-persist-01")."""
    chall = challb.chall
    if isinstance(chall, acme_challenges.UnrecognizedChallenge):
        return str(chall.jobj.get("type", ""))
    return str(chall.typ)


def persist_fields(challb: messages.ChallengeBody) -> tuple[list[str], str]:
    """(issuer-domain-names, accounturi) of a dns-persist-01 challenge object; the draft
    requires the first, some CAs (acme2certifier) add the second."""
    jobj: dict[str, Any] = challb.chall.jobj if isinstance(
        challb.chall, acme_challenges.UnrecognizedChallenge) else {}
    names = jobj.get("issuer-domain-names") or []
    if isinstance(names, str):
        names = [names]
    issuers = [str(n).strip().lower().rstrip(".") for n in names if str(n).strip()]
    return issuers, str(jobj.get("accounturi") or "")


def challenge_of(authz_url: str, authz: messages.Authorization, challb: messages.ChallengeBody,
                 method: str, jwk: jose.JWK) -> Challenge:
    """A pending challenge as the client hands it out: dns-01 with the TXT value to publish,
    or dns-persist-01 with the issuer domain names the CA accepts."""
    name = ("*." if authz.wildcard else "") + authz.identifier.value
    common = {"authz_url": authz_url, "identifier": name, "wildcard": bool(authz.wildcard),
              "url": challb.uri, "status": status_of(challb.status)}
    if method == PERSIST:
        issuers, accounturi = persist_fields(challb)
        return Challenge(**common, token="", txt_name=f"{LABEL}.{authz.identifier.value}",
                         txt_value="", type=PERSIST, issuer_domain_names=issuers,
                         accounturi=accounturi)
    return Challenge(**common, token=jose.b64encode(challb.chall.token).decode(),
                     txt_name=challb.chall.validation_domain_name(authz.identifier.value),
                     txt_value=challb.chall.validation(jwk))


def answer_of(chall: Challenge, jwk: jose.JWK) -> tuple[messages.ChallengeBody,
                                                        acme_challenges.ChallengeResponse]:
    """The challenge body and the response that says "ready": dns-01's key authorization, or
    for dns-persist-01 (unknown to acme) its generic response, `{}`."""
    if chall.type == PERSIST:
        return (messages.ChallengeBody(chall=acme_challenges.UnrecognizedChallenge(
            {"type": PERSIST}), uri=chall.url), PersistResponse())
    challb = messages.ChallengeBody(chall=acme_challenges.DNS01(token=jose.b64decode(chall.token)),
                                    uri=chall.url)
    return challb, challb.chall.response(jwk)


def probe(client: Any, name: str) -> dict:
    """Which challenge types the CA offers for `name` (`client`: an AcmeClient with an account),
    asked with an order that is never
    answered: {"types", "issuer_domain_names", "accounturi"}. Its authorization is then
    deactivated where the CA allows it (else it expires by itself)."""
    order = client.new_order([name])
    url = order.authorizations[0]
    authz = client.authorization(url, step="probe authorization")
    types = [challenge_type(c) for c in authz.challenges]
    persist = [c for c in authz.challenges if challenge_type(c) == PERSIST]
    issuers, accounturi = persist_fields(persist[0]) if persist else ([], "")
    try:
        client.deactivate_authorization(url)
    except AcmeError:  # acme2certifier, for one, has no deactivation: the probe's answer stands
        pass
    return {"types": types, "issuer_domain_names": issuers, "accounturi": accounturi}
