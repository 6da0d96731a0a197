"""Item 4: SSLMANAGER_AUTHORIZE allows on exactly True; the host's own denial (Flask-Login's
redirect to its sign-in page, returned or raised) is passed through; anything else is 403."""
from __future__ import annotations

import pytest
from flask import abort, redirect

from webapp.models import AuditEvent

from .conftest import csrf_token, make_host, sign_in


def test_anonymous_users_go_to_the_hosts_sign_in_page_and_back(host):
    client = host.test_client()
    resp = client.get("/panel/ssl/ca/")
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/login?next=")
    resp = client.post(resp.headers["Location"], data={"email": "admin@example.net",
                                                       "csrf_token": csrf_token(client)})
    assert resp.headers["Location"] == "/panel/ssl/ca/"
    assert client.get("/panel/ssl/ca/").status_code == 200


def test_an_htmx_request_from_an_anonymous_user_navigates_to_the_sign_in_page(host):
    resp = host.test_client().get("/panel/ssl/ca/", headers={"HX-Request": "true"})
    assert resp.status_code == 401 and resp.headers["HX-Redirect"].startswith("/login?next=")


def test_a_signed_in_user_who_is_not_an_admin_is_refused(host):
    client = sign_in(host.test_client(), "owner@example.net")
    assert client.get("/panel/ssl/ca/").status_code == 403


@pytest.mark.parametrize("verdict", [1, "yes", ["admin"], object()])
def test_only_true_allows_never_a_truthy_value(tmp_path, verdict):
    host = make_host(tmp_path, SSLMANAGER_AUTHORIZE=lambda: verdict)
    assert host.test_client().get("/panel/ssl/ca/").status_code == 403


def test_a_raised_response_is_the_answer(tmp_path):
    def hook():
        abort(redirect("/somewhere-else"))
    host = make_host(tmp_path, SSLMANAGER_AUTHORIZE=hook)
    resp = host.test_client().get("/panel/ssl/ca/")
    assert resp.status_code == 302 and resp.headers["Location"] == "/somewhere-else"


def test_the_audit_log_names_the_hosts_user(host):
    client = sign_in(host.test_client())
    token = csrf_token(client, "/panel/ssl/ca/new")
    assert client.post("/panel/ssl/ca/new", data={"name": "LE", "module": "letsencrypt", "csrf_token": token}
                       ).status_code == 302
    with host.app_context():
        from webapp import db
        assert {e.actor for e in db.session().query(AuditEvent)} == {"admin@example.net"}
