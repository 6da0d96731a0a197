"""Chain choice. A CA may offer the same certificate under several chains (RFC 8555 7.4.2:
Link rel="alternate"), e.g. under a new root and cross-signed by an old one while a hierarchy
rolls out. A CA profile may prefer one by the issuer name of the chain's top certificate, as
certbot's --preferred-chain does: a root's name, which outlives the intermediates under it.
Intermediates are never pinned (no fingerprints, no intermediate names needed), so a CA that
rotates them changes nothing here; when no chain matches, the CA's default chain is used and
the timeline says so. No Flask: the issuance calls choose() with what the CA sent."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

MAX_LENGTH = 255
# What pinning looks like: a PEM, or a SHA-1/SHA-256 fingerprint (with or without colons).
_FINGERPRINT = re.compile(r"^(?:[0-9a-f]{2}:?){20,32}$", re.IGNORECASE)


@dataclass
class Choice:
    fullchain: str                 # the chain stored as the version's (leaf first)
    alternates: list[str] = field(default_factory=list)  # the others the CA offered
    note: str = ""                 # what was chosen and why: the timeline and the page say it
    matched: bool | None = None    # None: no preference; False: none matched, default kept


def top_issuer(fullchain: str) -> x509.Name | None:
    """The issuer of the chain's last (top) certificate, or None when it cannot be read."""
    try:
        certs = x509.load_pem_x509_certificates(fullchain.encode())
    except ValueError:
        return None
    return certs[-1].issuer if certs else None


def _cn(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def describe(name: x509.Name | None) -> str:
    return "an unreadable issuer" if name is None else (_cn(name) or name.rfc4514_string())


def matches(name: x509.Name | None, preferred: str) -> bool:
    """The issuer's CN equals `preferred`, or its full DN (RFC 4514) contains it; any case."""
    if name is None or not preferred:
        return False
    wanted = preferred.strip().casefold()
    return _cn(name).casefold() == wanted or wanted in name.rfc4514_string().casefold()


def choose(fullchain: str, alternates: list[str], preferred: str) -> Choice:
    """The chain to store: the first (the default, then the alternates in the CA's order) whose
    top certificate's issuer matches `preferred`; an exact CN beats a DN substring."""
    default = top_issuer(fullchain)
    if not preferred:
        extra = f"; {len(alternates)} alternate chain{'s' if len(alternates) != 1 else ''} kept" if alternates else ""
        return Choice(fullchain, list(alternates), f"chain: the CA's default, top certificate issued by "
                                                   f"{describe(default)}{extra}")
    offered = [fullchain, *alternates]
    issuers = [top_issuer(chain) for chain in offered]
    wanted = preferred.strip().casefold()
    exact = [i for i, name in enumerate(issuers) if name is not None and _cn(name).casefold() == wanted]
    loose = [i for i, name in enumerate(issuers) if matches(name, preferred)]
    pick = (exact or loose or [None])[0]
    if pick is None:
        names = "; ".join(dict.fromkeys(describe(name) for name in issuers))
        return Choice(fullchain, list(alternates),
                      f"chain: no chain's top certificate is issued by {preferred!r} (offered: {names}); "
                      f"using the CA's default chain, issued by {describe(default)}", matched=False)
    others = [chain for i, chain in enumerate(offered) if i != pick]
    which = "the CA's default chain" if pick == 0 else f"alternate chain {pick} of {len(alternates)}"
    return Choice(offered[pick], others,
                  f"chain: {which}, top certificate issued by {describe(issuers[pick])} "
                  f"(preferred: {preferred!r})", matched=True)


def validate(value: str) -> tuple[str, str]:
    """(clean value, error): an issuer name, never a certificate or a fingerprint."""
    value = " ".join(str(value or "").split())
    if len(value) > MAX_LENGTH:
        return value, f"Keep the preferred chain under {MAX_LENGTH} characters: an issuer name such as ISRG Root X1."
    if "BEGIN CERTIFICATE" in value or _FINGERPRINT.match(value.replace(" ", "")):
        return value, ("Enter the issuer's name (e.g. ISRG Root X1), not a certificate or fingerprint: "
                       "chains are chosen by the name of the root that issues their top certificate, "
                       "never by pinning an intermediate.")
    return value, ""
