"""Settings → SSL Manager → Certificate Authorities: thin views over services.ca_profiles."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for
from ..errors import Conflict, NotFound, ValidationError
from ..services import ca_profiles as service
from ..services import failover, persist
from .common import htmx
from .flashes import flash

bp = Blueprint("ca_profiles", __name__, url_prefix="/ca")


def _profile(profile_id: int):
    try:
        return service.get(profile_id)
    except NotFound:
        abort(404)


def _ca_label(profile) -> str:
    plugin = service.registry().plugins.get(profile.module)
    if plugin is None:
        return "—"
    if plugin.custom_directory:
        return profile.directory_url or "—"
    return plugin.directories.get(profile.ca_key, ("—", ""))[0]


def _form_context(profile, values=None, errors=None):
    return {
        "profile": profile, "plugin": service.registry().plugins.get(profile.module),
        "values": values or profile, "errors": errors or {},
        "ttl_min": service.TTL_MIN, "ttl_max": service.TTL_MAX,
        "timeout_min": service.TIMEOUT_MIN, "timeout_max": service.TIMEOUT_MAX,
        "description_max": service.DESCRIPTION_MAX,
        "all_profiles": service.all_profiles(), "health": failover.health_line(profile),
        "fallback_selected": ([values.get(f"fallback_{i}", "") for i in (1, 2, 3)] if values
                              else [p.id for p in failover.profile_fallbacks(profile)]),
        "persist_certs": persist.certificates_using(profile) if profile.id else 0,
        "persist_offered": persist.offer(profile)[0],
    }


@bp.route("/")
def index():
    registry = service.registry()
    return render_template("sslmanager/ca_profiles/index.html", profiles=service.all_profiles(),
                           counts=service.certificate_counts(), modules=registry.plugins,
                           unavailable=registry.unavailable, ca_label=_ca_label)


@bp.route("/new", methods=["GET", "POST"])
def new():
    values, errors = {}, {}
    if request.method == "POST":
        values = request.form.to_dict()
        try:
            profile = service.create(values)
        except ValidationError as exc:
            errors = exc.errors
        else:
            flash(f"CA profile {profile.name} created. Fill in the fields, then Save and Test.", "info")
            return redirect(url_for(".edit", profile_id=profile.id))
    return render_template("sslmanager/ca_profiles/new.html", values=values, errors=errors,
                           modules=service.registry().plugins), 422 if errors else 200


@bp.route("/<int:profile_id>/edit", methods=["GET", "POST"])
def edit(profile_id: int):
    profile = _profile(profile_id)
    if request.method == "GET":
        return render_template("sslmanager/ca_profiles/edit.html", **_form_context(profile))
    values = request.form.to_dict()
    action = values.get("action")
    # Test the typed values before anything is saved: always for "Test without saving", and
    # for Save and Test when Active certificates would renew against whatever is saved.
    active = service.active_certificates(profile) if action == "test" else 0
    trial = None
    try:
        if action == "try" or active:
            trial = service.test_values(profile, values)
        if action == "try" or (trial is not None and not trial.ok):
            return _unsaved(profile, values, trial, ask=active if action == "test" else 0)
        service.update(profile, values)
    except ValidationError as exc:
        # Re-render with what was typed (never the secrets) so nothing is lost.
        context = _form_context(profile, _typed(values), exc.errors)
        template = "sslmanager/ca_profiles/_form.html" if htmx else "sslmanager/ca_profiles/edit.html"
        return render_template(template, **context), 422 if not htmx else 200
    result = service.test(profile) if action == "test" else None
    flash("Saved." + (" Test: API is available." if result and result.ok else
                      " Test failed: see the details." if result else ""),
          "info" if not result or result.ok else "error")
    if htmx:
        form = render_template("sslmanager/ca_profiles/_form.html", **_form_context(profile))
        if result is None:
            return form
        modal = render_template("sslmanager/ca_profiles/_test_result.html", profile=profile,
                                result=result, htmx=True)
        return form + f'<div id="sslm-modal" hx-swap-oob="innerHTML">{modal}</div>'
    if result is not None:
        return render_template("sslmanager/ca_profiles/edit.html", result=result, htmx=False,
                               **_form_context(profile))
    return redirect(url_for(".edit", profile_id=profile.id))


def _typed(values: dict) -> "_Values":
    typed = _Values({k: v for k, v in values.items() if k not in ("eab_hmac", "api_key")})
    typed["allow_wildcard"] = "allow_wildcard" in request.form
    return typed


def _unsaved(profile, values: dict, result, *, ask: int):
    """A test of the typed values, nothing saved. With htmx the form stays as typed (secrets
    included) and only the verdict arrives; `ask`: the Active certificates a Save anyway risks."""
    modal_args = {"profile": profile, "result": result, "trial": True, "ask": ask}
    if htmx:
        modal = render_template("sslmanager/ca_profiles/_test_result.html", htmx=True, **modal_args)
        return f'<div id="sslm-modal" hx-swap-oob="innerHTML">{modal}</div>', 200, {"HX-Reswap": "none"}
    return render_template("sslmanager/ca_profiles/edit.html", htmx=False, **modal_args,
                           **{k: v for k, v in _form_context(profile, _typed(values)).items() if k != "profile"})


@bp.route("/<int:profile_id>/test", methods=["POST"])
def test(profile_id: int):
    profile = _profile(profile_id)
    result = service.test(profile)
    return render_template("sslmanager/ca_profiles/_test_result.html", profile=profile,
                           result=result, htmx=bool(htmx))


@bp.route("/<int:profile_id>/duplicate", methods=["POST"])
def duplicate(profile_id: int):
    copy = service.duplicate(_profile(profile_id))
    flash(f"Duplicated as {copy.name}.", "info")
    return redirect(url_for(".edit", profile_id=copy.id))


@bp.route("/<int:profile_id>/delete", methods=["POST"])
def delete(profile_id: int):
    profile = _profile(profile_id)
    try:
        service.delete(profile)
    except Conflict as exc:
        flash(f"{exc.message} {exc.hint}", "error")
    else:
        flash(f"CA profile {profile.name} deleted.", "info")
    return redirect(url_for(".index"))


class _Values(dict):
    """Typed-in form values, readable as attributes like a profile in the template."""

    def __getattr__(self, name):
        return self.get(name, "")
