"""What the API's views share: the scope check (documented in the OpenAPI document too), the
problem responses every operation may answer, paging, the certificates a token may see, and
Idempotency-Key."""
from __future__ import annotations

import functools
import hashlib
import json
from datetime import timedelta

from flask import current_app, g, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from .. import db
from ..errors import NotFound
from ..models import Certificate, IdempotencyKey, utcnow
from ..services import certificates, domains, permissions, tags
from .base import bp
from .problems import MEDIA_TYPE, problem

PROBLEM = {"description": "A problem document (RFC 9457): 401 no or a refused token, 403 a scope "
                          "or restriction, 404, 405, 409 the state refuses it, 413, 415, 422 a field "
                          "(named), 429 too many failed tokens (Retry-After), 502 the CA or DNS failed",
           "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def operation(scope: str, summary: str = ""):
    """The token must hold `scope`: checked before the view runs, and written into the document
    (security requirement, and every problem the operation may answer)."""
    def wrap(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            permissions.require(principal(), scope)
            return view(*args, **kwargs)
        doc = {"security": [{"bearer": [scope]}], "responses": {"default": PROBLEM}}
        if summary:
            doc["summary"] = summary
        return bp.doc(**doc)(checked)
    return wrap


def principal() -> permissions.Principal:
    return g.sslm_principal


def paged(rows, total: int, page: int, per_page: int, dump) -> dict:
    return {"items": [dump(r) for r in rows], "page": page, "per_page": per_page, "total": total,
            "pages": max(1, -(-total // per_page))}


def visible_certificate(cert_id: int, *, key: bool = False) -> Certificate:
    """The certificate if this token may see it: 404 otherwise (as if it did not exist). For a
    private key (`key`): 403, decided before looking whether it exists."""
    who = principal()
    if key:
        permissions.require(who, permissions.KEYS_READ)
        if who.restricted:
            cert = db.session().get(Certificate, cert_id)
            permissions.require_key_access(who, cert_id, tags.of(cert_id) if cert else ())
    try:
        cert = certificates.get(cert_id)
    except NotFound:
        raise NotFound(f"No certificate with id {cert_id}.") from None
    if not permissions.can_see(who, cert.id, tags.of(cert.id)):
        raise NotFound(f"No certificate with id {cert_id}.")
    return cert



def summary(cert: Certificate, tag_list: list[str] | None = None) -> dict:
    return {"id": cert.id, "domains": list(cert.domains),
            "domains_unicode": [domains.to_unicode(n) for n in cert.domains],
            "status": cert.status, "step": cert.step or "", "progress": cert.progress,
            "profile_id": cert.profile_id, "key_type": cert.key_type, "acme_profile": cert.acme_profile or "",
            "auto_renew": bool(cert.auto_renew),
            "tags": tag_list if tag_list is not None else tags.of(cert.id),
            "serial": cert.serial or "", "not_before": cert.not_before, "not_after": cert.not_after,
            "days_remaining": certificates.days_remaining(cert), "renew_at": cert.renew_at,
            "last_error": cert.last_error or "", "created_at": cert.created_at}


def detail(cert: Certificate) -> dict:
    records = [{"domain": i.domain, "domain_unicode": i.domain_unicode, "name": i.name, "type": "CNAME",
                "target": i.target, "record": i.record} for i in certificates.instructions(cert)]
    versions = [{"number": v.number, "serial": v.serial, "issuer": v.issuer, "not_before": v.not_before,
                 "not_after": v.not_after, "revoked_at": v.revoked_at, "created_at": v.created_at}
                for v in certificates.versions(cert)]
    return {**summary(cert), "reuse_key": bool(cert.reuse_key), "renew_reason": cert.renew_reason or "",
            "ari": {"window_start": cert.ari_window_start, "window_end": cert.ari_window_end,
                    "explanation_url": cert.ari_explanation_url or None, "last_poll": cert.ari_checked_at,
                    "next_poll": cert.ari_next_poll_at},
            "last_error_hint": cert.last_error_hint or "", "failing_since": cert.failing_since,
            "dns_records": records, "versions": versions, "updated_at": cert.updated_at}


# -- Idempotency-Key -----------------------------------------------------------------------------------

def idempotent(view):
    """A POST that creates: with an Idempotency-Key header, the first answer (status and body)
    is stored with the key, the token and a hash of the body, and the same key with the same
    body gets it again without doing anything; the same key with another body is a 422."""
    @functools.wraps(view)
    def run(*args, **kwargs):
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            return view(*args, **kwargs)
        if len(key) > 255:
            return problem(422, "Idempotency-Key: at most 255 characters.",
                           errors={"Idempotency-Key": "At most 255 characters."})
        token_id = principal().token_id or 0
        digest = hashlib.sha256(request.method.encode() + b" " + request.path.encode() + b"\n"
                                + request.get_data()).hexdigest()
        s = db.session()
        hours = current_app.config["SSLMANAGER_API_IDEMPOTENCY_HOURS"]
        s.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < utcnow() - timedelta(hours=hours)))
        s.commit()
        stored = s.scalar(select(IdempotencyKey).where(IdempotencyKey.token_id == token_id,
                                                       IdempotencyKey.key == key))
        if stored is None:
            stored = IdempotencyKey(token_id=token_id, key=key, request_hash=digest, status=0, response="")
            s.add(stored)
            try:
                s.commit()
            except IntegrityError:  # the same key, this very moment, from another request
                s.rollback()
                return problem(409, "A request with this Idempotency-Key is still being handled; "
                                    "retry in a moment.")
        else:
            return _replay(stored, digest)
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            _forget(stored.id)
            raise
        if response.status_code >= 300:  # refused: the same key may be sent again, corrected
            _forget(stored.id)
            return response
        stored.status, stored.response = response.status_code, response.get_data(as_text=True)
        s.commit()
        return response
    return run


def _replay(stored: IdempotencyKey, digest: str):
    if stored.request_hash != digest:
        return problem(422, "This Idempotency-Key was used with another request body.",
                       errors={"Idempotency-Key": "Used before with a different body: use a new key "
                                                  "for a new request."})
    if stored.status == 0:
        return problem(409, "A request with this Idempotency-Key is still being handled; retry in a moment.")
    response = current_app.response_class(stored.response, status=stored.status, mimetype="application/json")
    response.headers["Idempotent-Replayed"] = "true"
    body = json.loads(stored.response or "{}")
    if isinstance(body, dict) and "id" in body:
        response.headers["Location"] = request.path.rstrip("/") + f"/{body['id']}"
    return response


def _forget(row_id: int) -> None:
    s = db.session()
    s.rollback()
    s.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))
    s.commit()
