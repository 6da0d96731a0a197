"""Single sign-on: to the OpenID Provider and back. The protocol is in services/oidc.py; here
the session holds the sign-in in flight (state, nonce, PKCE verifier) and the callback is
throttled like the password form."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for

from ..services import oidc, reauth
from ..services.auth import SSO_PENDING_KEY, RESUME_KEY, RateLimited, check_throttle, current_admin, record_failure
from .auth import complete_sign_in, safe_next

bp = Blueprint("sso", __name__)
THROTTLE_KEY = "oidc-callback"  # failed callbacks count per address, with the sign-in failures


def _on() -> None:
    if not current_app.extensions["sslmanager"].standalone or not oidc.enabled():
        abort(404)


def _callback_url() -> str:
    return url_for(".callback", _external=True)


def _refused(message: str, hint: str = "", status: int = 403, headers=None):
    return render_template("sslmanager/sso_refused.html", message=message, hint=hint), status, headers or {}


@bp.route("/login/sso")
def start():
    """To the provider's sign-in page (?reauth=1: it must ask again, for a key download; the
    request that asked, kept by ask_password_again, goes along)."""
    _on()
    again = request.args.get("reauth") == "1"
    try:
        url, pending = oidc.begin(_callback_url(), fresh_login=again)
    except oidc.SsoRefused as exc:
        return _refused(exc.message, exc.hint, 502)
    pending = {**pending, "next": safe_next(request.args.get("next"))}
    if again:
        pending = reauth.carry(pending, session.get(SSO_PENDING_KEY))
    session.pop(RESUME_KEY, None)  # a plain sign-in continues nothing
    session[SSO_PENDING_KEY] = pending
    return redirect(url)


@bp.route("/login/sso/callback")
def callback():
    _on()
    address = (request.remote_addr or "")[:64]
    try:
        check_throttle(THROTTLE_KEY, address)
    except RateLimited as exc:
        return _refused(f"Too many failed sign-ins. Wait {exc.retry_after} seconds, then try again.", status=429,
                        headers={"Retry-After": str(exc.retry_after)})
    pending = session.pop(SSO_PENDING_KEY, None)
    try:
        claims, id_token = oidc.finish(request.args.to_dict(), pending, _callback_url())
        user = oidc.user_for(claims)
    except oidc.SsoRefused as exc:
        record_failure(THROTTLE_KEY, address)
        return _refused(exc.message, exc.hint)
    if pending.get("resume"):  # a re-authentication: on to "Signed in again", which sends it again
        response = complete_sign_in(user, url_for(".resume"), id_token=id_token)
        reauth.restore(pending)  # after complete_sign_in: a new session starts empty
        return response
    return complete_sign_in(user, pending.get("next"), id_token=id_token)


@bp.route("/login/sso/continue")
def resume():
    """"Signed in again": the request that asked for the re-authentication, sent again: a GET
    at once; a POST by a form of its fields and one button (the CSP allows no inline script
    to send it by itself). Kept 10 minutes, used once, for the same user only."""
    _on()
    kept = reauth.take(current_admin())
    headers = {"Cache-Control": "no-store"}  # the fields may hold a PKCS#12 password
    if kept is None:
        return render_template("sslmanager/reauth_continue.html", kept=None), 410, headers
    if kept["method"] == "GET":
        return redirect(kept["path"])
    return render_template("sslmanager/reauth_continue.html", kept=kept), 200, headers
