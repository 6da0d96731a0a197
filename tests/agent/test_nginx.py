"""Delivery with real parts: SSL Manager served by waitress (as `sslmanager run` serves it),
certificates issued by the lab's Pebble, two Debian nginx on loopback, and one real
`sslmanager agent` process per nginx, each with a token restricted to its server's tag."""
from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.live import served
from webapp.agent.install import served_serial
from webapp.services import agents, ca_profiles, certificates, pipeline, tags, tokens

SSLMANAGER = str(Path(sys.executable).parent / "sslmanager")
DOMAIN = "agents.customer.test"


def run_agent(base: str, token: str, nginx, workdir: Path, *extra: str) -> subprocess.CompletedProcess:
    """`sslmanager agent --once` for one nginx, as cron would run it."""
    workdir.mkdir(exist_ok=True)
    (workdir / "token").write_text(token + "\n")
    (workdir / "token").chmod(0o600)
    return subprocess.run([SSLMANAGER, "agent", "--once", "--server", base, "--token-file", str(workdir / "token"),
                           "--dir", str(nginx.cert_dir), "--state", str(workdir / "state.json"),
                           "--reload", nginx.reload_command, "--probe", nginx.probe, "--probe-wait", "20",
                           "--name", workdir.name, *extra],
                          capture_output=True, text=True, timeout=120, env={"PATH": "/usr/sbin:/usr/bin:/bin",
                                                                           **_pythonpath()})


def _pythonpath() -> dict[str, str]:
    import os
    return {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


@pytest.fixture
def delivery(lab_app, cnames, nginx_factory, tmp_path):
    """An issued certificate tagged web-01 and web-02, another one tagged web-03 only, a
    token per web server (read + keys:read, restricted to its tag), two nginx, the app live."""
    with lab_app.app_context():
        profile = ca_profiles.by_name("Pebble").id
        shared = certificates.request(certificates.create({"profile_id": profile, "domains": DOMAIN}))
        cnames(shared)
        tags.replace(shared, ["web-01", "web-02"])
        other = certificates.request(certificates.create({"profile_id": profile, "domains": "only2.customer.test"}))
        cnames(other)
        tags.replace(other, ["web-03"])
        assert pipeline.process(shared.id) == "active" and pipeline.process(other.id) == "active"
        secrets = {name: tokens.create(name, ["read", "keys:read"], tags=[name]).secret for name in ("web-01", "web-02")}
        ids = (shared.id, other.id)
    with served(lab_app) as base:
        yield base, ids, secrets, {n: nginx_factory(tmp_path / f"certs-{n}") for n in secrets}


def test_issue_then_renew_reaches_both_nginx_and_a_revoked_token_is_told_clearly(lab_app, delivery, tmp_path):
    base, (shared, other), secrets, nginx = delivery
    with lab_app.app_context():
        first = certificates.get(shared).serial
    for name in ("web-01", "web-02"):
        done = run_agent(base, secrets[name], nginx[name], tmp_path / name)
        assert done.returncode == 0, done.stderr
        assert f"installed serial {first}" in done.stderr
        nginx[name].settled()
        assert served_serial("127.0.0.1", nginx[name].port, DOMAIN) == first
    with lab_app.app_context():
        shown = agents.for_certificate(certificates.get(shared))
        assert [(a.agent, a.installed_serial, a.last_ok, a.behind) for a in shown] == [
            ("web-01", first, True, False), ("web-02", first, True, False)]
        assert "serves serial" in shown[0].last_message  # the probe's word, reported back

    # Nothing new: a 304, nothing written, nginx untouched.
    again = run_agent(base, secrets["web-01"], nginx["web-01"], tmp_path / "web-01")
    assert again.returncode == 0 and "installed" not in again.stderr

    with lab_app.app_context():
        assert pipeline.renew(shared) == "active"
        renewed = certificates.get(shared).serial
    assert renewed != first
    for name in ("web-01", "web-02"):
        done = run_agent(base, secrets[name], nginx[name], tmp_path / name)
        assert done.returncode == 0, done.stderr
        nginx[name].settled()
        assert served_serial("127.0.0.1", nginx[name].port, DOMAIN) == renewed, done.stderr
    with lab_app.app_context():
        assert {a.installed_serial for a in agents.for_certificate(certificates.get(shared))} == {renewed}
        tokens.revoke(tokens.get("web-01"))
    key_before = (nginx["web-01"].cert_dir / "privkey.pem").read_bytes()
    refused = run_agent(base, secrets["web-01"], nginx["web-01"], tmp_path / "web-01")
    assert refused.returncode == 3
    assert "the token was refused (401): revoked or expired" in refused.stderr
    assert "create a new one with `sslmanager token create`" in refused.stderr
    assert (nginx["web-01"].cert_dir / "privkey.pem").read_bytes() == key_before  # last good files stay
    nginx["web-01"].settled()
    assert served_serial("127.0.0.1", nginx["web-01"].port, DOMAIN) == renewed


def test_a_token_for_one_tag_cannot_read_another_tags_key(lab_app, delivery, tmp_path):
    base, (shared, other), secrets, nginx = delivery
    done = run_agent(base, secrets["web-01"], nginx["web-01"], tmp_path / "web-01")
    assert done.returncode == 0, done.stderr
    state = json.loads((tmp_path / "web-01" / "state.json").read_text())
    assert set(state["installed"]) == {str(shared)}  # web-03's certificate is not listed
    request = urllib.request.Request(f"{base}/api/v1/certificates/{other}/pem?include_key=true",
                                     headers={"Authorization": f"Bearer {secrets['web-01']}"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403
    assert b"PRIVATE KEY" not in refused.value.read()
