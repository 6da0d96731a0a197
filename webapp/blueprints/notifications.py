"""Settings → SSL Manager → Notifications: channels, Send test and options; thin views over
services.notifications."""
from __future__ import annotations

from flask import Blueprint, abort, redirect, render_template, request, url_for

from ..errors import NotFound, ValidationError
from ..services import ca_profiles
from ..services import notifications as service
from .common import htmx
from .flashes import flash

bp = Blueprint("notifications", __name__)

T = "sslmanager/notifications/"


@bp.context_processor
def _helpers():
    return {"events": service.EVENTS, "kinds": service.KINDS, "security_modes": service.SECURITY,
            "channel_target": service.target, "signature_header": service.SIGNATURE_HEADER}


def _channel(channel_id: int):
    try:
        return service.get_channel(channel_id)
    except NotFound:
        abort(404)


def _options(errors=None, values=None):
    return {"options_errors": errors or {},
            "options": values or {"expiry_days": ", ".join(map(str, service.expiry_days())),
                                  "webhook_allowlist": "\n".join(service.webhook_allowlist())}}


def _index(code: int = 200, **context):
    profiles = {p.id: p.name for p in ca_profiles.all_profiles()}
    return render_template(T + "index.html", channels=service.all_channels(), profiles=profiles,
                           **{**_options(), **context}), code


@bp.route("/notifications/")
def index():
    return _index()


@bp.route("/notifications/options", methods=["POST"])
def options():
    """Expiry reminder days and the webhook allow-list."""
    values = request.form.to_dict()
    try:
        service.save_options(values)
    except ValidationError as exc:
        context = _options(exc.errors, values)
        if htmx:
            return render_template(T + "_options.html", htmx=True, **context)
        return _index(422, **context)
    flash("Notification options saved.", "info")
    if htmx:
        return render_template(T + "_options.html", htmx=True, **_options())
    return redirect(url_for(".index"))


def _form_values(channel) -> dict:
    """A channel's fields as the form shows them (never the secret)."""
    s = channel.settings or {}
    values = {"name": channel.name, "enabled": channel.enabled, "profile_id": channel.profile_id or "",
              "events": channel.events or list(service.EVENTS)}
    if channel.kind == "email":
        values.update(host=s.get("host", ""), port=s.get("port", ""), security=s.get("security", "starttls"),
                      username=s.get("username", ""), from_addr=s.get("from_addr", ""),
                      to=", ".join(s.get("to", [])), ca_bundle=s.get("ca_bundle", ""))
    else:
        values["url"] = s.get("url", "")
    return values


def _typed(form) -> dict:
    """What was typed, for saving and for re-rendering (the secret is dropped from the latter)."""
    values = form.to_dict()
    values["events"] = form.getlist("events")
    values["enabled"] = "enabled" in form
    return values


def _render_channel(kind: str, channel, values: dict, errors: dict, code: int = 200):
    shown = {k: v for k, v in values.items() if k not in ("secret", "secret_clear")}
    return render_template(T + "channel.html", kind=kind, channel=channel, values=shown, errors=errors,
                           profiles=ca_profiles.all_profiles()), code


@bp.route("/notifications/new/<kind>", methods=["GET", "POST"])
def new(kind: str):
    if kind not in service.KINDS:
        abort(404)
    if request.method == "GET":
        defaults = {"enabled": True, "events": list(service.EVENTS), "security": "starttls", "port": 587}
        return _render_channel(kind, None, defaults, {})
    values = _typed(request.form)
    try:
        channel = service.save_channel(None, kind, values)
    except ValidationError as exc:
        return _render_channel(kind, None, values, exc.errors, 422)
    flash(f"Channel {channel.name} saved. Use Send test to check it.", "info")
    return redirect(url_for(".index"))


@bp.route("/notifications/<int:channel_id>/edit", methods=["GET", "POST"])
def edit(channel_id: int):
    channel = _channel(channel_id)
    if request.method == "GET":
        return _render_channel(channel.kind, channel, _form_values(channel), {})
    values = _typed(request.form)
    try:
        service.save_channel(channel, channel.kind, values)
    except ValidationError as exc:
        return _render_channel(channel.kind, channel, values, exc.errors, 422)
    flash(f"Channel {channel.name} saved.", "info")
    return redirect(url_for(".index"))


@bp.route("/notifications/<int:channel_id>/test", methods=["POST"])
def test(channel_id: int):
    """Send test: the result in a modal (htmx), or on the list page without JavaScript."""
    channel = _channel(channel_id)
    result = service.send_test(channel)
    if htmx:
        # The row's "Last test" too, in place (out of band): no reload to see it.
        modal = render_template(T + "_test_result.html", channel=channel, result=result, htmx=True)
        row = render_template(T + "_channel_row.html", c=channel, oob=True,
                              profiles={p.id: p.name for p in ca_profiles.all_profiles()})
        return modal + f"<template>{row}</template>"  # htmx's way to carry a lone <tr> out of band
    return _index(test_channel=channel, test_result=result)


@bp.route("/notifications/<int:channel_id>/delete", methods=["POST"])
def delete(channel_id: int):
    channel = _channel(channel_id)
    service.delete_channel(channel)
    flash(f"Channel {channel.name} deleted.", "info")
    return redirect(url_for(".index"))
