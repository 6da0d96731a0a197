"""The web layer under attack: every state-changing endpoint refuses a request without (or with
a forged) CSRF token and changes nothing; every page carries a Content-Security-Policy whose
scripts are 'self' only, and no page relies on inline script the policy would block."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import MetaData, select

from tests.faults.conftest import PROFILE, new_cert, signed_in
from webapp import db
from webapp.models import NotificationChannel, TechZone
from webapp.services import ca_profiles, certificates, pipeline

ARG = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")


@pytest.fixture
def site(proxied_app, lab_bind, cnames):
    """The lab app with one of everything: a profile, a zone, an Active and a Pending
    certificate, a notification channel; and a signed-in admin client."""
    app = proxied_app
    app.config["SSLMANAGER_DNS_NS_PORT"] = lab_bind.port  # delegation checks ask the lab BIND
    with app.app_context():
        active = new_cert("web.customer.test")
        cnames(active)
        assert pipeline.process(active.id) == "active", certificates.get(active.id).last_error
        pending = new_cert("web-pending.other.test").id
        db.session().add(NotificationChannel(name="Hook", kind="webhook", enabled=False, events=[],
                                             settings={"url": "https://hooks.example.com/x"},
                                             secret="webhook-signing-secret-0123"))
        db.session().commit()
        ids = {"profile_id": ca_profiles.by_name(PROFILE).id, "cert_id": active.id,
               "zone_id": db.session().scalars(select(TechZone.id)).first(),
               "channel_id": db.session().scalars(select(NotificationChannel.id)).first()}
    client = signed_in(app)
    return app, client, ids, pending


def urls(app, method: str, ids: dict[str, int]) -> list[str]:
    """Every route of `method` of the pages, with its arguments filled from `ids` (and each
    value of the few string arguments). The JSON API is not here: bearer tokens, no CSRF and no
    pages by design (tests/api/: a session cookie gets 401 there; schemathesis fuzzes it from
    its OpenAPI document)."""
    choices = {"token_id": ["1"], **{k: [str(v)] for k, v in ids.items()},
               "filename": ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem", "app.css"],
               "kind": ["email", "webhook"]}
    out = []
    for rule in app.url_map.iter_rules():
        if method not in rule.methods or rule.endpoint.startswith("sslmanager_api."):
            continue
        paths = [rule.rule]
        for name in ARG.findall(rule.rule):
            values = choices[name]
            if rule.endpoint == "sslmanager.static":
                values = ["app.css"]
            elif name == "filename":
                values = values[:4]
            paths = [ARG.sub(v, p, count=1) for p in paths for v in values]
        out += paths
    return sorted(set(out))


def database_content(app) -> dict[str, list[tuple]]:
    with app.app_context():
        engine = app.extensions["sslmanager"].engine
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {name: sorted(map(tuple, conn.execute(table.select())), key=repr)
                    for name, table in meta.tables.items()}


def test_every_post_endpoint_refuses_a_missing_or_forged_csrf_token_and_changes_nothing(site):
    app, client, ids, _pending = site
    posts = urls(app, "POST", ids)
    assert {"/ca/new", "/certificates/new", "/dns/zones/new", "/dns/sweep", "/login", "/logout"} <= set(posts)
    form = {"name": "CSRF", "module": "custom", "domains": "csrf.customer.test", "profile_id": str(ids["profile_id"]),
            "provider": "rfc2136", "username": "admin", "password": "x", "confirm": "web.customer.test",
            "reason": "1", "password2": "x"}
    before = database_content(app)
    refused = {}
    for path in posts:
        for headers in ({}, {"X-CSRFToken": "forged-" + "a" * 40}):
            resp = client.post(path, data=form, headers=headers, no_csrf=True)
            refused[(path, bool(headers))] = resp.status_code
            assert resp.status_code == 400 and "CSRF" in resp.get_data(as_text=True), (path, resp.status_code)
    anonymous = app.test_client()
    assert anonymous.post("/login", data={"username": "admin", "password": "x"}).status_code == 400
    assert database_content(app) == before
    assert client.get("/").status_code == 200  # the refused /logout did not sign the admin out
    # With the token the same request goes through: the 400s above were the token, nothing else.
    assert client.post("/dns/sweep").status_code == 302


def script_sources(csp: str) -> str:
    directives = {}
    for part in csp.split(";"):
        words = part.split()
        if words:
            directives.setdefault(words[0].lower(), " ".join(words[1:]))
    return directives.get("script-src", directives.get("default-src", "*"))


def test_every_page_has_a_csp_without_unsafe_inline_scripts_and_no_inline_script(site):
    app, client, ids, pending = site
    pages = urls(app, "GET", ids) + [f"/certificates/{pending}", f"/dns/preflight/{pending}",
                                     "/no-such-page", "/certificates/999999"]
    checked = {}
    for path in pages:
        for headers in ({}, {"HX-Request": "true"}):
            with client.get(path, headers=headers) as resp:  # files are streamed: close them
                body = resp.get_data(as_text=True)
            checked[path] = resp.status_code
            csp = resp.headers.get("Content-Security-Policy", "")
            scripts = script_sources(csp)
            assert csp and "'unsafe-inline'" not in scripts and "*" not in scripts.split(), (path, csp)
            assert resp.headers.get("X-Frame-Options") == "DENY" and "frame-ancestors 'none'" in csp, path
            if resp.mimetype == "text/html":
                html = body
                inline = [tag for tag in re.findall(r"<script\b[^>]*>", html, re.IGNORECASE) if "src=" not in tag]
                handlers = re.findall(r"<[^>]+\s(on[a-z]+)\s*=", html, re.IGNORECASE)
                assert not inline and not handlers, (path, inline, handlers)
                assert "javascript:" not in html.lower(), path
    assert len(checked) > 25 and 500 not in checked.values(), checked
    signed_out = app.test_client().get("/login")  # the one page anyone may see
    assert "'unsafe-inline'" not in script_sources(signed_out.headers["Content-Security-Policy"])


def test_an_id_or_page_number_too_large_for_the_database_is_not_found_not_a_crash(site):
    app, client, ids, _pending = site
    app.config["PROPAGATE_EXCEPTIONS"] = False  # answer as in production: a crash is a 500 page
    huge = 2 ** 63  # one past SQLite's and PostgreSQL's BIGINT
    answers = {path: client.get(path).status_code for path in urls(app, "GET", dict.fromkeys(ids, huge))
               if str(huge) in path}
    answers.update({path: client.post(path).status_code for path in urls(app, "POST", dict.fromkeys(ids, huge))
                    if str(huge) in path})
    assert answers and set(answers.values()) == {404}, answers
    for path in (f"/certificates/?page={huge}", f"/certificates/acme-profiles?profile_id={huge}"):
        assert client.get(path).status_code == 200, path
    form = {"domains": "huge.customer.test", "profile_id": str(huge), "key_type": "ec-p256", "action": "draft"}
    resp = client.post("/certificates/new", data=form)
    assert resp.status_code == 422 and "Choose a CA profile" in resp.get_data(as_text=True)
