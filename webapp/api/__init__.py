"""/api/v1: JSON for panels in any language, under the pages' URL prefix (standalone "/api/v1",
embedded e.g. "/ssl/api/v1").

Its own blueprint (api/base.py), apart from the pages' umbrella: no session, no CSRF (a host's
CSRFProtect is told to leave it alone), its own guard. Only a bearer token authenticates (a
session cookie is never read here), failed tokens are throttled like sign-ins, every error is
an RFC 9457 problem document. flask-smorest builds the OpenAPI 3.1 document from the
marshmallow schemas that validate the requests; its Api takes every setting under our
SSLMANAGER_ prefix and keeps its error handlers off the app (a host's own errors stay the
host's)."""
from __future__ import annotations

import http

import flask
import flask_smorest
from flask_smorest.utils import prepare_response

from ..version import __version__
from . import agents, ca_profiles, certificates, events, material  # noqa: F401  (their routes hang on bp)
from .base import PATH, bp, exempt_from_host_csrf
from .problems import MEDIA_TYPE, ProblemSchema


class Api(flask_smorest.Api):
    """flask-smorest's Api, minus its app-wide HTTPException handler (ours sit on our blueprint),
    with error responses documented as problem+json."""

    ERROR_SCHEMA = ProblemSchema

    def _register_error_handlers(self):
        pass

    def _register_responses(self):
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = ProblemSchema
            prepare_response(response, self.spec, MEDIA_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "A problem document (RFC 9457)", "schema": ProblemSchema}
        prepare_response(response, self.spec, MEDIA_TYPE)
        self.spec.components.response("DEFAULT_ERROR", response, lazy=True)


def register(app: flask.Flask, url_prefix: str) -> None:
    """Mount the API at <url_prefix>/api/v1 (called with the pages)."""
    api = Api(app, config_prefix="SSLMANAGER_", spec_kwargs={
        "title": "SSL Manager API", "version": __version__, "openapi_version": "3.1.0",
        "info": {"description": "Certificates, CA profiles, zones and the audit log for panels and "
                                "agents. Authenticate with `Authorization: Bearer sslm_...` (an API "
                                "token); errors are RFC 9457 problem documents."}})
    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                                   "description": "An SSL Manager API token (sslm_...)"})
    prefix = "" if url_prefix in ("", "/") else url_prefix.rstrip("/")
    api.register_blueprint(bp, url_prefix=prefix + PATH)
    app.extensions["sslmanager"].extra["api"] = api
    exempt_from_host_csrf(app)

