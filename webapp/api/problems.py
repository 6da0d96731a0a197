"""RFC 9457 problem documents: every error the API answers, whatever raised it (a route that
does not exist, a body too large, a schema, a service, a permission). Never HTML."""
from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Response, current_app
from werkzeug.exceptions import HTTPException

from ..errors import Conflict, NotFound, SSLManagerError, ValidationError
from ..services.permissions import Denied

MEDIA_TYPE = "application/problem+json"


class ProblemSchema(ma.Schema):
    """An RFC 9457 problem document (documentation: responses are built by `problem`)."""

    type = ma.fields.String(metadata={"description": "about:blank: the status code says it all"})
    title = ma.fields.String(required=True, metadata={"description": "the HTTP status phrase"})
    status = ma.fields.Integer(required=True)
    detail = ma.fields.String(metadata={"description": "what went wrong, naming the field"})
    hint = ma.fields.String(metadata={"description": "what to do next"})
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String(),
                            metadata={"description": "field name -> what is wrong with it"})


def problem(status: int, detail: str = "", *, errors: dict[str, str] | None = None, hint: str = "",
            headers: dict[str, str] | None = None) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    if detail:
        body["detail"] = detail
    if hint:
        body["hint"] = hint
    if errors:
        body["errors"] = errors
    response = current_app.response_class(json.dumps(body), status=status, mimetype=MEDIA_TYPE)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _flatten(messages: Any, prefix: str = "") -> dict[str, str]:
    """webargs/marshmallow messages ({"json": {"tags": {"0": ["..."]}}}) -> {"tags.0": "..."}."""
    out: dict[str, str] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = "body" if key == "_schema" else str(key)
            out.update(_flatten(value, f"{prefix}.{name}" if prefix else name))
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            out[prefix or "body"] = " ".join(messages)
        else:
            for item in messages:
                out.update(_flatten(item, prefix))
    else:
        out[prefix or "body"] = str(messages)
    return out


def from_http_exception(exc: HTTPException) -> Response:
    """Werkzeug's errors (404, 405, 413, ...) and webargs' (400 bad JSON, 422 schema)."""
    code = exc.code or 500
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages")
    if messages:
        locations = messages if isinstance(messages, dict) else {"json": messages}
        errors: dict[str, str] = {}
        for location, found in locations.items():
            for name, text in _flatten(found).items():
                # The body's fields are named plainly; a query or header field says where it is.
                errors[name if location == "json" else f"{location}.{name}"] = text
        first = next(iter(errors.items()))
        return problem(code, f"{first[0]}: {first[1]}", errors=errors)
    headers = {}
    if code == 405 and getattr(exc, "valid_methods", None):
        headers["Allow"] = ", ".join(exc.valid_methods)
    if code == 413:
        limit = current_app.config["SSLMANAGER_MAX_CONTENT_LENGTH"]
        return problem(413, f"The request body is larger than the {limit:,} bytes SSL Manager accepts.",
                       hint="Send less, or raise SSLMANAGER_MAX_CONTENT_LENGTH.")
    return problem(code, exc.description or "", headers=headers)


def from_service_error(exc: SSLManagerError) -> Response:
    """What a service refused: its fields (422), a missing object (404), a state (409), or the
    CA or DNS provider failing behind it (502)."""
    if isinstance(exc, ValidationError):
        first = next(iter(exc.errors.items()), ("body", exc.message))
        return problem(422, f"{first[0]}: {first[1]}", errors=dict(exc.errors), hint=exc.hint)
    if isinstance(exc, NotFound):
        return problem(404, exc.message, hint=exc.hint)
    if isinstance(exc, Conflict):
        return problem(409, exc.message, hint=exc.hint)
    return problem(502, str(exc), hint=exc.hint)


def from_denied(exc: Denied) -> Response:
    return problem(403, exc.message)
