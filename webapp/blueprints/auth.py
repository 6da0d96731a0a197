"""Standalone sign-in, sign-out, password change, and the password asked again before a
private key leaves. Embedded, the host's login is the one that counts."""
from __future__ import annotations

import functools
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for

from .. import db
from .common import htmx
from ..errors import NotFound, ValidationError
from ..services import audit, oidc, passkeys, reauth, sessions, two_factor
from ..services.auth import (ID_TOKEN_KEY, PASSWORD_MAX, TOKEN_KEY, USERNAME_MAX, RateLimited, authenticate,
                             change_password, current_admin, end_session, now, pending_admin,
                             recently_verified, renew_session, start_second_step, start_session,
                             verify_again)

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "Wrong username or password."


def safe_next(target: str | None) -> str:
    """Only same-site paths: a crafted ?next= must not send the admin elsewhere."""
    try:
        offsite = bool(urlsplit(target or "").netloc)
    except ValueError:  # "/\t/[::1": urlsplit drops the tab, then meets an unclosed IPv6 host
        offsite = True
    if target and target.startswith("/") and not target.startswith("//") and not offsite:
        return target
    return url_for("sslmanager.dashboard.index")


def _wait_message(exc: RateLimited) -> str:
    return f"Too many failed sign-ins. Wait {exc.retry_after} seconds, then try again."


def _standalone_only() -> None:
    if not current_app.extensions["sslmanager"].standalone:
        abort(404)


@bp.route("/login", methods=["GET", "POST"])
def login():
    _standalone_only()
    error, status, headers = None, 200, {}
    username = request.form.get("username", "").strip()
    cfg = current_app.config
    passwords = cfg["SSLMANAGER_PASSWORD_SIGN_IN"]
    if request.method == "POST" and not passwords and username not in cfg["SSLMANAGER_BREAK_GLASS_USERS"]:
        error, status = "Passwords are turned off here: sign in with single sign-on.", 403
    elif request.method == "POST":
        try:
            admin = authenticate(username, request.form.get("password", ""), request.remote_addr or "")
        except RateLimited as exc:
            admin, status = None, 429
            error, headers = _wait_message(exc), {"Retry-After": str(exc.retry_after)}
        if admin is not None and two_factor.has_second_factor(admin):
            start_second_step(admin)
            return redirect(url_for(".login_code", next=request.args.get("next")))
        if admin is not None:
            return complete_sign_in(admin)
        if error is None:
            error, status = GENERIC_FAILURE, 401
    return (render_template("sslmanager/login.html", error=error, username=username[:USERNAME_MAX],
                            username_max=USERNAME_MAX, password_max=PASSWORD_MAX, sso=oidc.enabled(),
                            sso_button=cfg["SSLMANAGER_OIDC_BUTTON"], passwords=passwords,
                            next=request.args.get("next")), status, headers)


def complete_sign_in(admin, next_url: str | None = None, id_token: str | None = None, how: str = ""):
    """Sign in after every factor passed: a new session, an audit line (saying `how`: "single
    sign-on", "passkey"), on to ?next=."""
    start_session(admin)  # a new session row and token: nothing from before carries over
    if id_token:
        session[ID_TOKEN_KEY] = id_token
    audit.record("signed in", "admin", admin.id, how or ("single sign-on" if id_token else ""),
                 actor=admin.username)
    db.session().commit()
    return redirect(safe_next(next_url or request.args.get("next")))


@bp.route("/login/code", methods=["GET", "POST"])
def login_code():
    """The second step: a code from the authenticator app, or a recovery code."""
    _standalone_only()
    if pending_admin() is None:
        return redirect(url_for(".login", next=request.args.get("next")))
    error, status, headers = None, 200, {}
    if request.method == "POST":
        try:
            admin = two_factor.finish_sign_in(request.form.get("code", ""), request.remote_addr or "")
        except RateLimited as exc:
            admin, status = None, 429
            error, headers = _wait_message(exc), {"Retry-After": str(exc.retry_after)}
        if admin is not None:
            return complete_sign_in(admin)
        if error is None:
            error, status = "Wrong code.", 401
    user = pending_admin()
    return render_template("sslmanager/login_code.html", error=error, totp=bool(user and two_factor.enabled(user)),
                           passkey=bool(user and passkeys.of(user)), next=request.args.get("next")), status, headers


@bp.route("/account/two-factor", methods=["GET", "POST"])
def totp():
    """Set up TOTP: scan the QR code, type a code to confirm, keep the recovery codes."""
    _standalone_only()
    admin = current_admin()
    errors, codes, status = {}, None, 200
    if request.method == "POST" and not two_factor.enabled(admin):
        try:
            codes = two_factor.confirm(admin, request.form.get("code", ""))
        except ValidationError as exc:
            errors, status = exc.errors, 422
    context = {"enabled": two_factor.enabled(admin), "codes": codes, "errors": errors,
               "required": two_factor.required(), "left": len(admin.recovery_codes or [])}
    if not context["enabled"]:
        secret = two_factor.pending_secret(admin)
        context.update(secret=secret, qr=two_factor.qr_svg(two_factor.provisioning_uri(admin, secret)))
    headers = {"Cache-Control": "no-store"}
    return render_template("sslmanager/account_two_factor.html", **context), status, headers


@bp.route("/account/two-factor/disable", methods=["POST"])
def totp_disable():
    _standalone_only()
    admin = current_admin()
    if two_factor.required():
        flash("An admin requires two-factor sign-in: it cannot be turned off.", "error")
        return redirect(url_for(".totp"))
    try:
        two_factor.disable(admin, request.form.get("code", ""))
    except ValidationError as exc:
        flash(exc.errors["code"], "error")
    else:
        flash("Two-factor sign-in is off.", "info")
    return redirect(url_for(".totp"))


@bp.route("/account/sessions", methods=["GET"])
def sessions_page():
    _standalone_only()
    admin = current_admin()
    return render_template("sslmanager/account_sessions.html", sessions=sessions.live(admin, now()),
                           current=sessions.token_hash(session.get(TOKEN_KEY) or ""))


@bp.route("/account/sessions/<int:session_id>/revoke", methods=["POST"])
def revoke_session(session_id: int):
    _standalone_only()
    admin = current_admin()
    try:
        sessions.revoke(admin, session_id)
    except NotFound:
        abort(404)
    audit.record("session revoked", "admin", admin.id, f"{admin.username}: session #{session_id}")
    db.session().commit()
    flash("Session ended.", "info")
    return redirect(url_for(".sessions_page"))


@bp.route("/logout", methods=["POST"])
def logout():
    """Ends this admin's sessions everywhere: a cookie kept from before stops working. Signed
    in through the provider: on to its logout too, when it offers one (RP-initiated logout)."""
    id_token = session.get(ID_TOKEN_KEY)
    end_session()
    flash("Signed out.", "info")
    back = url_for("sslmanager.auth.login", _external=True)
    elsewhere = oidc.logout_url(id_token, back) if id_token and oidc.enabled() else None
    return redirect(elsewhere or url_for("sslmanager.auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
def password():
    _standalone_only()
    admin = current_admin()
    errors: dict[str, str] = {}
    status = 200
    if request.method == "POST":
        form = request.form
        try:
            change_password(admin, form.get("current_password", ""), form.get("new_password", ""),
                            form.get("confirm_password", ""))
        except ValidationError as exc:
            errors, status = exc.errors, 422
        else:
            renew_session(admin)
            audit.record("password changed", "admin", admin.id)
            db.session().commit()
            flash("Password changed. Every other session of yours is signed out.", "info")
            return redirect(url_for("sslmanager.dashboard.index"))
    return render_template("sslmanager/account_password.html", errors=errors,
                           password_max=PASSWORD_MAX), status


def fresh_sign_in(view):
    """For views that hand out a private key: see `ask_password_again`."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        return ask_password_again() or view(*args, **kwargs)
    return wrapped


def ask_password_again():
    """None when the password was typed within SSLMANAGER_REAUTH_MINUTES (or is typed right now
    in this request's `reauth_password`): the view goes on. Otherwise the page that asks it,
    carrying this request's form fields so that, once right, the same request goes on.
    Embedded: the host's SSLMANAGER_RECENT_AUTH decides; refused, a page says to sign in again."""
    if recently_verified():
        return None
    if not current_app.extensions["sslmanager"].standalone:
        return render_template("sslmanager/refused.html", title="Sign in again",
                               message="This needs a recent sign-in. Sign in again, then retry."), 403
    error, status, headers = None, 401, {"Cache-Control": "no-store"}  # it may carry a PKCS#12 password
    if request.method == "POST" and "reauth_password" in request.form:
        try:
            if verify_again(request.form["reauth_password"], request.remote_addr or ""):
                return None
            error = "Wrong password."
        except RateLimited as exc:
            error, status = _wait_message(exc), 429
            headers["Retry-After"] = str(exc.retry_after)
    carried = [(k, v) for k, v in request.form.items(multi=True) if k not in ("csrf_token", "reauth_password")]
    query = request.query_string.decode("ascii", "replace")
    action = request.path + (f"?{query}" if query else "")
    admin = current_admin()
    sso_again, sso_carries = None, False
    if admin is not None and admin.oidc_subject and oidc.enabled():
        # Signed in by the provider: proving it again means a round trip there. This request
        # waits (encrypted, 10 minutes, services/reauth.py) and "Signed in again" sends it on.
        sso_carries = reauth.keep(admin, request.method, action, carried)
        sso_again = url_for("sslmanager.sso.start", reauth=1, next=request.full_path)
    # A user made by single sign-on has no local password ("!sso"): no form it could pass.
    password = admin is None or not (admin.password_hash or "").startswith("!")
    context = {"error": error, "carried": carried, "password_max": PASSWORD_MAX, "sso_again": sso_again,
               "sso_carries": sso_carries, "action": action, "password": password}
    if htmx:  # a form that swaps a fragment: show the question in the page's main area instead
        headers.update({"HX-Retarget": "#main", "HX-Reswap": "innerHTML"})
        return render_template("sslmanager/_reauth_form.html", **context), 200, headers
    return render_template("sslmanager/reauth.html", **context), status, headers
