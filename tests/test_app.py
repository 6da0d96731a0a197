"""The app factory, health check, security headers and configuration."""
from __future__ import annotations

import os

import pytest

from tests.conftest import make_app, signed_in
from webapp import create_app
from webapp.errors import ConfigError


def test_healthz_answers_without_signing_in_with_the_status_only(client):
    resp = client.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}  # no version, no scheduler state for anyone


def test_healthz_details_need_a_sign_in_or_the_setting(app, client):
    body = signed_in(app).get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["version"]
    assert body["scheduler"] == "not running"
    app.config["SSLMANAGER_HEALTHZ_DETAILS"] = True
    assert client.get("/healthz").get_json()["version"] == body["version"]


def test_html_pages_are_not_stored_by_caches(app, client):
    admin = signed_in(app)
    for path in ("/", "/certificates/", "/audit/", "/notifications/", "/login"):
        resp = admin.get(path) if path != "/login" else client.get(path)
        assert resp.mimetype == "text/html" and resp.headers["Cache-Control"] == "no-store", path


def test_pages_require_a_signed_in_admin(client):
    resp = client.get("/")
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]


def test_htmx_requests_are_redirected_to_login_by_header(client):
    resp = client.get("/", headers={"HX-Request": "true"})
    assert resp.status_code == 401 and "/login" in resp.headers["HX-Redirect"]


def test_every_response_carries_security_headers(client):
    for path in ("/login", "/healthz", "/static/app.css", "/no-such-page"):
        with client.get(path) as resp:
            headers = resp.headers
        csp = headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"]


def test_vendored_front_end_files_are_served_by_the_app(client):
    for name in ("htmx.min.js", "pico.min.css"):
        with client.get(f"/static/vendor/{name}") as resp:
            assert resp.status_code == 200


def test_unmigrated_database_names_the_command(tmp_path):
    app = create_app({"SSLMANAGER_INSTANCE_PATH": str(tmp_path / "i")})
    resp = app.test_client().get("/login")
    assert resp.status_code == 503
    assert "sslmanager db upgrade" in resp.get_data(as_text=True)


def test_encryption_key_is_generated_once_with_mode_0600(tmp_path):
    make_app(tmp_path)
    path = tmp_path / "instance" / "encryption.key"
    first = path.read_text()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    make_app(tmp_path)
    assert path.read_text() == first


def test_missing_key_with_existing_data_refuses_to_start_and_writes_no_new_key(tmp_path):
    make_app(tmp_path)
    key = tmp_path / "instance" / "encryption.key"
    key.unlink()
    with pytest.raises(ConfigError, match="encryption key is missing") as info:
        create_app({"SSLMANAGER_INSTANCE_PATH": str(tmp_path / "instance")})
    assert "Restore" in info.value.hint
    assert not key.exists()


def test_unreadable_key_refuses_to_start_with_advice(tmp_path):
    make_app(tmp_path)
    key = tmp_path / "instance" / "encryption.key"
    key.write_text("not a key")
    with pytest.raises(ConfigError, match="not valid"):
        create_app({"SSLMANAGER_INSTANCE_PATH": str(tmp_path / "instance")})
    assert key.read_text() == "not a key"  # never overwritten


def test_config_comes_from_instance_file_then_environment(tmp_path, monkeypatch):
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text("SSLMANAGER_PAGE_SIZE = 7\nSSLMANAGER_LOGIN_MAX_PER_ACCOUNT = 3\n")
    monkeypatch.setenv("SSLMANAGER_PAGE_SIZE", "9")
    monkeypatch.setenv("SSLMANAGER_DNS_RESOLVERS", "127.0.0.1:5354, 127.0.0.2")
    app = create_app({"SSLMANAGER_INSTANCE_PATH": str(instance)})
    assert app.config["SSLMANAGER_PAGE_SIZE"] == 9
    assert app.config["SSLMANAGER_LOGIN_MAX_PER_ACCOUNT"] == 3
    assert app.config["SSLMANAGER_DNS_RESOLVERS"] == ["127.0.0.1:5354", "127.0.0.2"]


def test_instance_path_can_be_moved_by_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLMANAGER_INSTANCE_PATH", str(tmp_path / "elsewhere"))
    app = create_app()
    assert app.config["SSLMANAGER_INSTANCE_PATH"] == str(tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "encryption.key").exists()


def test_every_config_key_carries_the_prefix():
    from webapp.config import DEFAULTS
    assert all(key.startswith("SSLMANAGER_") for key in DEFAULTS)


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(app):
    with app.app_context():
        with app.extensions["sslmanager"].engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
