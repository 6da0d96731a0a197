"""Bad input gets a 4xx problem naming the field, never a 500, and changes nothing: unknown
fields, wrong types, huge bodies, wrong content types, broken JSON; and Idempotency-Key."""
from __future__ import annotations

import json

import pytest

from webapp import db
from webapp.models import Certificate, IdempotencyKey

from .conftest import bearer

PROBLEM = "application/problem+json"


@pytest.fixture
def writer(make_token):
    return bearer(make_token("panel", ["read", "write"]))


def _count(app):
    with app.app_context():
        return db.session().query(Certificate).count()


@pytest.mark.parametrize("body, field", [
    ({"domains": ["a.example.com"], "profile_id": 1, "colour": "red"}, "colour"),
    ({"domains": "a.example.com", "profile_id": 1}, "domains"),
    ({"domains": ["a.example.com"], "profile_id": "1"}, "profile_id"),
    ({"domains": ["a.example.com"], "profile_id": 1, "auto_renew": "maybe"}, "auto_renew"),
    ({"domains": ["a.example.com"], "profile_id": 1, "key_type": "dsa"}, "key_type"),
    ({"domains": ["a.example.com"], "profile_id": 1, "tags": ["Bad Tag"]}, "tags.0"),
    ({"profile_id": 1}, "domains"),
    ([1, 2], "body"),
])
def test_schema_errors_name_the_field(app, api, writer, profile_id, body, field):
    resp = api.post("/api/v1/certificates", headers=writer, json=body)
    assert resp.status_code == 422, resp.get_data(as_text=True)
    assert resp.mimetype == PROBLEM
    problem = resp.get_json()
    assert field in problem["errors"] and problem["detail"].startswith(field)
    assert _count(app) == 0


def test_service_rules_come_back_as_fields_too(app, api, writer, profile_id):
    resp = api.post("/api/v1/certificates", headers=writer,
                    json={"domains": ["not a name", "*.x.example.com"], "profile_id": profile_id})
    assert resp.status_code == 422 and "domains" in resp.get_json()["errors"]
    resp = api.post("/api/v1/certificates", headers=writer, json={"domains": ["a.example.com"], "profile_id": 999})
    assert resp.status_code == 422 and "profile_id" in resp.get_json()["errors"]
    assert _count(app) == 0


def test_broken_json_wrong_content_type_and_huge_bodies(app, api, writer, profile_id):
    resp = api.post("/api/v1/certificates", headers={**writer, "Content-Type": "application/json"}, data="{nope")
    assert resp.status_code == 400 and resp.mimetype == PROBLEM
    resp = api.post("/api/v1/certificates", headers=writer, data={"domains": "a.example.com"})
    assert resp.status_code == 415 and resp.mimetype == PROBLEM
    resp = api.post("/api/v1/certificates", headers={**writer, "Content-Type": "text/plain"}, data="hello")
    assert resp.status_code == 415
    huge = json.dumps({"domains": ["a.example.com"], "profile_id": profile_id, "acme_profile": "x" * 2_000_000})
    resp = api.post("/api/v1/certificates", headers={**writer, "Content-Type": "application/json"}, data=huge)
    assert resp.status_code == 413 and resp.mimetype == PROBLEM
    assert "SSLMANAGER_MAX_CONTENT_LENGTH" in resp.get_json()["hint"]
    assert _count(app) == 0


def test_unknown_query_values_are_problems(api, writer):
    for query in ("status=nope", "per_page=0", "per_page=abc", "page=-1", "tag=NOT%20A%20TAG"):
        resp = api.get(f"/api/v1/certificates?{query}", headers=writer)
        assert resp.status_code == 422 and resp.mimetype == PROBLEM, query
        assert next(iter(resp.get_json()["errors"])).startswith("query."), query


def test_a_body_where_none_is_taken_must_be_empty(app, api, make_token, profile_id):
    from tests.conftest import make_certificate
    cert_id = make_certificate(app, profile_id, "a.example.com")
    issuer = bearer(make_token("issuer", ["read", "issue"]))
    resp = api.post(f"/api/v1/certificates/{cert_id}/process", headers=issuer, json={"now": True})
    assert resp.status_code == 422 and "now" in resp.get_json()["errors"]
    with app.app_context():
        assert db.session().get(Certificate, cert_id).status == "draft"


def test_idempotency_key_replays_the_first_answer(app, api, writer, profile_id):
    body = {"domains": ["a.example.com"], "profile_id": profile_id, "request": False}
    headers = {**writer, "Idempotency-Key": "create-a-1"}
    first = api.post("/api/v1/certificates", headers=headers, json=body)
    assert first.status_code == 201, first.get_data(as_text=True)
    again = api.post("/api/v1/certificates", headers=headers, json=body)
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _count(app) == 1
    other = api.post("/api/v1/certificates", headers=headers, json={**body, "domains": ["b.example.com"]})
    assert other.status_code == 422 and "Idempotency-Key" in other.get_json()["errors"]
    assert _count(app) == 1
    # a refused request does not use up its key: corrected, the same key works
    bad = {**writer, "Idempotency-Key": "create-c"}
    assert api.post("/api/v1/certificates", headers=bad, json={**body, "profile_id": 999}).status_code == 422
    assert api.post("/api/v1/certificates", headers=bad, json={**body, "domains": ["c.example.com"]}).status_code == 201
    with app.app_context():
        assert db.session().query(IdempotencyKey).count() == 2


def test_idempotency_keys_belong_to_their_token(app, api, make_token, profile_id):
    body = {"domains": ["a.example.com"], "profile_id": profile_id, "request": False}
    for name in ("one", "two"):
        headers = {**bearer(make_token(name, ["write"])), "Idempotency-Key": "same"}
        assert api.post("/api/v1/certificates", headers=headers, json=body).status_code == 201
    assert _count(app) == 2
