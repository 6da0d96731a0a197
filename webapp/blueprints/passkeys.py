"""Passkeys: added and removed on the account page; at sign-in, the second step after the
password (beside the TOTP code), or the whole sign-in without a password (the login page's
"Sign in with a passkey"). The browser's side is static/passkeys.js; the checks are in
services/passkeys.py."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, url_for

from ..errors import ValidationError
from ..services import passkeys as service, two_factor
from ..services.auth import RateLimited, current_admin, pending_admin
from ..services.inputs import whole_number
from .auth import complete_sign_in
from .flashes import flash

bp = Blueprint("passkeys", __name__)


def _body() -> dict:
    """The browser's JSON object; anything else (a list, a string, no JSON) counts as empty."""
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _standalone_only() -> None:
    if not current_app.extensions["sslmanager"].standalone:
        abort(404)


@bp.route("/account/passkeys", methods=["GET", "POST"])
def account():
    """The user's passkeys; POST removes one."""
    _standalone_only()
    user = current_admin()
    if request.method == "POST":
        try:
            service.remove(user, whole_number(request.form.get("passkey_id"), 1, 2 ** 63 - 1) or 0)
        except ValidationError as exc:
            flash(exc.errors["passkey"], "error")
        else:
            flash("Passkey removed.", "info")
        return redirect(url_for(".account"))
    return render_template("sslmanager/account_passkeys.html", passkeys=service.of(user),
                           required=two_factor.required(), sso_user=bool(user.oidc_subject))


@bp.route("/account/passkeys/options", methods=["POST"])
def register_options():
    _standalone_only()
    return current_app.response_class(service.registration_options(current_admin()), mimetype="application/json")


@bp.route("/account/passkeys/register", methods=["POST"])
def register():
    _standalone_only()
    body = _body()
    try:
        key = service.register(current_admin(), str(body.get("credential", "")), str(body.get("name", "")))
    except ValidationError as exc:
        return jsonify(error=exc.errors["passkey"]), 422
    flash(f"Passkey “{key.name}” added: sign-in asks for it after the password, or "
          "use it alone with “Sign in with a passkey”.", "info")
    return jsonify(redirect=url_for(".account"))


@bp.route("/login/passkey/options", methods=["POST"])
def login_options():
    _standalone_only()
    user = pending_admin()
    if user is None or not service.of(user):
        return jsonify(error="Sign in with your password first."), 401
    return current_app.response_class(service.authentication_options(user), mimetype="application/json")


@bp.route("/login/passkey", methods=["POST"])
def login():
    """The second step with a passkey: throttled like a code."""
    _standalone_only()
    body = _body()
    try:
        user = two_factor.finish_sign_in("", request.remote_addr or "", passkey=str(body.get("credential", "")))
    except RateLimited as exc:
        return _wait(exc)
    if user is None:
        return jsonify(error="The passkey was not accepted."), 401
    return jsonify(redirect=complete_sign_in(user).location)


def _wait(exc: RateLimited):
    return jsonify(error=f"Too many failed sign-ins. Wait {exc.retry_after} seconds, then try again."), \
        429, {"Retry-After": str(exc.retry_after)}


@bp.route("/login/passkey/sign-in/options", methods=["POST"])
def sign_in_options():
    """A password-less sign-in's challenge (no user yet)."""
    _standalone_only()
    try:
        options = service.sign_in_options(request.remote_addr or "")
    except RateLimited as exc:
        return _wait(exc)
    return current_app.response_class(options, mimetype="application/json")


@bp.route("/login/passkey/sign-in", methods=["POST"])
def sign_in():
    """A passkey with user verification, alone: the whole sign-in (no code step follows)."""
    _standalone_only()
    body = _body()
    try:
        user = service.sign_in(str(body.get("credential", "")), request.remote_addr or "")
    except RateLimited as exc:
        return _wait(exc)
    except service.SignInRefused as exc:
        return jsonify(error=exc.message), 401
    return jsonify(redirect=complete_sign_in(user, how="passkey").location)
