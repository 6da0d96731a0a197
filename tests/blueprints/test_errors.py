"""Error pages: 404 and 500 in the app's layout and navigation (issue 17, item 8), never
Werkzeug's bare "Internal Server Error"; a CSRF refusal says so to app.js's htmx handler."""
from __future__ import annotations

import re

from webapp.blueprints import dashboard

NAV = 'aria-label="SSL Manager"'


def test_a_404_for_a_deleted_object_and_for_an_unknown_address_has_the_layout(admin_client):
    for path in ("/ca/999/edit", "/certificates/424242", "/no/such/page"):
        resp = admin_client.get(path)
        html = resp.get_data(as_text=True)
        assert resp.status_code == 404, path
        assert "<h1>Page not found</h1>" in html and NAV in html and "Sign out" in html, path
        assert "Content-Security-Policy" in resp.headers


def test_a_404_for_a_stranger_has_no_navigation(client):
    resp = client.get("/no/such/page")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 404
    assert "<h1>Page not found</h1>" in html and NAV not in html


def test_an_unexpected_error_is_a_500_page_in_the_layout(app, admin_client, monkeypatch):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # TESTING re-raises; a served app does not

    def broken(_now):
        raise RuntimeError("boom")
    monkeypatch.setattr(dashboard.service, "overview", broken)
    resp = admin_client.get("/")
    html = resp.get_data(as_text=True)
    assert resp.status_code == 500
    assert "<h1>Something went wrong</h1>" in html and NAV in html
    assert "boom" not in html and "Internal Server Error" not in html
    # the other pages still work after it
    assert admin_client.get("/audit/").status_code == 200


def test_a_csrf_refusal_is_marked_for_the_htmx_handler(admin_client):
    resp = admin_client.post("/ca/new", data={"name": "x"}, headers={"X-CSRFToken": "stale"})
    assert resp.status_code == 400
    assert resp.headers["X-SSLManager-Refused"] == "csrf"
    assert re.search(r"security token", resp.get_data(as_text=True))
