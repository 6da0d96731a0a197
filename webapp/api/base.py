"""The API's blueprint and what every request goes through: the body cap, the content type,
the bearer token (throttled like sign-ins), the host's SSLMANAGER_API_AUTHORIZE, the audit
actor; errors as problem documents; the OpenAPI document and its page."""
from __future__ import annotations

import time
from datetime import timedelta

import flask
from flask import current_app, g, request
from flask_smorest import Blueprint
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from .. import db
from ..errors import SSLManagerError
from ..services import audit, tokens
from ..models import LoginAttempt
from ..services.auth import RateLimited, _resolve, check_throttle, record_failure
from ..services.auth import now as auth_now
from ..services.permissions import Denied, Principal
from . import problems
from .problems import problem

PATH = "/api/v1"
bp = Blueprint("sslmanager_api", __name__, description="SSL Manager's JSON API")
PUBLIC = {"sslmanager_api.openapi_json", "sslmanager_api.docs", "sslmanager_api.index",
          "sslmanager_api.not_found"}
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
THROTTLE_KEY = "api-bearer-token"  # failed bearer tokens count per address, like sign-ins
WWW_AUTH = 'Bearer realm="sslmanager"'
# While no failed sign-in or token at all lies in the throttle's window (the usual case), the
# per-address throttle queries are skipped; that is looked up at most once a second per
# process (a failure here counts at once, one in another process within the second). 1,000
# agents polling each minute, each from its own address, then cost one query a second.
QUIET_RECHECK = 1.0


def exempt_from_host_csrf(app: flask.Flask) -> None:
    csrf = app.extensions.get("csrf")  # Flask-WTF's CSRFProtect, when the host (or we) set one up
    if csrf is not None and hasattr(csrf, "exempt"):
        csrf.exempt(bp)


# -- the guard ---------------------------------------------------------------------------------

@bp.url_value_preprocessor
def _before_anything(_endpoint, _values):
    """Runs before every before_request (a host's CSRFProtect included): cap the body, and make
    sure a CSRFProtect set up after us exempts the API too."""
    request.max_content_length = current_app.config["SSLMANAGER_MAX_CONTENT_LENGTH"]
    exempt_from_host_csrf(current_app)


@bp.before_request
def _guard():
    g.sslmanager = {}
    if not db.schema_is_current():
        return problem(503, "The database needs `sslmanager db upgrade` before the API can answer.")
    if request.endpoint in PUBLIC:
        return None
    if any(isinstance(v, int) and not 0 <= v < 2 ** 63 for v in (request.view_args or {}).values()):
        return problem(404, "No such object: the id is larger than any id SSL Manager gives.")
    if request.method in BODY_METHODS:
        length = request.content_length
        if length is not None and length > current_app.config["SSLMANAGER_MAX_CONTENT_LENGTH"]:
            return problems.from_http_exception(RequestEntityTooLarge())
        has_body = bool(length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"
        if has_body and not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
            return problem(415, f"Send JSON: Content-Type application/json, not "
                                f"{request.mimetype or 'none'}.")
    principal = _authenticate()
    if not isinstance(principal, Principal):
        return principal
    verdict = _host_verdict(principal)
    if verdict is not None:
        return verdict
    g.sslm_principal = principal
    g.sslm_actor_token = audit.start_acting(principal.actor)  # every audit line: token:<name>
    return None


def _authenticate():
    """The principal of the request's bearer token, or the problem to answer."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return problem(401, "Send an API token: Authorization: Bearer sslm_... (a session cookie "
                            "never authenticates the API).",
                       hint="An admin makes tokens on the API tokens page or with `sslmanager token create`.",
                       headers={"WWW-Authenticate": WWW_AUTH})
    address = (request.remote_addr or "")[:64]
    quiet = current_app.extensions.setdefault("sslmanager_api_quiet", {})
    try:
        if not _no_recent_failures(quiet):
            check_throttle(THROTTLE_KEY, address)
    except RateLimited as exc:
        return problem(429, f"Too many failed API tokens from {address}: try again in "
                            f"{exc.retry_after} s.", headers={"Retry-After": str(exc.retry_after)})
    try:
        return tokens.authenticate(credentials, address)
    except tokens.Invalid as exc:
        db.session().rollback()
        quiet["none"] = False  # the next request asks the database again
        record_failure(THROTTLE_KEY, address)
        return problem(401, f"The API token was refused: {exc.reason}.",
                       hint="Ask an admin for a new token (API tokens page, or `sslmanager token create`).",
                       headers={"WWW-Authenticate": WWW_AUTH + ', error="invalid_token"'})


def _no_recent_failures(quiet: dict) -> bool:
    now = time.monotonic()
    if now - quiet.get("checked", float("-inf")) >= QUIET_RECHECK:
        since = auth_now() - timedelta(seconds=current_app.config["SSLMANAGER_LOGIN_WINDOW_SECONDS"])
        quiet["none"] = db.session().scalar(select(LoginAttempt.id).where(LoginAttempt.at >= since).limit(1)) is None
        quiet["checked"] = now
    return quiet["none"]


def _host_verdict(principal: Principal):
    """SSLMANAGER_API_AUTHORIZE(principal): a host's (or anyone's) last word on an API call,
    after the token checked out. Exactly True allows; anything else is 403."""
    check = _resolve(current_app.config.get("SSLMANAGER_API_AUTHORIZE"))
    if check is None or check(principal) is True:
        return None
    return problem(403, "Refused by SSLMANAGER_API_AUTHORIZE for this token.")


@bp.teardown_request
def _forget_actor(_exc):
    token = g.pop("sslm_actor_token", None)
    if token is not None:
        audit.stop_acting(token)


@bp.after_request
def _headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def principal() -> Principal:
    return g.sslm_principal


# -- errors: problem documents, never HTML -----------------------------------------------------

@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    db.session().rollback()
    return problems.from_http_exception(exc)


@bp.errorhandler(SSLManagerError)
def _service_error(exc: SSLManagerError):
    db.session().rollback()
    return problems.from_service_error(exc)


@bp.errorhandler(Denied)
def _denied(exc: Denied):
    db.session().rollback()
    # Like a refused page or command: an audit line naming the token (its actor) and the scope.
    audit.record("refused", "", "", f"{request.method} {request.path}: needs {exc.scope or 'access'}")
    db.session().commit()
    return problems.from_denied(exc)


@bp.errorhandler(Exception)
def _crash(exc: Exception):
    db.session().rollback()
    current_app.logger.exception("SSL Manager API: %s %s failed", request.method, request.path)
    return problem(500, "SSL Manager hit an unexpected error; nothing was changed by it. The "
                        "server's log has the details.")


def _not_found(rest: str = ""):
    """Any other address under /api/v1: 404, or 405 when the path exists for other methods."""
    adapter = current_app.url_map.bind("", url_scheme=request.scheme)
    allowed = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "sslmanager_api.not_found":
            allowed.append(method)
    if allowed:
        return problems.from_http_exception(MethodNotAllowed(valid_methods=allowed))
    return problems.from_http_exception(NotFound(f"Nothing at {request.path} in the API: "
                                                 f"see {PATH}/openapi.json."))


# Undocumented catch-all (flask.Blueprint's add_url_rule, not flask-smorest's): a mistyped path
# or method under /api/v1 answers a problem, not the app's HTML error page.
flask.Blueprint.add_url_rule(bp, "/<path:rest>", "not_found", _not_found,
                             methods=["GET", "POST", "PUT", "PATCH", "DELETE"])


# -- the document and the page ------------------------------------------------------------------

@bp.route("/openapi.json")
@bp.doc(security=[], summary="This API's OpenAPI 3.1 document")
@bp.response(200, description="OpenAPI 3.1 document")
def openapi_json():
    """The OpenAPI document, generated from the schemas that validate the requests."""
    api = current_app.extensions["sslmanager"].extra["api"]
    return current_app.response_class(flask.json.dumps(api.spec.to_dict()), mimetype="application/json")


@bp.route("/docs")
@bp.doc(security=[], summary="This API as a page")
@bp.response(200, description="HTML", content_type="text/html")
def docs():
    """Every operation, its scope and parameters: a page rendered here from the same document."""
    spec = current_app.extensions["sslmanager"].extra["api"].spec.to_dict()
    operations = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                scopes = [s for entry in op.get("security", [{}]) for s in entry.get("bearer", [])]
                operations.append({"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                                   "description": op.get("description", ""), "scopes": scopes,
                                   "public": op.get("security") == []})
    html = flask.render_template("sslmanager/api_docs.html", spec=spec, operations=operations,
                                 openapi_url=flask.url_for(".openapi_json"))
    return current_app.response_class(html, mimetype="text/html")


@bp.route("/")
@bp.doc(security=[], summary="Where the document and the page are")
@bp.response(200, description="Links")
def index():
    """Links to the OpenAPI document and its page."""
    return {"openapi": flask.url_for(".openapi_json"), "docs": flask.url_for(".docs")}
