"""/api/v1/certificates/<id>/pem, /files/<name>, /pkcs12: a version's material. Private keys
need the keys:read scope, and a restricted token gets 403 for any certificate outside its
restriction (never the key). Every key read is audited."""
from __future__ import annotations

from flask import current_app

from .. import db
from ..errors import Conflict, NotFound
from ..services import audit, certificates as service
from ..services.permissions import KEYS_READ, READ
from .base import bp
from . import schemas as s
from .common import operation, visible_certificate

TAG = ["Certificate material"]
FILES = ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem")


def _version(cert, number):
    if number is None:
        version = service.current_version(cert)
        if version is None:
            raise Conflict("The certificate has not been issued yet; there is nothing to download.",
                           hint="Poll the certificate until its status is active.")
        return version
    found = next((v for v in service.versions(cert) if v.number == number), None)
    if found is None:
        raise NotFound(f"Certificate {cert.id} has no version {number}.")
    return found


def _audit_key(cert, what: str) -> None:
    audit.record(what, "certificate", cert.id, ", ".join(cert.domains))
    db.session().commit()


@bp.route("/certificates/<int:cert_id>/pem", tags=TAG)
@operation(READ, "PEM bundle (JSON)")
@bp.arguments(s.MaterialQuery, location="query")
@bp.response(200, s.Pem)
def pem_bundle(query, cert_id):
    """cert, chain and fullchain of the current version (or `version`); the key too with
    `include_key=true`, which needs keys:read."""
    cert = visible_certificate(cert_id, key=query["include_key"])
    version = _version(cert, query.get("version"))
    files = service.export_files(cert, version)
    body = {"certificate_id": cert.id, "version": version.number, "serial": version.serial,
            "not_after": version.not_after, "cert": files["cert.pem"], "chain": files["chain.pem"],
            "fullchain": files["fullchain.pem"]}
    if query["include_key"]:
        body["key"] = files["privkey.pem"]
        _audit_key(cert, "private key downloaded")
    return body


@bp.route("/certificates/<int:cert_id>/files/<filename>", tags=TAG)
@operation(READ, "One PEM file")
@bp.arguments(s.VersionQuery, location="query")
@bp.response(200, description="the PEM file", content_type="application/x-pem-file")
def pem_file(query, cert_id, filename):
    """cert.pem, chain.pem, fullchain.pem or privkey.pem (keys:read) as a file."""
    if filename not in FILES:
        raise NotFound(f"No file {filename[:40]!r}: choose one of {', '.join(FILES)}.")
    key = filename == "privkey.pem"
    cert = visible_certificate(cert_id, key=key)
    text = service.export_files(cert, _version(cert, query.get("version")))[filename]
    if key:
        _audit_key(cert, "private key downloaded")
    return current_app.response_class(text, mimetype="application/x-pem-file", headers={
        "Content-Disposition": f'attachment; filename="{cert.common_name.replace("*", "_")}-{filename}"'})


@bp.route("/certificates/<int:cert_id>/pkcs12", methods=["POST"], tags=TAG)
@operation(KEYS_READ, "PKCS#12")
@bp.arguments(s.Pkcs12Request)
@bp.response(200, description="PKCS#12 (AES-256, or 3DES/SHA-1 with legacy)",
             content_type="application/x-pkcs12")
def pkcs12(body, cert_id):
    """The key and certificates of the current version (or `version`) under `password`."""
    cert = visible_certificate(cert_id, key=True)
    version = _version(cert, body.get("version"))
    data = service.export_pkcs12(cert, body["password"], legacy=body["legacy"], version=version)
    _audit_key(cert, "PKCS#12 downloaded")
    return current_app.response_class(data, mimetype="application/x-pkcs12", headers={
        "Content-Disposition": f'attachment; filename="{cert.common_name.replace("*", "_")}.p12"'})
