"""The certificate page's secondary forms: tags, fallbacks, the file downloads (PEM, PKCS#12) and
the deploy settings. They are routes of certificates.bp (same URLs, same endpoint names, same
error handler and guard entries), kept apart so each module stays readable; blueprints/__init__.py
imports this module before it registers that blueprint."""
from __future__ import annotations

import io

from flask import abort, redirect, render_template, request, send_file, url_for

from .. import db
from ..errors import NotFound, ValidationError
from ..services import audit, certificates as service, tags
from ..services import deploy as deploys
from .auth import ask_password_again, fresh_sign_in
from .certificates import DOWNLOADS, bp, cert_or_404, detail_page, flag_other_zones
from .common import htmx
from .flashes import flash


# -- fallbacks and tags ------------------------------------------------------------------------

@bp.route("/<int:cert_id>/fallbacks", methods=["POST"])
def fallbacks(cert_id: int):
    """Change the certificate's own fallback list (all none: its CA profile's default)."""
    cert = cert_or_404(cert_id)
    try:
        chosen = service.set_fallbacks(cert, request.form.to_dict())
    except ValidationError as exc:
        db.session().rollback()
        return detail_page(cert_or_404(cert_id), exc.errors, 422)
    flash("Fallbacks saved: " + (", ".join(p.name for p in chosen) or "none") + ".", "info")
    flag_other_zones(cert)
    return redirect(url_for(".detail", cert_id=cert_id))


@bp.route("/<int:cert_id>/tags", methods=["POST"])
def set_tags(cert_id: int):
    """The tags field on the certificate's page: replaces them all."""
    cert = cert_or_404(cert_id)
    try:
        tags.replace(cert, tags.parse(request.form.get("tags", "")))
    except ValidationError as exc:
        return detail_page(cert, exc.errors, 422)
    flash("Tags saved.", "info")
    return redirect(url_for(".detail", cert_id=cert_id))


# -- files -------------------------------------------------------------------------------------

def _file_stem(cert) -> str:
    return cert.common_name.replace("*", "_")


@bp.route("/<int:cert_id>/download/<filename>", methods=["GET", "POST"])
def download(cert_id: int, filename: str):
    """cert.pem, chain.pem, fullchain.pem or privkey.pem of the current (or ?version=N) version.
    POST: the password asked again before privkey.pem (fresh_sign_in's form)."""
    if filename not in DOWNLOADS:
        abort(404)
    if filename == "privkey.pem":
        return _private_key(cert_id, filename)
    return _download(cert_id, filename)


@fresh_sign_in
def _private_key(cert_id: int, filename: str):
    return _download(cert_id, filename)


def _download(cert_id: int, filename: str):
    cert = cert_or_404(cert_id)
    version = None
    number = request.args.get("version", type=int)
    if number is not None:
        version = next((v for v in service.versions(cert) if v.number == number), None)
        if version is None:
            abort(404)
    body = service.export_files(cert, version)[filename]
    if filename == "privkey.pem":
        audit.record("private key downloaded", "certificate", cert.id, ", ".join(cert.domains))
        db.session().commit()
    return _attachment(body.encode(), "application/x-pem-file", f"{_file_stem(cert)}-{filename}")


@bp.route("/<int:cert_id>/pkcs12", methods=["POST"])
@fresh_sign_in
def pkcs12(cert_id: int):
    cert = cert_or_404(cert_id)
    try:
        data = service.export_pkcs12(cert, request.form.get("password", ""),
                                     legacy=request.form.get("encryption") == "legacy")
    except ValidationError as exc:
        return detail_page(cert, exc.errors, 422)
    audit.record("PKCS#12 downloaded", "certificate", cert.id, ", ".join(cert.domains))
    db.session().commit()
    return _attachment(data, "application/x-pkcs12", f"{_file_stem(cert)}.p12")


def _attachment(data: bytes, mimetype: str, name: str):
    """A download that no cache keeps (certificates and keys)."""
    response = send_file(io.BytesIO(data), mimetype=mimetype, as_attachment=True, download_name=name)
    response.headers["Cache-Control"] = "no-store"
    return response


# -- the deploy settings (the partial on the detail page) --------------------------------------

@bp.route("/<int:cert_id>/deploy", methods=["GET", "POST"])
def deploy(cert_id: int):
    """Save the deploy fields; with action=run, deploy the current version now."""
    try:
        cert = service.get(cert_id)
    except NotFound:
        abort(404)
    context = {"cert": cert, "deploy_errors": {}, "deploy_values": None}
    if request.method == "POST":
        # The directory gets privkey.pem and the command runs as the service user: both reach
        # the key, so saving asks the password again like a key download.
        asked = ask_password_again()
        if asked:
            return asked
        values = request.form.to_dict()
        try:
            deploys.update_settings(cert, values)
        except ValidationError as exc:
            context.update(deploy_errors=exc.errors, deploy_values=values)
        else:
            message = "Deploy settings saved."
            if values.get("action") == "run":
                result = deploys.run(cert)
                message += (" Nothing to deploy: fill in at least one field." if result is None else
                            f" Deployed: {result.message}" if result.ok else f" Deploy failed: {result.message}")
            category = "error" if values.get("action") == "run" and cert.deploy_last_ok is False else "info"
            if not htmx:
                flash(message, category)
                return redirect(url_for("sslmanager.certificates.detail", cert_id=cert.id) + "#deploy")
            context["deploy_notice"] = (message, category)
    context["version"] = service.current_version(cert)
    if htmx:
        return render_template("sslmanager/certificates/_deploy.html", **context)
    code = 422 if context["deploy_errors"] else 200
    return render_template("sslmanager/certificates/deploy.html", **context), code
