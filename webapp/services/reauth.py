"""A request kept across a re-authentication at the identity provider. A user signed in by
single sign-on who is asked to prove it again before a private key leaves (fresh_sign_in) goes
to the provider and back; the request being confirmed (method, path and query, form fields,
which may hold a PKCS#12 password) waits here and is sent again from the "Signed in again"
page. It is good for MAX_SECONDS, once, and only for the user who started it.

Where it waits: in the session cookie, encrypted with the data key (AES-GCM, crypto.Keyring,
like every secret at rest). The cookie is signed, not encrypted: a form kept there in clear
could be read by anyone who sees the cookie (the browser's storage, a proxy's log). Server-side
storage would need a table (and its clean-up) for something that lives ten minutes; in the
cookie it goes with the browser that started it and leaves nothing behind. A form too large
for a cookie (MAX_BYTES) is not kept: the page then says it is not carried over."""
from __future__ import annotations

import json

from flask import current_app, session

from ..errors import CryptoError
from ..models import Admin
from . import auth

MAX_SECONDS = 600
MAX_BYTES = 1500  # the plain JSON; encrypted and base64'd it stays well inside a 4 KB cookie


def _seconds() -> int:
    return int(auth.now().timestamp())  # the clock every session decision reads


def _same_site(path: str) -> bool:
    return path.startswith("/") and not path.startswith("//") and "\\" not in path


def keep(user: Admin, method: str, path: str, fields: list[tuple[str, str]]) -> bool:
    """Keep this request for `user` (replacing one kept before). False when it is too large to
    carry, or not one that can be sent again (a method other than GET or POST)."""
    session.pop(auth.RESUME_KEY, None)
    if method not in ("GET", "POST") or not _same_site(path):
        return False
    plain = json.dumps({"user": user.id, "at": _seconds(), "method": method, "path": path,
                        "fields": [[str(k), str(v)] for k, v in fields]}, separators=(",", ":"))
    if len(plain.encode()) > MAX_BYTES:
        return False
    session[auth.RESUME_KEY] = current_app.extensions["sslmanager"].keyring.encrypt(plain)
    return True


def take(user: Admin | None) -> dict | None:
    """The kept request ({"method", "path", "fields"}) when it is `user`'s and still fresh;
    None otherwise. Taken once, right or wrong."""
    blob = session.pop(auth.RESUME_KEY, None)
    if user is None or not isinstance(blob, str):
        return None
    try:
        kept = json.loads(current_app.extensions["sslmanager"].keyring.decrypt(blob))
    except (CryptoError, ValueError):  # another data key since, or not ours
        return None
    if (not isinstance(kept, dict) or kept.get("user") != user.id or not isinstance(kept.get("at"), int)
            or not 0 <= _seconds() - kept["at"] < MAX_SECONDS or kept.get("method") not in ("GET", "POST")
            or not isinstance(kept.get("path"), str) or not _same_site(kept["path"])):
        return None
    fields = [(k, v) for k, v in kept.get("fields") or [] if isinstance(k, str) and isinstance(v, str)]
    return {"method": kept["method"], "path": kept["path"], "fields": fields}


def carry(pending: dict, before: dict | None) -> dict:
    """At the start of a re-authentication at the provider: the kept request moves into the
    sign-in in flight (`pending`, the session's SSO entry), since signing in clears the session.
    Started twice (the link clicked again, the back button): it comes from the one `before`."""
    blob = session.pop(auth.RESUME_KEY, None)
    if not isinstance(blob, str) and isinstance(before, dict):
        blob = before.get("resume")
    return {**pending, "resume": blob} if isinstance(blob, str) else pending


def restore(pending: dict | None) -> bool:
    """After the provider's callback signed the user in (a fresh session): the carried request
    back in the session, for the "Signed in again" page. False: none was carried."""
    blob = pending.get("resume") if isinstance(pending, dict) else None
    if not isinstance(blob, str):
        return False
    session[auth.RESUME_KEY] = blob
    return True
