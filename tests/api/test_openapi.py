"""The OpenAPI document is valid OpenAPI 3.1, and schemathesis, driven by it against the live
API (served as `sslmanager run` serves it), finds no 500 and no answer that breaks the
document (status, content type, schema)."""
from __future__ import annotations

import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.conftest import make_app, make_certificate
from tests.live import add_version, served
from tests.lab.http import closed_port
from webapp import db
from webapp.models import Certificate
from webapp.services import ca_profiles, tags, tokens

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Left out of the fuzzing: each talks to a CA or DNS (the lab tests cover them), and a random
# call would only wait for a timeout.
SLOW = r"/process$|/renew$|/revoke$|/test$|/check$"


def test_the_document_is_valid_openapi_3_1(api):
    spec = api.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"] == "3.1.0"
    validate(spec)
    create = spec["paths"]["/api/v1/certificates"]["post"]
    assert create["security"] == [{"bearer": ["write"]}]
    assert "application/problem+json" in create["responses"]["default"]["content"]
    schema = spec["components"]["schemas"]["CertificateCreate"]
    assert schema["additionalProperties"] is False and set(schema["required"]) == {"domains", "profile_id"}


def test_the_docs_page_lists_every_operation(api):
    html = api.get("/api/v1/docs").get_data(as_text=True)
    assert "POST /api/v1/certificates" in html and "keys:read" in html
    assert "cdn" not in html.lower()


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A served app with a profile (its CA unreachable), two certificates, one issued, and a
    token holding every scope."""
    app = make_app(tmp_path_factory.mktemp("fuzz"))
    with app.app_context():
        profile = ca_profiles.create({"name": "Closed", "module": "custom", "email": "ops@example.com",
                                      "dns_zone": "acme.tech.test",
                                      "directory_url": f"https://127.0.0.1:{closed_port()}/dir"}, complete=True).id
        secret = tokens.create("fuzz", ["read", "write", "issue", "keys:read"]).secret
    first = make_certificate(app, profile, "a.example.com")
    make_certificate(app, profile, "b.example.com")
    with app.app_context():
        tags.replace(db.session().get(Certificate, first), ["web-03"])
        db.session().commit()
    add_version(app, first)
    with served(app) as base:
        yield base, secret


def test_the_live_api_keeps_its_document(live):
    base, secret = live
    document = requests.get(f"{base}/api/v1/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(document).exclude(path_regex=SLOW)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    started = time.monotonic()
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {secret}"}, checks=CHECKS)
        fuzz()
    assert time.monotonic() - started < 60
