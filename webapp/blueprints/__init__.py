"""The umbrella blueprint: one prefix, one access check, CSRF, security headers; the
feature blueprints nest under it."""
from __future__ import annotations

from flask import (Blueprint, Flask, abort, current_app, g, jsonify, redirect, render_template, request,
                   url_for)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from markupsafe import Markup, escape

from .. import db
from ..models import utcnow
from ..services.claims import lease_last_run
from ..version import __version__
from ..services import audit as audit_log, oidc, roles, two_factor
from ..services.auth import access, current_admin, is_authorized
from . import flashes
from .guard import permission_for

bp = Blueprint("sslmanager", __name__, template_folder="../templates",
               static_folder="../static", static_url_path="/static")

# Reachable without signing in.
PUBLIC_ENDPOINTS = {"sslmanager.static", "sslmanager.healthz", "sslmanager.auth.login",
                    "sslmanager.auth.login_code", "sslmanager.passkeys.login_options",
                    "sslmanager.passkeys.login", "sslmanager.passkeys.sign_in_options",
                    "sslmanager.passkeys.sign_in", "sslmanager.sso.start", "sslmanager.sso.callback"}
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; base-uri 'self'; object-src 'none'; "
       "frame-ancestors 'none'")


@bp.url_value_preprocessor
def _limit_body(_endpoint, _values):
    """Before anything reads the body (url_value_preprocessors run before every before_request,
    an embedding host's CSRFProtect included): a larger one is refused (413) unread. Per
    request, so the host's own routes keep the host's limit."""
    request.max_content_length = current_app.config["SSLMANAGER_MAX_CONTENT_LENGTH"]


@bp.before_request
def _guard():
    g.sslmanager = {}
    if request.endpoint != "sslmanager.healthz" and not db.schema_is_current():
        return render_template("sslmanager/needs_migration.html"), 503
    if request.method in UNSAFE_METHODS:
        submitted = request.headers.get("X-CSRFToken") or request.form.get("csrf_token")  # 413 here
        try:
            validate_csrf(submitted)
        except CSRFError as exc:  # flask_wtf raises ValidationError; normalise below
            return _csrf_refused(str(exc))
        except Exception as exc:  # wtforms.ValidationError: missing, expired or wrong token
            return _csrf_refused(str(exc))
        too_long = _field_too_long()
        if too_long:
            return too_long
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if request.endpoint == "sslmanager.metrics.metrics":
        from .metrics import address_allowed  # loaded with the pages (see below)
        if address_allowed():  # a scraper in SSLMANAGER_METRICS_ALLOW: no sign-in needed
            return None
    verdict = access()
    if verdict is True:
        return _second_factor_first() or _role_allows(permission_for(request.endpoint))
    if verdict is not False:  # the host hook's own denial: its redirect to its sign-in page
        return _host_denial(verdict)
    if current_app.extensions["sslmanager"].standalone:
        target = url_for("sslmanager.auth.login", next=request.full_path)
        if request.headers.get("HX-Request"):
            return "", 401, {"HX-Redirect": target}
        return redirect(target)
    return render_template("sslmanager/forbidden.html"), 403


@bp.before_request
def _ids_in_range():
    """An id no database column can hold names nothing: 404, not a crash (SQLite overflows)."""
    if any(isinstance(v, int) and not 0 <= v < 2 ** 63 for v in (request.view_args or {}).values()):
        abort(404)


@bp.app_template_filter("sslm_when")
def when(dt, seconds: bool = False) -> Markup:
    """A time as people read it: "today 23:37 UTC", with the date on any other day, and the
    exact time (to the second) as the tooltip."""
    if dt is None:
        return Markup('<span class="sslm-muted">—</span>')
    clock = "%H:%M:%S" if seconds else "%H:%M"
    shown = dt.strftime(("today " if dt.date() == utcnow().date() else "%Y-%m-%d ") + clock + " UTC")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        dt.isoformat(), dt.strftime("%Y-%m-%d %H:%M:%S UTC"), escape(shown))


ENROLMENT_ENDPOINTS = {"sslmanager.auth.totp", "sslmanager.auth.logout", "sslmanager.passkeys.account",
                       "sslmanager.passkeys.register_options", "sslmanager.passkeys.register"}


def _second_factor_first():
    """An admin requires a second factor and this user has none: set it up before anything."""
    admin = current_admin()
    if (admin is None or request.endpoint in ENROLMENT_ENDPOINTS or not two_factor.required()
            or admin.oidc_subject or two_factor.has_second_factor(admin)):  # SSO: the provider's MFA
        return None
    target = url_for("sslmanager.auth.totp")
    if request.headers.get("HX-Request"):
        return "", 401, {"HX-Redirect": target}
    return redirect(target)


def _role_allows(permission: str):
    """None when the acting role holds `permission`; else a 403 page and an audit line."""
    try:
        roles.require(permission)
    except roles.Refused as exc:
        return refused(exc)
    return None


def refused(exc: roles.Refused):
    """The 403 for a role without the permission (from the guard, or a service that checks it
    itself), with an audit line naming who tried what."""
    db.session().rollback()
    audit_log.record("refused", "", "", f"{request.method} {request.path}: needs {exc.permission} "
                                    f"(role {exc.role or 'none'})")
    db.session().commit()
    return render_template("sslmanager/error.html", title="Not allowed", message=exc.message,
                           **_template_context(force=True)), 403


@bp.errorhandler(roles.Refused)
def _refused(exc):
    return refused(exc)


def _host_denial(response):
    """htmx would swap the host's sign-in page into a table row: make it navigate instead."""
    if request.headers.get("HX-Request") and response.status_code in (301, 302, 303, 307, 308):
        return "", 401, {"HX-Redirect": response.headers["Location"]}
    return response


def _csrf_refused(reason: str):
    # The header tells app.js's htmx error handler to offer a reload (a fresh token).
    return render_template("sslmanager/csrf.html", reason=reason), 400, {"X-SSLManager-Refused": "csrf"}


ERROR_PAGES = {
    404: ("Page not found", "Nothing here: the address is wrong, or what it named was deleted."),
    500: ("Something went wrong", "SSL Manager hit an unexpected error; nothing on the page was "
                                  "changed by it. Try again; if it persists, the server's log has the details."),
}


def error_page(code: int):
    """404 and 500 in the app's layout and navigation, like every other page. Without a signed-in
    admin (an unknown address, standalone) or when the layout itself cannot render (the database
    is down), the bare page: never the navigation to a stranger, never a second crash."""
    title, message = ERROR_PAGES[code]
    try:
        db.session().rollback()  # a failed transaction (PostgreSQL) would fail the layout too
        if is_authorized():
            return render_template("sslmanager/error.html", title=title, message=message,
                                   **_template_context(force=True)), code
    except Exception:  # noqa: BLE001 — the error page must not fail in turn
        current_app.logger.exception("SSL Manager: the %s page fell back to the bare one", code)
    return render_template("sslmanager/error_bare.html", title=title, message=message,
                           **_template_context(force=True)), code


@bp.errorhandler(404)
def _not_found(_exc):
    return error_page(404)


@bp.errorhandler(500)
def _server_error(_exc):
    return error_page(500)


# Every form field is capped server-side; these may be longer than FIELD_MAX characters.
FIELD_MAX = 1000
LONG_FIELDS = {"ca_bundle": 262_144, "domains": 65_536, "description": 4000, "to": 4000,
               "webhook_allowlist": 4000, "deploy_command": 4096, "url": 2048}


def _field_too_long():
    """A 422 page (like any refused form) naming the first field over its cap, or None. The
    services check what each value means; this only keeps any one value from being large."""
    for name, value in request.form.items(multi=True):
        limit = LONG_FIELDS.get(name, FIELD_MAX)
        if len(value) > limit:
            label = name if len(name) <= 40 else name[:40] + "…"
            return render_template(
                "sslmanager/refused.html", title="Field too long",
                message=f"The field “{label}” holds {len(value):,} characters; it takes at most "
                        f"{limit:,}. Shorten it and send the form again."), 422
    return None


@bp.errorhandler(413)
def _too_large(_exc):
    """A body over SSLMANAGER_MAX_CONTENT_LENGTH: a page that says so, not a stack trace."""
    limit = current_app.config["SSLMANAGER_MAX_CONTENT_LENGTH"]
    return render_template(
        "sslmanager/refused.html", title="Request too large",
        message=f"The request is larger than the {limit:,} bytes SSL Manager accepts "
                "(SSLMANAGER_MAX_CONTENT_LENGTH). Send less, or raise that setting."), 413


@bp.after_request
def security_headers(response):
    """Headers every response gets (our responses only, when embedded)."""
    policy = content_security_policy()
    if policy:
        response.headers.setdefault("Content-Security-Policy", policy)
        if "frame-ancestors 'none'" in policy:
            response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":  # pages show certificates, settings, the audit log
        response.headers["Cache-Control"] = "no-store"
    hsts = current_app.config.get("SSLMANAGER_HSTS_SECONDS") or 0
    if hsts > 0 and request.is_secure:  # browsers ignore it over plain HTTP, as the RFC says
        response.headers.setdefault("Strict-Transport-Security", f"max-age={int(hsts)}")
    return response


def content_security_policy() -> str:
    """SSLMANAGER_CSP when set; else ours standalone, and none embedded: our pages render inside
    the host's layout (its inline scripts and styles), so the host's policy, if any, is theirs."""
    configured = current_app.config.get("SSLMANAGER_CSP")
    if configured is not None:
        return configured
    if not current_app.extensions["sslmanager"].standalone:
        return ""
    provider = oidc.provider_origin()
    # Sign-out is a form whose answer redirects to the provider's logout: form-action covers
    # the redirects of a form's navigation, so the provider's origin must be allowed there.
    return CSP.replace("form-action 'self'", f"form-action 'self' {provider}") if provider else CSP


@bp.route("/healthz")
def healthz():
    """Liveness for load balancers: database reachable. The version and the scheduler's state
    (what an attacker would look up first) only for a signed-in admin, or with
    SSLMANAGER_HEALTHZ_DETAILS."""
    state = current_app.extensions["sslmanager"]
    try:
        with state.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        database = "ok"
    except Exception as exc:  # report, never crash the probe
        database = f"error: {type(exc).__name__}"
    scheduler = state.scheduler.state_name() if state.scheduler else "not running"
    ok = database == "ok"
    schema_ok = ok and db.schema_is_current()
    last_run = None
    if schema_ok:  # the dispatch lease tells when any process (a worker, another node) last ran
        stamp = lease_last_run("dispatch")
        last_run = stamp.isoformat() if stamp else None
    body = {"status": "ok" if ok else "error", "database": database,
            "schema": "current" if schema_ok else "needs upgrade",
            "scheduler": scheduler, "scheduler_last_run": last_run, "version": __version__}
    if not (current_app.config["SSLMANAGER_HEALTHZ_DETAILS"] or (schema_ok and is_authorized())):
        body = {"status": body["status"]}
    return jsonify(body), 200 if ok else 503


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookies whenever the request came over HTTPS (or config says always)."""

    def get_cookie_secure(self, app):
        return bool(app.config.get("SESSION_COOKIE_SECURE")) or request.is_secure


def register(app: Flask, *, url_prefix: str, standalone: bool) -> None:
    """Mount the umbrella and its feature blueprints on `app`."""
    prefix = "" if url_prefix in ("", "/") else url_prefix.rstrip("/")
    app.register_blueprint(bp, url_prefix=prefix)
    app.jinja_env.globals.setdefault("csrf_token", generate_csrf)
    app.context_processor(_template_context)
    if standalone:
        app.after_request(security_headers)
        app.session_interface = _SessionInterface()
        # The whole app is ours: an address no route matches (no blueprint's handler sees it)
        # gets our 404 page too. Embedded, the host's 404 stays the host's.
        app.register_error_handler(404, lambda _exc: error_page(404))


def _template_context(force: bool = False):
    if not force and (not request.blueprint or not request.blueprint.startswith("sslmanager")):
        return {}
    cfg = current_app.config
    return {"sslm_flashes": flashes.pop, "sslm_can": roles.can, "sslm_user": current_admin, "sslm": {
        "base_template": cfg["SSLMANAGER_BASE_TEMPLATE"],
        "in_host_layout": cfg["SSLMANAGER_BASE_TEMPLATE"] != "sslmanager/base.html",
        "include_assets": cfg["SSLMANAGER_INCLUDE_ASSETS"],
        "standalone": current_app.extensions["sslmanager"].standalone,
        "version": __version__,
    }}


def _nest_feature_blueprints() -> None:
    # Imported here, when the umbrella blueprint is registered: the feature modules hang
    # their blueprints on it, and a page-less app (a one-shot command) never loads them.
    from . import (audit, auth, ca_profiles, certificates, dashboard, dns, metrics, notifications, passkeys,
                   sso, tokens, users)
    from . import certificate_extras  # noqa: F401  (its routes go on certificates.bp, registered below)
    for child in (dashboard.bp, ca_profiles.bp, certificates.bp, dns.bp, notifications.bp, audit.bp,
                  tokens.bp, metrics.bp, auth.bp, users.bp, passkeys.bp, sso.bp):
        bp.register_blueprint(child)


_nest_feature_blueprints()
