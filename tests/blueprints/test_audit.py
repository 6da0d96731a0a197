"""The audit log page: who did what and when, newest first, filtered by action, actor, object
type and text, paginated on the server; never a secret."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from tests.lab.servers import TECH_ZONE
from webapp import db
from webapp.models import AuditEvent, utcnow
from webapp.services import audit, ca_profiles, certificates

HX_ROWS = {"HX-Request": "true", "HX-Target": "audit-rows"}


def text(resp) -> str:
    assert resp.status_code == 200, resp.status_code
    return resp.get_data(as_text=True)


def event_ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr id="event-(\d+)"', html)]


def seed(app, rows):
    """Audit events inserted directly: (actor, action, object_type, object_id, summary)."""
    now = utcnow()
    with app.app_context():
        db.session().execute(insert(AuditEvent), [
            {"actor": a, "action": act, "object_type": t, "object_id": str(oid), "summary": s,
             "at": now - timedelta(minutes=len(rows) - i)} for i, (a, act, t, oid, s) in enumerate(rows)])
        db.session().commit()
        return [e.id for e in db.session().scalars(select(AuditEvent).order_by(AuditEvent.id))]


def test_the_log_lists_who_did_what_and_when_newest_first(admin_client, app):
    html = text(admin_client.get("/audit/"))
    assert 'aria-current="page">Audit log</a>' in html
    # Signing in is itself recorded, by the admin who did it.
    first = re.search(r'<tr id="event-\d+">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "admin" in first and "signed in" in first and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first)
    ids = seed(app, [("alice", "CA profile created", "ca_profile", 9, "A"), ("bob", "certificate created",
                                                                             "certificate", 7, "B")])
    assert event_ids(text(admin_client.get("/audit/")))[:2] == [ids[-1], ids[-2]]


@pytest.mark.parametrize("query, expected", [
    ("action=certificate+created", {"b1", "b2"}),
    ("actor=carol", {"c1"}),
    ("object_type=ca_profile", {"a1", "c1"}),
    ("q=SHOP.example", {"b2"}),                     # text, case-insensitive, in the summary
    ("q=100%25", {"a1"}),                           # a literal percent sign, not a wildcard
    ("actor=alice&object_type=certificate", {"b1"}),
])
def test_filters_narrow_the_log_on_the_server(admin_client, app, query, expected):
    seed(app, [("alice", "CA profile edited", "ca_profile", 1, "a1: ttl 100%"),
               ("alice", "certificate created", "certificate", 2, "b1: www.example.com"),
               ("bob", "certificate created", "certificate", 3, "b2: shop.example.com"),
               ("carol", "CA profile tested", "ca_profile", 1, "c1: API is available")])
    html = text(admin_client.get(f"/audit/?{query}"))
    shown = set(re.findall(r"\b([abc][12]):", html))
    assert shown == expected


def test_filter_menus_offer_what_the_log_holds(admin_client, app):
    seed(app, [("alice", "certificate revoked", "certificate", 1, "x")])
    html = text(admin_client.get("/audit/"))
    for option in ("certificate revoked", "alice", ">Certificate<"):
        assert option in html


def test_pages_come_from_the_server_and_htmx_gets_rows_and_pager(admin_client, app):
    app.config["SSLMANAGER_PAGE_SIZE"] = 5
    seed(app, [("bot", "tick", "", "", f"n{i}") for i in range(11)])  # + the sign-in event = 12
    first = text(admin_client.get("/audit/"))
    assert len(event_ids(first)) == 5 and "1–5 of 12 events" in first and 'rel="next"' in first
    last = admin_client.get("/audit/?page=3", headers=HX_ROWS)
    html = text(last)
    assert html.lstrip().startswith('<tbody id="audit-rows">') and 'hx-swap-oob="true"' in html
    assert len(event_ids(html)) == 2 and "11–12 of 12 events" in html and "<h1>" not in html
    filtered = text(admin_client.get("/audit/?actor=bot&page=2"))
    assert "6–10 of 11 events" in filtered
    assert 'href="/audit/?page=3&amp;actor=bot"' in filtered  # the pager keeps the filter
    past_end = text(admin_client.get("/audit/?page=99"))
    assert "11–12 of 12 events" in past_end


def test_a_profile_edit_with_an_eab_hmac_never_shows_the_secret(admin_client, app):
    secret = "c2VjcmV0LWhtYWMta2V5LXRoYXQtbXVzdC1uZXZlci1sZWFr"
    resp = admin_client.post("/ca/new", data={"name": "ZeroSSL", "module": "zerossl"})
    pid = int(re.search(r"/ca/(\d+)/edit", resp.headers["Location"]).group(1))
    resp = admin_client.post(f"/ca/{pid}/edit", data={
        "name": "ZeroSSL", "email": "it@company.test", "dns_zone": TECH_ZONE, "dns_ttl": "60",
        "api_timeout": "20", "eab_kid": "kid-123", "eab_hmac": secret, "api_key": "APIKEY-SECRET-42",
        "action": "save"})
    assert resp.status_code == 302
    html = text(admin_client.get("/audit/"))
    assert "CA profile edited" in html and "eab_hmac" in html  # the field name, not its value
    assert secret not in html and "APIKEY-SECRET-42" not in html
    for query in ("q=" + secret[:12], "action=CA+profile+edited", "object_type=ca_profile"):
        assert secret not in text(admin_client.get(f"/audit/?{query}"))
    with app.app_context():
        for e in db.session().scalars(select(AuditEvent)):
            assert secret not in e.summary and "APIKEY-SECRET-42" not in e.summary


def test_objects_link_to_their_page_while_they_exist(admin_client, app):
    with app.app_context():
        pid = ca_profiles.create({"name": "LE", "module": "letsencrypt", "email": "ops@example.com",
                                  "dns_zone": TECH_ZONE}, complete=True).id
        kept = certificates.create({"profile_id": pid, "domains": "kept.customer.test"}).id
        gone = certificates.create({"profile_id": pid, "domains": "gone.customer.test"})
        gone_id = gone.id
        certificates.delete(gone)
    html = text(admin_client.get("/audit/"))
    assert f'<a href="/certificates/{kept}">Certificate #{kept}</a>' in html
    assert f'<a href="/ca/{pid}/edit">CA profile #{pid}</a>' in html
    assert f'href="/certificates/{gone_id}"' not in html and f"Certificate #{gone_id}" in html


def test_the_search_is_one_query_per_page_with_many_events(app):
    seed(app, [("bot", "tick", "certificate", i, f"event {i}") for i in range(3000)])
    with app.app_context():
        rows, total = audit.search(query="event 29", per_page=50)
    assert total == 111 and len(rows) == 50  # "event 29" and "event 290".."event 2999"


@pytest.mark.lab
def test_text_search_ignores_case_on_postgresql_too(tmp_path, pg_database):
    from tests.conftest import make_app
    app = make_app(tmp_path, SSLMANAGER_DATABASE_URL=pg_database)
    try:
        seed(app, [("alice", "certificate created", "certificate", 1, "Shop.Example.com")])
        with app.app_context():
            assert audit.search(query="shop.EXAMPLE")[1] == 1
            assert audit.search(actor="alice", action="certificate created")[1] == 1
            assert audit.choices()["actors"] == ["alice"]
    finally:
        with app.app_context():
            db.session().remove()
            app.extensions["sslmanager"].engine.dispose()


@pytest.mark.parametrize("page", ["4611686018427387904", "9" * 5000, str(2 ** 63), "-1", "²", "x"])
def test_any_page_number_shows_a_page_never_a_crash(app, admin_client, page):
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production: a crash is a 500 page
    with app.app_context():
        audit.record("seeded", summary="one event")
        db.session().commit()
    for path in ("/audit/", "/certificates/"):
        resp = admin_client.get(path, query_string={"page": page})
        assert resp.status_code == 200, (path, page)
    assert "one event" in admin_client.get("/audit/", query_string={"page": page}).get_data(as_text=True)
