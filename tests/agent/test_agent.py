"""The agent client against a real HTTP server on loopback that speaks the agent API: files
written atomically with their modes, the state file, 304s, a server that is down, a refused
token. (tests/agent/test_nginx.py runs it against SSL Manager itself and two nginx.)"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from tests.agent.pems import make_pem
from tests.lab.http import closed_port, http_server
from webapp.agent import install
from webapp.agent.run import INSTALL_FAILED, OK, REFUSED, UNREACHABLE, USAGE, Agent, main, settings


class FakeApi:
    """The agent endpoints' contract, served for real over HTTP."""

    def __init__(self):
        self.versions: dict[int, tuple[int, int]] = {}   # cert id → (version id, serial)
        self.material: dict[int, tuple[str, str]] = {}
        self.reports: list[dict] = []
        self.requests: list[tuple[str, str, str]] = []
        self.refuse = 0

    def publish(self, cert_id: int, version_id: int, serial: int) -> None:
        self.versions[cert_id] = (version_id, serial)
        self.material[version_id] = make_pem(serial)

    def __call__(self, req):
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        self.requests.append((req.command, req.path, req.headers.get("If-None-Match", "")))
        if self.refuse:
            return self.refuse, {"Content-Type": "application/problem+json"}, b'{"detail": "this token is revoked"}'
        if req.path == "/api/v1/agent/certificates":
            items = [{"id": cid, "domains": ["www.example.test"], "status": "active",
                      "version": {"id": vid, "serial": f"{serial:x}", "not_after": "2030-01-01T00:00:00Z"},
                      "bundle_url": f"/api/v1/certificates/{cid}/pem?version={vid}&include_key=true"}
                     for cid, (vid, serial) in sorted(self.versions.items())]
            etag = '"' + ",".join(f"{c}:{v}" for c, (v, _) in sorted(self.versions.items())) + '"'
            if req.headers.get("If-None-Match") == etag:
                return 304, {"ETag": etag}, b""
            return 200, {"ETag": etag, "Content-Type": "application/json"}, json.dumps({"certificates": items}).encode()
        if "/pem?" in req.path:
            vid = int(req.path.split("version=")[1].split("&")[0])
            cert, key = self.material[vid]
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"cert": cert, "chain": cert, "fullchain": cert + cert, "key": key}).encode()
        if req.path == "/api/v1/agent/reports":
            self.reports.append(json.loads(body))
            return 201, {}, b"{}"
        return 404, {}, b""


@pytest.fixture
def api():
    fake = FakeApi()
    with http_server(fake) as url:
        fake.url = url
        yield fake


def agent_for(tmp_path, url, **extra) -> Agent:
    (tmp_path / "token").write_text("sslm_1_secretsecretsecretsecret\n")
    argv = ["--server", url, "--token-file", str(tmp_path / "token"), "--dir", str(tmp_path / "out" / "{id}"),
            "--state", str(tmp_path / "state.json"), "--name", "web-01"]
    for key, value in extra.items():
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [value])
    conf, _once, _ = settings(argv, {})
    return Agent(conf)


def test_a_new_version_is_written_with_modes_reported_and_remembered(tmp_path, api):
    api.publish(7, 70, 0xABC)
    agent = agent_for(tmp_path, api.url, combined=True)
    assert agent.cycle() == OK
    out = tmp_path / "out" / "7"
    assert sorted(os.listdir(out)) == ["cert.pem", "chain.pem", "combined.pem", "fullchain.pem", "privkey.pem"]
    assert stat.S_IMODE(os.stat(out / "privkey.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "combined.pem").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "cert.pem").st_mode) == 0o644
    assert install.pem_serial((out / "cert.pem").read_text()) == "abc"
    assert "PRIVATE KEY" in (out / "combined.pem").read_text()
    assert api.reports == [{"agent": "web-01", "certificate_id": 7, "version_id": 70, "serial": "abc",
                            "ok": True, "message": api.reports[0]["message"]}]
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["installed"]["7"]["version"] == 70 and state["etag"] == '"7:70"'
    assert stat.S_IMODE(os.stat(tmp_path / "state.json").st_mode) == 0o600


def test_an_unchanged_answer_is_a_304_and_nothing_is_fetched(tmp_path, api):
    api.publish(7, 70, 0xABC)
    assert agent_for(tmp_path, api.url).cycle() == OK
    before = len(api.requests)
    again = agent_for(tmp_path, api.url)  # a restarted agent: the state file carries the ETag
    assert again.cycle() == OK
    assert api.requests[before:] == [("GET", "/api/v1/agent/certificates", '"7:70"')]


def test_a_renewal_replaces_the_files_and_leaves_no_temp_file(tmp_path, api):
    api.publish(7, 70, 0xABC)
    agent = agent_for(tmp_path, api.url)
    agent.cycle()
    api.publish(7, 71, 0xDEF)
    assert agent.cycle() == OK
    out = tmp_path / "out" / "7"
    assert install.pem_serial((out / "fullchain.pem").read_text()) == "def"
    assert not [n for n in os.listdir(out) if n.startswith(".")]
    assert [r["serial"] for r in api.reports] == ["abc", "def"]


def test_the_server_down_keeps_the_last_good_files_and_queues_nothing_lost(tmp_path, api, capfd):
    api.publish(7, 70, 0xABC)
    agent = agent_for(tmp_path, api.url)
    agent.cycle()
    before = (tmp_path / "out" / "7" / "privkey.pem").read_text()
    down = agent_for(tmp_path, f"http://127.0.0.1:{closed_port()}")
    assert down.cycle() == UNREACHABLE
    assert (tmp_path / "out" / "7" / "privkey.pem").read_text() == before
    assert "cannot reach the server" in capfd.readouterr().err
    assert 4 * down.interval * 0.9 <= down.next_delay(3) <= 4 * down.interval  # backs off
    assert all(down.interval * 0.9 <= down.next_delay(0) <= down.interval for _ in range(50))


def test_a_failed_reload_reports_failure_and_is_tried_again(tmp_path, api):
    api.publish(7, 70, 0xABC)
    flag = tmp_path / "fail"
    flag.write_text("")
    script = f"{sys.executable} -c \"import os,sys; sys.exit(3 if os.path.exists('{flag}') else 0)\""
    agent = agent_for(tmp_path, api.url, reload=script)
    assert agent.cycle() == INSTALL_FAILED
    assert api.reports[-1]["ok"] is False and "exited with status 3" in api.reports[-1]["message"]
    flag.unlink()
    assert agent.cycle() == OK  # no ETag was kept: the same version is installed again
    assert api.reports[-1]["ok"] is True


def test_a_reload_that_hangs_is_stopped_at_its_time_limit(tmp_path):
    with pytest.raises(install.InstallError, match="did not finish within 1 s"):
        install.run_reload(f"{sys.executable} -c 'import time; time.sleep(30)'", 1, {})


def test_a_refused_token_says_revoked_or_expired_and_what_to_do(tmp_path, api, capfd):
    api.refuse = 401
    assert agent_for(tmp_path, api.url).cycle() == REFUSED
    err = capfd.readouterr().err
    assert "the token was refused (401): revoked or expired" in err and "sslmanager token create" in err


def test_reports_made_while_the_server_was_away_are_delivered_later(tmp_path, api):
    agent = agent_for(tmp_path, api.url)
    agent.state.pending_reports.append({"agent": "web-01", "certificate_id": 7, "version_id": 70,
                                        "serial": "abc", "ok": True, "message": "m"})
    agent.cycle()
    assert api.reports[0]["message"] == "m" and agent.state.pending_reports == []


def test_a_write_that_fails_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "privkey.pem"
    install.write_atomic(str(path), b"old", 0o600, install.Ownership())

    def broken(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        install.write_atomic(str(path), b"new", 0o600, install.Ownership())
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["privkey.pem"]


def test_the_serial_is_read_from_der_like_cryptography_reads_it():
    for serial in (1, 0x80, 0xFF_FFFF_FFFF_FFFF_FFFF, 2 ** 159 - 1):
        cert, _ = make_pem(serial)
        assert install.pem_serial(cert) == f"{serial:x}"


def test_settings_come_from_flags_then_environment_then_file(tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text("# comment\nSSLMANAGER_AGENT_SERVER=https://file.example\n"
                    "SSLMANAGER_AGENT_INTERVAL='120'\nSSLMANAGER_AGENT_NAME=from-file\n")
    out, once, _ = settings(["--config", str(conf), "--name", "flag", "--once"],
                            {"SSLMANAGER_AGENT_INTERVAL": "90"})
    assert (out["server"], out["interval"], out["name"], once) == ("https://file.example", "90", "flag", True)


def test_bad_settings_name_the_option(tmp_path, capfd):
    (tmp_path / "token").write_text("t")
    assert main(["--server", "ftp://x", "--token-file", str(tmp_path / "token")], {}) == USAGE
    assert "--server" in capfd.readouterr().err
    assert main(["--server", "http://x", "--token-file", str(tmp_path / "none")], {}) == USAGE
    assert "--token-file: cannot read" in capfd.readouterr().err
    assert main(["--server", "http://x", "--token-file", str(tmp_path / "token"), "--interval", "soon"], {}) == USAGE
    assert "--interval" in capfd.readouterr().err


def test_the_console_script_runs_the_agent_without_flask(tmp_path, api):
    api.publish(3, 30, 0x1234)
    (tmp_path / "token").write_text("sslm_1_x")
    code = ("import sys, webapp.console\n"
            "sys.argv = ['sslmanager'] + sys.argv[1:]\n"
            "try:\n    webapp.console.main()\n"
            "except SystemExit as e:\n"
            "    bad = [m for m in sys.modules if m.split('.')[0] in ('flask', 'sqlalchemy', 'cryptography', 'acme')]\n"
            "    print(e.code, bad)\n")
    done = subprocess.run([sys.executable, "-c", code, "agent", "--once", "--server", api.url, "--token-file",
                           str(tmp_path / "token"), "--dir", str(tmp_path / "{domain}"),
                           "--state", str(tmp_path / "s.json")], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "0 []", done.stderr
    assert (tmp_path / "www.example.test" / "fullchain.pem").exists()


def _wait_for(check, seconds: float) -> float:
    """Seconds until check() is true (fails the test after `seconds`)."""
    import time
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < seconds, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - start


def test_the_long_running_agent_installs_a_renewal_within_one_interval_and_stops_on_sigterm(tmp_path, api):
    import signal
    api.publish(7, 70, 0xABC)
    (tmp_path / "token").write_text("sslm_1_x")
    cert = tmp_path / "out" / "cert.pem"
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from webapp.agent.run import main; sys.exit(main())",
                             "--server", api.url, "--token-file", str(tmp_path / "token"), "--dir",
                             str(tmp_path / "out"), "--state", str(tmp_path / "s.json"), "--interval", "5"],
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: cert.exists() and install.pem_serial(cert.read_text()) == "abc", 15)
        api.publish(7, 71, 0xDEF)
        took = _wait_for(lambda: install.pem_serial(cert.read_text()) == "def", 10)
        assert took <= 5 + 1  # one interval, and a second for the install on a busy machine
    finally:
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "polling" in err and "installed serial def" in err
