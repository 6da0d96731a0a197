"""The `sslmanager` console script: create-admin, db upgrade, --help everywhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from webapp import db
from webapp.models import Admin


def test_create_admin_reads_the_password_from_stdin_and_hashes_it(runner, app):
    result = runner.invoke(args=["sslmanager", "create-admin", "alice", "--password-stdin"],
                           input="a long enough password\n")
    assert result.exit_code == 0, result.output
    with app.app_context():
        admin = db.session().query(Admin).one()
        assert admin.password_hash.startswith("$argon2id$")


def test_create_admin_refuses_a_short_password(runner):
    result = runner.invoke(args=["sslmanager", "create-admin", "alice", "--password-stdin"], input="short\n")
    assert result.exit_code == 1 and "password:" in result.output


def _sslmanager(tmp_path, *args, input=None):
    env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "inst")}
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "sslmanager"), *args],
                          capture_output=True, text=True, env=env, input=input, timeout=60)


def test_console_script_upgrades_a_fresh_database_and_explains_every_command(tmp_path):
    out = _sslmanager(tmp_path, "db", "upgrade")
    assert out.returncode == 0 and "Database at revision" in out.stdout, out.stderr
    for command in (["--help"], ["run", "--help"], ["create-admin", "--help"], ["db", "upgrade", "--help"],
                    ["rotate-encryption-key", "--help"], ["ca", "add", "--help"], ["ca", "test", "--help"]):
        result = _sslmanager(tmp_path, *command)
        assert result.returncode == 0 and "Usage:" in result.stdout, command


def test_console_script_prints_a_clear_error_for_a_bad_key(tmp_path):
    _sslmanager(tmp_path, "db", "upgrade")
    (tmp_path / "inst" / "encryption.key").write_text("garbage")
    out = _sslmanager(tmp_path, "ca", "list")
    assert out.returncode == 1 and "not valid" in out.stderr and "Traceback" not in out.stderr


def test_run_serves_the_pages_that_one_shot_commands_skip(tmp_path):
    # Commands build the app without its pages (start-up time); `run` must add them back.
    import socket
    import time
    import urllib.request

    from webapp import create_app
    app = create_app({"SSLMANAGER_INSTANCE_PATH": str(tmp_path / "bare")}, web=False)
    assert "sslmanager" not in app.blueprints and "sslmanager" in app.extensions
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "inst"), "SSLMANAGER_SCHEDULER_ENABLED": "0"}
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "sslmanager"), "run", "--port",
                               str(port)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as resp:
                    assert resp.status == 200 and "Content-Security-Policy" in resp.headers
                    assert "Server" not in resp.headers and "Via" not in resp.headers  # no banner
                    assert "csrf_token" in resp.read().decode()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == {"status": "ok"}
            assert "Server" not in resp.headers
    finally:
        server.terminate()
        server.communicate(timeout=10)


def test_a_bad_log_level_is_named_with_the_levels_it_could_be(tmp_path, monkeypatch):
    _sslmanager(tmp_path, "db", "upgrade")
    monkeypatch.setenv("SSLMANAGER_LOG_LEVEL", "loud")
    out = _sslmanager(tmp_path, "worker")
    assert out.returncode == 1 and "SSLMANAGER_LOG_LEVEL: 'LOUD' is not DEBUG, INFO" in out.stderr


def test_create_admin_on_a_fresh_instance_applies_the_migrations_first(tmp_path):
    from webapp import create_app
    app = create_app({"TESTING": True, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "fresh"),
                      "SSLMANAGER_SCHEDULER_ENABLED": False})
    result = app.test_cli_runner().invoke(args=["sslmanager", "create-admin", "alice", "--password-stdin"],
                                          input="a long enough password\n")
    assert result.exit_code == 0, result.output
    assert "no such table" not in result.output and "applied the migrations up to revision" in result.output
    with app.app_context():
        assert db.current_revision() == db.head_revision()
        assert db.session().query(Admin).one().username == "alice"


def test_every_other_command_on_a_fresh_instance_says_exactly_what_to_run(tmp_path):
    from webapp import create_app
    app = create_app({"TESTING": True, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "fresh"),
                      "SSLMANAGER_SCHEDULER_ENABLED": False})
    runner = app.test_cli_runner()
    for args in (["ca", "list"], ["cert", "list"], ["zone", "list"], ["renew", "--dry-run"], ["notify", "list"]):
        result = runner.invoke(args=["sslmanager", *args])
        assert result.exit_code == 1, (args, result.output)
        assert "the database is empty (a new instance)" in result.output, args
        assert "run `sslmanager db upgrade` first" in result.output and "no such table" not in result.output
    with app.app_context():
        assert db.current_revision() == ""  # nothing was applied behind the operator's back


def test_the_console_script_creates_the_first_admin_on_a_fresh_instance(tmp_path):
    out = _sslmanager(tmp_path, "create-admin", "alice", "--password-stdin", input="a long enough password\n")
    assert out.returncode == 0 and "Admin 'alice' saved." in out.stdout, out.stderr
    out = _sslmanager(tmp_path, "ca", "list")
    assert out.returncode == 0, out.stderr
