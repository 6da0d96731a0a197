"""Settings → SSL Manager → API tokens: list, create (the token shown once), revoke. Thin
views over services.tokens."""
from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from ..errors import NotFound, ValidationError
from ..services import permissions, tokens as service
from .flashes import flash

bp = Blueprint("tokens", __name__, url_prefix="/tokens")
T = "sslmanager/tokens/"


def _page(values=None, errors=None, created=None, code=200):
    return render_template(T + "index.html", tokens=service.all_tokens(), state=service.state,
                           restriction=service.describe_restriction, scopes=permissions.SCOPE_HELP,
                           values=values or {"scopes": ["read"]}, errors=errors or {}, created=created), code


@bp.route("/")
def index():
    return _page()


@bp.route("/", methods=["POST"])
def create():
    values = {"name": request.form.get("name", ""), "scopes": request.form.getlist("scopes"),
              "cert_ids": request.form.get("cert_ids", ""), "tags": request.form.get("tags", ""),
              "expires": request.form.get("expires", "")}
    try:
        made = service.create(values["name"], values["scopes"], cert_ids=values["cert_ids"],
                              tags=values["tags"], expires=values["expires"])
    except ValidationError as exc:
        return _page(values, exc.errors, code=422)
    # Shown in this answer only: never stored, never in a redirect or a flash (a cookie).
    return _page(created=made)


@bp.route("/<int:token_id>/revoke", methods=["POST"])
def revoke(token_id: int):
    try:
        token = service.get(token_id)
    except NotFound:
        flash("No such token.", "error")
        return redirect(url_for(".index"))
    service.revoke(token)
    flash(f"Token {token.name} revoked: its next call gets 401.", "info")
    return redirect(url_for(".index"))
