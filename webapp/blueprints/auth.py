"""Standalone sign-in and sign-out. Embedded, the host's login is the one that counts."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for

from ..services import audit
from ..services.auth import SESSION_KEY, RateLimited, authenticate

bp = Blueprint("auth", __name__)

GENERIC_FAILURE = "Wrong username or password."


def _safe_next(target: str | None) -> str:
    """Only same-site paths: a crafted ?next= must not send the admin elsewhere."""
    try:
        offsite = bool(urlsplit(target or "").netloc)
    except ValueError:  # "/\t/[::1": urlsplit drops the tab, then meets an unclosed IPv6 host
        offsite = True
    if target and target.startswith("/") and not target.startswith("//") and not offsite:
        return target
    return url_for("sslmanager.dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if not current_app.extensions["sslmanager"].standalone:
        abort(404)
    error, status = None, 200
    username = request.form.get("username", "").strip()
    if request.method == "POST":
        try:
            admin = authenticate(username, request.form.get("password", ""),
                                 request.remote_addr or "")
        except RateLimited:
            admin, status = None, 429
            error = "Too many failed sign-ins. Wait a few minutes, then try again."
        if admin is not None:
            session.clear()
            session[SESSION_KEY] = admin.id
            audit.record("signed in", "admin", admin.id, actor=admin.username)
            from .. import db
            db.session().commit()
            return redirect(_safe_next(request.args.get("next")))
        if error is None:
            error, status = GENERIC_FAILURE, 401
    return render_template("sslmanager/login.html", error=error, username=username), status


@bp.route("/logout", methods=["POST"])
def logout():
    session.pop(SESSION_KEY, None)
    flash("Signed out.", "info")
    return redirect(url_for("sslmanager.auth.login"))
