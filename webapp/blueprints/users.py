"""Settings → SSL Manager → Users (admins only, see guard.py): create, change role, disable,
reset a password, end a user's sessions. The work is in services/users.py."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from ..errors import Conflict, NotFound, ValidationError
from ..services import auth, sessions, two_factor, users as service
from ..services.roles import ROLE_HELP, ROLES
from .flashes import flash

bp = Blueprint("users", __name__, url_prefix="/users")
T = "sslmanager/users/"


def _user(user_id: int):
    try:
        return service.get(user_id)
    except NotFound:
        abort(404)


@bp.route("/")
def index():
    return _index({}, {}, 200)


def _index(errors, form, status):
    return render_template(T + "index.html", users=service.all_users(), roles=ROLES, role_help=ROLE_HELP,
                           errors=errors, form=form, require_2fa=two_factor.required(),
                           password_max=auth.PASSWORD_MAX), status


@bp.route("/new", methods=["POST"])
def new():
    form = request.form
    try:
        user = service.create(form.get("username", ""), form.get("password", ""), form.get("role", ""))
    except ValidationError as exc:
        return _index(exc.errors, form, 422)
    flash(f"User {user.username} created as {user.role}.", "info")
    return redirect(url_for(".index"))


@bp.route("/settings", methods=["POST"])
def settings():
    two_factor.set_required(request.form.get("require_2fa") == "on")
    flash("Two-factor sign-in is now " + ("required of every user." if two_factor.required()
                                         else "optional."), "info")
    return redirect(url_for(".index"))


@bp.route("/<int:user_id>")
def detail(user_id: int):
    return _detail(_user(user_id), {}, 200)


def _detail(user, errors, status):
    return render_template(T + "detail.html", user=user, roles=ROLES, role_help=ROLE_HELP, errors=errors,
                           sessions=sessions.live(user, auth.now()), password_max=auth.PASSWORD_MAX), status


def _act(user, action):
    """Run a change; a refused one (the last admin) flashes why."""
    try:
        action()
    except Conflict as exc:
        flash(f"{exc.message} {exc.hint}", "error")
    return redirect(url_for(".detail", user_id=user.id))


@bp.route("/<int:user_id>/role", methods=["POST"])
def role(user_id: int):
    user = _user(user_id)
    try:
        return _act(user, lambda: service.set_role(user, request.form.get("role", "")))
    except ValidationError as exc:
        return _detail(user, exc.errors, 422)


@bp.route("/<int:user_id>/disable", methods=["POST"])
def disable(user_id: int):
    user = _user(user_id)
    return _act(user, lambda: service.set_disabled(user, True))


@bp.route("/<int:user_id>/enable", methods=["POST"])
def enable(user_id: int):
    user = _user(user_id)
    return _act(user, lambda: service.set_disabled(user, False))


@bp.route("/<int:user_id>/reset", methods=["POST"])
def reset(user_id: int):
    user = _user(user_id)
    try:
        service.reset_password(user, request.form.get("password", ""))
    except ValidationError as exc:
        return _detail(user, exc.errors, 422)
    flash(f"New password set for {user.username}; their sessions are ended.", "info")
    return redirect(url_for(".detail", user_id=user.id))


@bp.route("/<int:user_id>/sessions/revoke", methods=["POST"])
def revoke_sessions(user_id: int):
    user = _user(user_id)
    service.end_sessions(user)
    flash(f"Every session of {user.username} is ended.", "info")
    return redirect(url_for(".detail", user_id=user.id))
