"""Every form, fuzzed with Hypothesis: whatever is typed, the answer is a saved redirect or the
form again with errors (never a 500), and a refused save leaves the stored rows exactly as they
were. Fields that make the app open a connection get only addresses that answer at once (the
lab BIND, a closed loopback TCP port) or malformed ones, so no example waits on a timeout."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import MetaData

from tests.conftest import ADMIN, add_lab_zone
from tests.faults.conftest import signed_in
from tests.lab.http import closed_port
from tests.lab.servers import LAB_EAB_KEYS, TSIG_SECRET
from webapp import db
from webapp.blueprints import FIELD_MAX
from webapp.services import ca_profiles

# SSLM_FUZZ_EXAMPLES=1000 for a deeper search than the routine run.
EXAMPLES = int(os.environ.get("SSLM_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SECRET_TYPED = "typed-secret-" + "Q" * 20  # a write-only value must never be rendered back

JUNK = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
    st.sampled_from(["", " ", "0", "-1", "1e3", "NaN", "99999999999999999999999", "\x00", "\u202e",
                     "<script>alert(1)</script>", "' OR 1=1 --", "{{ 7*7 }}", "%s%s%n", "é" * 300,
                     "a" * 70_000]),
)


def field(*good: str):
    """A field's strategy: one of the given values, or anything at all."""
    return st.one_of(st.sampled_from(good), JUNK) if good else JUNK


def choice(*values: str):
    return st.sampled_from(values)


@pytest.fixture
def fuzz_site(app, lab_bind, lab_pebble):
    """A signed-in admin, the lab zone, and a complete custom profile (not contacted: no test)."""
    with app.app_context():
        add_lab_zone(lab_bind)
        profile = ca_profiles.create({"name": "Lab", "module": "custom"})
        ca_profiles.update(profile, {"name": "Lab", "directory_url": lab_pebble.directory_url,
                                     "ca_bundle": Path(lab_pebble.ca_bundle).read_text(),
                                     "email": "ops@example.com", "dns_zone": "acme.tech.test",
                                     "dns_ttl": "60", "api_timeout": "10", "eab_kid": "kid-1",
                                     "eab_hmac": LAB_EAB_KEYS["kid-1"]})
        pid = profile.id
    return app, signed_in(app), pid


def rows(app, *tables: str) -> dict[str, list[tuple]]:
    with app.app_context():
        engine = app.extensions["sslmanager"].engine
        meta = MetaData()
        meta.reflect(engine, only=list(tables))
        with engine.connect() as conn:
            return {name: sorted(map(tuple, conn.execute(t.select())), key=repr) for name, t in meta.tables.items()}


def post(client, path: str, form: dict):
    resp = client.post(path, data=form)
    body = resp.get_data(as_text=True)
    assert resp.status_code in (302, 422), (resp.status_code, form, body[:500])
    return resp, body


def post_refused_changes_nothing(app, client, path: str, form: dict, *tables: str) -> str:
    """post(), and when the form is refused (422) the rows of `tables` are as they were.
    Returns the body, for the caller's own checks."""
    before = rows(app, *tables)
    resp, body = post(client, path, form)
    if resp.status_code == 422:
        assert rows(app, *tables) == before, form
    return body


def test_ca_profile_edit_never_fails_and_a_refused_save_changes_nothing(fuzz_site):
    app, client, pid = fuzz_site
    pem = Path(app.config["SSLMANAGER_INSTANCE_PATH"]).parent  # any path: not a PEM
    url = st.sampled_from([
        "https://127.0.0.1:14000/dir", "https://[::1]:14000/dir", "https://10.0.0.1/dir",
        "http://127.0.0.1/dir", "https://169.254.169.254/latest/meta-data/", "https://[fe80::1]/dir",
        "https://[::ffff:169.254.169.254]/dir", "https://2852039166/dir", "https://127.0.0.1:99999/dir",
        "ftp://127.0.0.1/dir", "https:///dir", "https://[::1/dir", str(pem)])
    form = st.fixed_dictionaries({}, optional={
        "name": field("Lab", "Lab edited", "x" * 101), "description": field("the lab CA"),
        "directory_url": st.one_of(url, JUNK), "ca_bundle": field("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"),
        "email": field("ops@example.com", "not-an-email", "a@b", "ops@example.com\r\nBcc: x@y.z"),
        "eab_kid": field("kid-1", "kid-2"), "eab_hmac": field(LAB_EAB_KEYS["kid-2"], "not base64url!", SECRET_TYPED),
        "eab_clear": choice("", "1", "on"), "api_key": field(SECRET_TYPED), "api_key_clear": choice("", "1"),
        "dns_zone": field("acme.tech.test", "ACME.TECH.TEST.", "-bad-.test", "*.tech.test", "test"),
        "allow_wildcard": choice("", "1", "on"), "dns_ttl": field("30", "9", "86401", "60.5"),
        "api_timeout": field("10", "1", "301", "2"), "ca_key": field("", "production"),
        "action": choice("save", "", "bogus"),
    })

    @FUZZ
    @given(form)
    @example({"directory_url": "https://[::1/dir"})  # urlsplit raises on an unclosed "["
    def edit(values):
        body = post_refused_changes_nothing(app, client, f"/ca/{pid}/edit", values, "sslm_ca_profile")
        assert SECRET_TYPED not in body and LAB_EAB_KEYS["kid-1"] not in body
    edit()


def test_ca_profile_create_never_fails_and_a_refused_one_adds_nothing(fuzz_site):
    app, client, _pid = fuzz_site
    post(client, "/ca/new", {"name": "Ê", "module": "custom"})  # SQLite's lower() leaves "Ê" alone

    @FUZZ
    @given(st.fixed_dictionaries({}, optional={"name": field("New CA", "lab", "LAB", "x" * 101, "Ê", "ê"),
                                               "module": field("custom", "letsencrypt", "zerossl", "../custom")}))
    @example({"name": "Ê", "module": "custom"})  # the same name again
    def create(values):
        post_refused_changes_nothing(app, client, "/ca/new", values, "sslm_ca_profile", "sslm_audit_event")
    create()


def test_certificate_create_never_fails_and_a_refused_one_adds_nothing(fuzz_site):
    app, client, pid = fuzz_site
    form = st.fixed_dictionaries({}, optional={
        "domains": field("shop.customer.test", "*.customer.test customer.test", "bücher.customer.test",
                         "a..customer.test", "-x.customer.test", "1.2.3.4", "localhost", "x" * 300 + ".test",
                         "*.*.customer.test", "shop.customer.test," * 200),
        "profile_id": field(str(pid), "0", "999", "-1", "1e3"),
        "key_type": field("ec-p256", "ec-p384", "rsa-2048", "bogus"),
        "auto_renew": choice("", "1"), "reuse_key": choice("", "1"),
        "acme_profile": field("", "shortlived"), "action": choice("draft", "request", "", "bogus"),
    })

    @FUZZ
    @given(form)
    def create(values):
        post_refused_changes_nothing(app, client, "/certificates/new", values,
                                     "sslm_certificate", "sslm_cname_label", "sslm_timeline_event")
    create()


def test_zone_add_never_fails_and_a_refused_one_adds_nothing(fuzz_site, lab_bind):
    app, client, _pid = fuzz_site
    bind = f"127.0.0.1:{lab_bind.port}"
    address = choice(bind, "", "127.0.0.1:0", "127.0.0.1:65536", "[::1", "[::1]x", "300.1.1.1:53:1", "a b:53")
    form = st.fixed_dictionaries({}, optional={
        "name": field("acme2.tech.test", "acme.tech.test", "customer.test", "-bad.test", "x", "*.tech.test"),
        "provider": field("rfc2136", "builtin", "powerdns", "nope"),
        "server": address, "listen": address, "dns_server": address,
        "api_url": choice(f"http://127.0.0.1:{closed_port()}", "", "not a url", "ftp://127.0.0.1/", "http://[::1"),
        "tsig_key_name": field("acme-key", "bad key!"), "tsig_secret": field(TSIG_SECRET, "not base64", SECRET_TYPED),
        "tsig_algorithm": field("hmac-sha256", "hmac-md5", "rot13"), "api_key": field(SECRET_TYPED),
        "server_id": field("localhost"), "nameservers": field("ns1.acme2.tech.test"),
        "hostmaster": field("hostmaster.acme2.tech.test"), "addresses": field("ns1.acme2.tech.test=127.0.0.1"),
        "negative_ttl": field("60", "-5"), "customer": choice("", "1"),
    })

    @FUZZ
    @given(form)
    @example({"name": "acme2.tech.test", "provider": "powerdns", "api_url": "http://[::1", "api_key": "k"})
    def add(values):
        body = post_refused_changes_nothing(app, client, "/dns/zones/new", values,
                                            "sslm_tech_zone", "sslm_audit_event")
        # A secret typed in this very request may come back in its own password field (so it
        # need not be typed again after an error elsewhere), and nowhere else.
        body = re.sub(r'(<input id="f-(tsig_secret|api_key)" name="\2" type="password" value=")[^"]*"', r'\1"', body)
        assert SECRET_TYPED not in body and TSIG_SECRET not in body
    add()


def test_notification_channel_forms_never_fail_and_a_refused_save_adds_nothing(fuzz_site):
    app, client, pid = fuzz_site
    post(client, "/notifications/new/webhook", {"name": "Ê", "url": "https://127.0.0.1:1/hook", "secret": "s" * 24})
    digits = ("587", "0", "65536", "²", "١٢٣", str(2 ** 63))  # "²".isdigit() is True, int("²") fails
    form = st.fixed_dictionaries({"kind": choice("email", "webhook")}, optional={
        "name": field("Ops", "Ê", "ê", "x" * 101), "enabled": choice("", "1"),
        "profile_id": field(str(pid), "", *digits), "events": field("issued", "renewal-failed", "nope"),
        "host": field("smtp.example.com", "127.0.0.1", "smtp.example.com:25", "http://x"),
        "port": field(*digits), "security": field("starttls", "tls", "none", "rot13"),
        "username": field("mailer"), "secret": field(SECRET_TYPED, "short"), "secret_clear": choice("", "1"),
        "from_addr": field("sslmanager@example.com", "nope"), "to": field("ops@example.com, b@example.com", "x"),
        "ca_bundle": field("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"),
        "url": choice("https://127.0.0.1:1/hook", "https://[::1/hook", "http://[::1", "https://169.254.169.254/",
                      "ftp://127.0.0.1/", "", "https://[::ffff:169.254.169.254]/hook"),
    })

    @FUZZ
    @given(form)
    @example({"kind": "webhook", "name": "Ê", "url": "https://127.0.0.1:1/hook", "secret": "s" * 24})
    @example({"kind": "webhook", "name": "u", "url": "http://[::1", "secret": "s" * 24})
    @example({"kind": "webhook", "name": "p", "url": "https://127.0.0.1:1/hook", "secret": "s" * 24,
              "profile_id": str(2 ** 63)})
    @example({"kind": "email", "name": "e", "host": "127.0.0.1", "port": "²", "security": "none",
              "from_addr": "sslmanager@example.com", "to": "ops@example.com"})
    @example({"kind": "email", "name": "c", "ca_bundle": "\x80"})  # ssl's cadata takes ASCII only
    def new(values):
        kind = values.pop("kind")
        body = post_refused_changes_nothing(app, client, f"/notifications/new/{kind}", values,
                                            "sslm_notification_channel", "sslm_audit_event")
        assert SECRET_TYPED not in body
    new()


def test_notification_options_never_fail_and_a_refused_save_changes_nothing(fuzz_site):
    app, client, _pid = fuzz_site
    form = st.fixed_dictionaries({}, optional={"expiry_days": field("30, 14, 7, 1", "0", "366", "²", "7²"),
                                               "webhook_allowlist": field("hooks.example.com", "*.example.com",
                                                                          "bad host!")})

    @FUZZ
    @given(form)
    @example({"expiry_days": "²"})
    def options(values):
        post_refused_changes_nothing(app, client, "/notifications/options", values,
                                     "sslm_setting", "sslm_audit_event")
    options()


def browser_target(location: str) -> str:
    """Where a browser goes for a Location header: it drops tabs and newlines and reads "\\"
    as "/" (so "/\\evil.example" is "//evil.example", another site)."""
    controls_and_space = "".join(map(chr, range(0x21)))
    return location.strip(controls_and_space).replace("\\", "/").translate({9: None, 10: None, 13: None})


def test_login_never_fails_and_only_the_right_password_signs_in_and_stays_on_site(app):
    signed_in(app)  # makes the admin
    form = st.fixed_dictionaries({}, optional={"username": field(ADMIN[0], ADMIN[0].upper(), " admin "),
                                               "password": field(ADMIN[1], ADMIN[1] + " ")})
    targets = st.one_of(st.none(), JUNK, choice(
        "/", "/ca/", "//evil.example/", "/\\evil.example/", "/\t/evil.example", "/\t/[::1", "///evil.example",
        "https://evil.example/", "javascript:alert(1)", "/%2F%2Fevil.example", " /ca/"))

    @settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))  # each sign-in costs an Argon2 hash
    @given(form, targets)
    @example({"username": ADMIN[0], "password": ADMIN[1]}, "/\\evil.example/")  # a backslash is a slash
    @example({"username": ADMIN[0], "password": ADMIN[1]}, "/\t/[::1")  # urlsplit raises on it
    def login(values, target):
        client = app.test_client()
        client.fetch_token()
        resp = client.post("/login", data=values, query_string={"next": target} if target is not None else None)
        too_long = any(len(v) > FIELD_MAX for v in values.values())  # the field cap answers first
        assert resp.status_code in ((422,) if too_long else (302, 401, 429)), (resp.status_code, len(str(values)))
        right = values.get("username", "").strip() == ADMIN[0] and values.get("password") == ADMIN[1]
        if resp.status_code == 302:
            assert right, values
            went = browser_target(resp.headers["Location"])
            assert went.startswith("/") and not went.startswith("//"), (target, resp.headers["Location"])
            assert client.get("/").status_code == 200
        else:
            assert client.get("/").status_code == 302  # still signed out
    login()
    with app.app_context():
        db.session().remove()
