"""/api/v1/agent/...: what `sslmanager agent` on a web server asks. The listing is the hot
path (every agent, every minute, nearly always a 304): one narrow query, a hash, no write but
a throttled last-seen. The material comes from the PEM bundle endpoint (keys:read)."""
from __future__ import annotations

import marshmallow as ma
from flask import current_app, request, url_for
from marshmallow import fields, validate

from ..services import agents, permissions
from ..services.permissions import READ
from .base import bp
from .common import operation, principal, visible_certificate
from .schemas import Id, Strict, When

TAG = ["Agents"]
AGENT_HEADER = "SSLManager-Agent"


class AgentVersion(ma.Schema):
    id = fields.Integer(required=True)
    number = fields.Integer(required=True)
    serial = fields.String(required=True)
    not_after = When()


class AgentCertificate(ma.Schema):
    id = fields.Integer(required=True)
    domains = fields.List(fields.String(), required=True)
    status = fields.String(required=True)
    version = fields.Nested(AgentVersion, required=True)
    bundle_url = fields.String(required=True, metadata={"description": "the version's PEM bundle with its key "
                                                                       "(needs keys:read)"})


class AgentCertificates(ma.Schema):
    certificates = fields.List(fields.Nested(AgentCertificate), required=True)


class AgentReport(Strict):
    agent = fields.String(validate=validate.Length(1, agents.NAME_MAX),
                          metadata={"description": f"default: the {AGENT_HEADER} header, else the address"})
    certificate_id = Id(required=True)
    version_id = fields.Integer(strict=True, allow_none=True, validate=validate.Range(1, 2 ** 63 - 1))
    serial = fields.String(required=True, validate=validate.Regexp(r"[0-9a-fA-F]{1,64}\Z"))
    ok = fields.Boolean(required=True, truthy={True}, falsy={False})
    message = fields.String(load_default="", validate=validate.Length(max=agents.MESSAGE_MAX))


class AgentReportAnswer(ma.Schema):
    agent = fields.String(required=True)
    certificate_id = fields.Integer(required=True)
    installed_serial = fields.String(required=True)


def _agent_id(name: str | None = None) -> int:
    address = (request.remote_addr or "")[:64]
    who = principal()
    return agents.seen(who.token_id or 0, agents.clean_name(name or request.headers.get(AGENT_HEADER), address),
                       address)


@bp.route("/agent/certificates", tags=TAG)
@operation(READ, "What this token's agent may deliver")
@bp.response(200, AgentCertificates, headers={"ETag": {"schema": {"type": "string"}}})
@bp.alt_response(304, description="unchanged since If-None-Match")
def agent_certificates():
    """The certificates inside this token's restriction that have a current version, with the
    version's id and serial and where to fetch its bundle. Send `If-None-Match` with the last
    ETag: an unchanged list is a bodyless 304. Send the agent's name in `SSLManager-Agent`."""
    _agent_id()
    who = principal()
    items, etag = agents.deliverable(lambda: permissions.visible_certificates(who), (who.cert_ids, who.tags))
    if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return current_app.response_class(status=304, headers={"ETag": etag})
    for item in items:
        item["bundle_url"] = url_for(".pem_bundle", cert_id=item["id"], version=item["version"]["number"],
                                     include_key="true")
    response = current_app.response_class(current_app.json.dumps({"certificates": items}),
                                          mimetype="application/json")
    response.headers["ETag"] = etag
    return response


@bp.route("/agent/reports", methods=["POST"], tags=TAG)
@operation(READ, "An agent's result for one certificate")
@bp.arguments(AgentReport)
@bp.response(201, AgentReportAnswer)
def agent_report(body):
    """After an install: the serial the agent now serves (ok) or the one it failed to install,
    and what happened. The certificate page lists each agent with its last result."""
    cert = visible_certificate(body["certificate_id"])
    agent_id = _agent_id(body.get("agent"))
    row = agents.record_report(agent_id, cert, body)
    return {"agent": agents.clean_name(body.get("agent") or request.headers.get(AGENT_HEADER),
                                       request.remote_addr or ""),
            "certificate_id": cert.id, "installed_serial": row.installed_serial}, 201
