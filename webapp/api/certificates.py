"""/api/v1/certificates: thin views over services.certificates, services.pipeline and
services.tags, the same calls the pages and the commands make."""
from __future__ import annotations

from flask import url_for

from .. import db
from ..services import certificates as service, permissions, pipeline, tags
from ..services.permissions import ISSUE, READ, WRITE
from .base import bp
from . import schemas as s
from .common import detail, idempotent, operation, paged, principal, summary, visible_certificate
from .problems import problem

TAG = ["Certificates"]


@bp.route("/certificates", tags=TAG)
@operation(READ, "List certificates")
@bp.arguments(s.CertificateQuery, location="query")
@bp.response(200, s.CertificatePage)
def list_certificates(query):
    """Newest first; `q` searches the names, `status`, `tag` and `profile_id` narrow the list. A
    restricted token sees only its certificates."""
    page, per_page = query["page"], query["per_page"]
    rows, total = service.search(query.get("q", ""), query.get("status", ""), page, per_page,
                                 tag=query.get("tag", ""), profile_id=query.get("profile_id"),
                                 where=permissions.visible_certificates(principal()))
    by_id = tags.of_many(c.id for c in rows)
    return paged(rows, total, page, per_page, lambda c: summary(c, by_id[c.id]))


@bp.route("/certificates", methods=["POST"], tags=TAG)
@operation(WRITE, "Create a certificate")
@bp.arguments(s.CertificateCreate)
@bp.response(201, s.Certificate)
@bp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "required": False,
                     "schema": {"type": "string", "maxLength": 255},
                     "description": "the same key with the same body answers the first response again"}])
@idempotent
def create_certificate(body):
    """Domains, CA profile, key type, ACME profile, auto-renew and tags; with `request` (the
    default) the key and CSR are made and the certificate waits, Pending, for the CNAMEs in
    `dns_records`. The same checks as the page's form and `sslmanager cert add`."""
    permissions.may_create_with(principal(), body["tags"])
    cert = service.create({"profile_id": body["profile_id"], "domains": body["domains"],
                           "key_type": body["key_type"], "acme_profile": body["acme_profile"],
                           "auto_renew": "1" if body["auto_renew"] else "",
                           "reuse_key": "1" if body["reuse_key"] else "", "tags": body["tags"]})
    if body["request"]:
        service.request(cert)
    return detail(cert), 201, {"Location": url_for(".show_certificate", cert_id=cert.id)}


@bp.route("/certificates/<int:cert_id>", tags=TAG)
@operation(READ, "Show a certificate")
@bp.response(200, s.Certificate)
def show_certificate(cert_id):
    """Status, the DNS records to create, versions, the renewal plan (renew_at, renew_reason,
    the CA's ARI window) and the last error with its hint."""
    return detail(visible_certificate(cert_id))


@bp.route("/certificates/<int:cert_id>", methods=["DELETE"], tags=TAG)
@operation(WRITE, "Delete a certificate")
@bp.arguments(s.DeleteQuery, location="query")
@bp.response(204)
def delete_certificate(query, cert_id):
    """An Active certificate needs `confirm` = its first name, as on its page. It is not revoked."""
    service.delete(visible_certificate(cert_id), query["confirm"])
    return "", 204


@bp.route("/certificates/<int:cert_id>/process", methods=["POST"], tags=TAG)
@operation(ISSUE, "Process now")
@bp.arguments(s.Empty, required=False)
@bp.response(202, s.Started)
def process_certificate(_body, cert_id):
    """Request a Draft, retry a Failed one, check a Pending one's CNAMEs, and issue in the
    background once they resolve (`result`: processing, pending, or the status). Poll the
    certificate for the outcome."""
    cert = visible_certificate(cert_id)
    result = pipeline.start_now(cert)
    db.session().refresh(cert)
    return {"result": result, "certificate": detail(cert)}, 202


@bp.route("/certificates/<int:cert_id>/renew", methods=["POST"], tags=TAG)
@operation(ISSUE, "Renew now")
@bp.arguments(s.Empty, required=False)
@bp.response(202, s.Started)
def renew_certificate(_body, cert_id):
    """An Active certificate gets a new version in the background (the current one serves until
    then); 409 for any other status, or when another process holds it."""
    cert = visible_certificate(cert_id)
    result = pipeline.renew_now([cert.id], reason="requested through the API")[cert.id]
    if result != "started":
        why = "another process is working on it" if result == "busy" else f"it is {result}; only Active ones renew"
        return problem(409, f"Not renewed: {why}.")
    db.session().refresh(cert)
    return {"result": "renewing", "certificate": detail(cert)}, 202


@bp.route("/certificates/<int:cert_id>/revoke", methods=["POST"], tags=TAG)
@operation(WRITE, "Revoke at the CA")
@bp.arguments(s.Revoke, required=False)
@bp.response(200, s.Certificate)
def revoke_certificate(body, cert_id):
    """The current version, with an RFC 5280 reason; only an Active certificate."""
    cert = visible_certificate(cert_id)
    service.revoke(cert, (body or {}).get("reason", 0))
    return detail(cert)


# -- tags ----------------------------------------------------------------------------------------------

@bp.route("/certificates/<int:cert_id>/tags", tags=TAG)
@operation(READ, "A certificate's tags")
@bp.response(200, s.TagsOut)
def get_tags(cert_id):
    return {"tags": tags.of(visible_certificate(cert_id).id)}


def _retag(cert, new: list[str]) -> dict:
    who = principal()
    if not permissions.can_see(who, cert.id, new):
        raise permissions.Denied("This token is restricted: after this change it could no longer see the "
                                 "certificate. Keep one of its tags.")
    return {"tags": tags.replace(cert, new)}


@bp.route("/certificates/<int:cert_id>/tags", methods=["PUT"], tags=TAG)
@operation(WRITE, "Set a certificate's tags")
@bp.arguments(s.Tags)
@bp.response(200, s.TagsOut)
def set_tags(body, cert_id):
    cert = visible_certificate(cert_id)
    return _retag(cert, tags.parse(body["tags"]))


@bp.route("/certificates/<int:cert_id>/tags", methods=["POST"], tags=TAG)
@operation(WRITE, "Add tags")
@bp.arguments(s.Tags)
@bp.response(200, s.TagsOut)
def add_tags(body, cert_id):
    cert = visible_certificate(cert_id)
    return _retag(cert, tags.of(cert.id) + tags.parse(body["tags"]))


@bp.route("/certificates/<int:cert_id>/tags/<tag>", methods=["DELETE"], tags=TAG)
@operation(WRITE, "Remove a tag")
@bp.response(200, s.TagsOut)
def remove_tag(cert_id, tag):
    cert = visible_certificate(cert_id)
    return _retag(cert, [t for t in tags.of(cert.id) if t != tag.lower()])
