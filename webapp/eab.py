"""EAB HMAC keys as CAs show them, in the one form SSL Manager stores. No Flask here.

CAs print the key differently: ZeroSSL and Pebble in unpadded base64url, Google Trust Services
and some panels in standard base64 with `+ / =`, and a key copied from a mail or a PDF may come
wrapped over several lines. All of these name the same bytes; what acme's
`ExternalAccountBinding.from_data` (and Pebble's config) take is unpadded base64url, so that is
what is stored. A key that mixes the two alphabets, or has anything else in it, is refused:
decoding it anyway would sign with other bytes than the CA's (Python's lenient decoder drops
characters it does not know) and the CA would only say "bad signature".
"""
from __future__ import annotations

import base64
import binascii
import re

_STANDARD = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_URLSAFE = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")

# What the refusal says; it never quotes the key (a secret, and often pasted next to others).
REFUSED = ("The EAB HMAC Key is not a base64url or base64 key: paste it exactly as the CA shows "
           "it (letters, digits and either - _ or + /, with or without = at the end).")


class BadEabKey(ValueError):
    """The text is no base64 or base64url key; str() is REFUSED, without the key."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def normalise_hmac_key(text: str) -> str:
    """The key in unpadded base64url, from base64url or standard base64, padded or not, with
    any whitespace around or inside it (line breaks a copy adds) removed. BadEabKey otherwise."""
    compact = "".join(text.split())
    if not compact or not (_STANDARD.match(compact) or _URLSAFE.match(compact)):
        raise BadEabKey()
    body = compact.rstrip("=")
    # Padding, when present, must be what base64 puts there: up to a whole group of four.
    if compact != body and len(compact) % 4:
        raise BadEabKey()
    if len(body) % 4 == 1:  # six bits left over: no encoder writes that
        raise BadEabKey()
    urlsafe = body.replace("+", "-").replace("/", "_")
    try:
        base64.urlsafe_b64decode(urlsafe + "=" * (-len(urlsafe) % 4))
    except (binascii.Error, ValueError):
        raise BadEabKey() from None
    # The same characters in the other alphabet, not a re-encoding: what the operator typed
    # stays recognisable (a key whose last character carries stray bits keeps them; every
    # decoder, acme's and the CA's, ignores them alike).
    return urlsafe
