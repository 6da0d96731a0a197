"""The sign-in form under abuse, against the real app served by waitress: huge bodies and
fields are refused without growing the database; failed sign-ins keep no typed name and are
purged; the throttle slows one (account, address) pair or one address with growing delays and
never locks the admin out from an address that has not failed; forwarded headers count only
behind SSLMANAGER_TRUSTED_PROXIES, and then make cookies Secure and send HSTS."""
from __future__ import annotations

import os
import socket

import pytest
from sqlalchemy import select

from tests.blueprints.test_sessions_live import Clock
from tests.conftest import ADMIN, make_app
from tests.live import Browser, served
from webapp import db
from webapp.models import LoginAttempt
from webapp.services import auth
from webapp.services.auth import create_admin


@pytest.fixture
def clock(monkeypatch):
    moved = Clock()
    monkeypatch.setattr(auth, "now", moved)
    return moved


def _with_admin(app):
    with app.app_context():
        create_admin(*ADMIN)
        db.session().remove()
    return app


@pytest.fixture
def base(app):
    with served(_with_admin(app)) as url:
        yield url


def attempts(app) -> list[LoginAttempt]:
    with app.app_context():
        rows = db.session().scalars(select(LoginAttempt)).all()
        db.session().expunge_all()
        db.session().remove()
        return rows


def database_bytes(app) -> int:
    folder = app.config["SSLMANAGER_INSTANCE_PATH"]
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)
               if name.startswith("sslmanager.db"))


# -- disk ---------------------------------------------------------------------------------------

def test_a_50_mb_username_is_refused_unread_and_the_database_does_not_grow(app, base):
    browser = Browser(base)
    token = browser.token()
    before = database_bytes(app)
    port = int(base.rsplit(":", 1)[1])
    body_start = f"csrf_token={token}&password=x&username=".encode()
    length = len(body_start) + 50 * 1024 * 1024
    cookie = "; ".join(f"{k}={v}" for k, v in browser.cookies.get_dict().items())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
                     f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
                     .encode() + body_start + b"a" * 65536)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"Traceback" not in answer
    assert attempts(app) == [] and database_bytes(app) - before < 64 * 1024


def test_a_body_just_over_the_limit_gets_a_readable_413_page(app, base):
    browser = Browser(base)
    resp = browser.post(base + "/login", data={"csrf_token": browser.token(), "password": "x",
                                               "username": "a" * (1024 * 1024 + 10)})
    assert resp.status_code == 413 and "Request too large" in resp.text
    assert "SSLMANAGER_MAX_CONTENT_LENGTH" in resp.text and attempts(app) == []


def test_a_long_field_under_the_body_limit_is_refused_by_its_cap(app, base):
    browser = Browser(base)
    resp = browser.post(base + "/login", data={"csrf_token": browser.token(), "password": "x",
                                               "username": "a" * 900_000})
    assert resp.status_code == 422 and "“username” holds 900,000 characters; it takes at most 1,000" in resp.text
    assert attempts(app) == []


def test_failed_sign_ins_keep_a_hash_not_the_typed_name_and_old_ones_are_purged(app, base, clock):
    typed = "My-Secret-Password-In-The-Wrong-Field"
    assert Browser(base).login(typed, "wrong-wrong-wrong").status_code == 401
    rows = attempts(app)
    assert len(rows) == 1 and len(rows[0].username) == 64 and typed.lower() not in rows[0].username.lower()
    with app.app_context():
        key = auth.account_key(f"  {typed.upper()} ")
    assert rows[0].username == key  # normalised: case and spaces do not make a new account
    clock.advance(seconds=app.config["SSLMANAGER_LOGIN_WINDOW_SECONDS"] + 1)
    assert Browser(base).login("someone-else", "wrong-wrong-wrong").status_code == 401
    assert [r.username for r in attempts(app)] != [key] and len(attempts(app)) == 1  # the old one is gone


# -- throttle ----------------------------------------------------------------------------------

def test_an_attacker_elsewhere_cannot_lock_the_admin_out(app, base):
    attacker = Browser(base, source="127.0.0.2")
    statuses = [attacker.login(ADMIN[0], "guess-guess-guess").status_code for _ in range(12)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    assert Browser(base).login().status_code == 302  # the admin, from an address that has not failed
    assert attacker.login().status_code == 429  # the attacker's pair waits, right password or not


def test_delays_grow_with_each_failure_and_end_by_themselves(app, base, clock):
    browser = Browser(base, source="127.0.0.3")
    for _ in range(5):
        assert browser.login(ADMIN[0], "guess-guess-guess").status_code == 401
    waits = []
    for _ in range(3):
        blocked = browser.login(ADMIN[0], "guess-guess-guess")
        assert blocked.status_code == 429 and "Wait" in blocked.text
        waits.append(int(blocked.headers["Retry-After"]))
        clock.advance(seconds=waits[-1])
        assert browser.login(ADMIN[0], "guess-guess-guess").status_code == 401  # a try, then longer
    assert waits == [30, 60, 120]
    clock.advance(seconds=240)
    assert browser.login().status_code == 302  # a slow-down, never a lock


def test_one_address_failing_on_many_accounts_is_slowed_others_are_not(app, base):
    app.config["SSLMANAGER_LOGIN_MAX_PER_ADDRESS"] = 4
    sprayer = Browser(base, source="127.0.0.4")
    statuses = [sprayer.login(f"user{i}", "guess-guess-guess").status_code for i in range(6)]
    assert statuses == [401] * 4 + [429] * 2
    assert Browser(base).login().status_code == 302


# -- proxies and HTTPS -------------------------------------------------------------------------

@pytest.fixture
def proxied(tmp_path):
    """An app behind one trusted proxy, with HSTS on."""
    app = _with_admin(make_app(tmp_path, SSLMANAGER_TRUSTED_PROXIES=1, SSLMANAGER_HSTS_SECONDS=31536000))
    with served(app) as url:
        yield app, url


def test_forwarded_headers_are_ignored_without_trusted_proxies(app, base):
    for i in range(5):
        Browser(base).login(ADMIN[0], "guess-guess-guess", **{"X-Forwarded-For": f"203.0.113.{i}"})
    blocked = Browser(base).login(**{"X-Forwarded-For": "203.0.113.99"})
    assert blocked.status_code == 429  # one peer address: the header changed nothing
    plain = Browser(base, source="127.0.0.5").login(**{"X-Forwarded-Proto": "https"})
    assert plain.status_code == 302 and "Secure" not in plain.headers["Set-Cookie"]
    assert "Strict-Transport-Security" not in plain.headers


def test_behind_a_trusted_proxy_each_client_address_counts_on_its_own(proxied):
    app, base = proxied
    for _ in range(6):
        Browser(base).login(ADMIN[0], "guess-guess-guess", **{"X-Forwarded-For": "203.0.113.7"})
    assert {row.address for row in attempts(app)} == {"203.0.113.7"}
    assert Browser(base).login(ADMIN[0], ADMIN[1], **{"X-Forwarded-For": "203.0.113.7"}).status_code == 429
    assert Browser(base).login(**{"X-Forwarded-For": "203.0.113.8"}).status_code == 302
    # A client's own X-Forwarded-For before the proxy's: only the proxy's last entry is believed.
    spoofed = Browser(base).login(**{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    assert spoofed.status_code == 429


def test_behind_a_trusted_tls_proxy_cookies_are_secure_and_hsts_is_sent(proxied):
    _, base = proxied
    resp = Browser(base).login(**{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ssl.example.com"})
    assert resp.status_code == 302 and "Secure" in resp.headers["Set-Cookie"]
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert resp.headers["Location"] in ("/", "https://ssl.example.com/")
    plain = Browser(base).login()
    assert "Secure" not in plain.headers["Set-Cookie"] and "Strict-Transport-Security" not in plain.headers
