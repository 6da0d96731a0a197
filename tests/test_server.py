"""webapp.server: HTTPS served by `sslmanager run` itself, checked with real TLS clients (the ssl
module with full verification, and requests): from PEM files (reloaded when they change) and
from a certificate SSL Manager manages (its renewals picked up without a restart)."""
from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time

import pytest
from cryptography import x509
from requests.adapters import HTTPAdapter

from tests.conftest import ADMIN
from tests.live import Browser, add_version, make_certificate, self_signed, served
from webapp import db
from webapp.errors import ConfigError
from webapp.server import RECHECK_SECONDS, FileContexts, ManagedContexts
from webapp.services.auth import create_admin

NAME = "sslm.customer.test"


def tls_fetch(port: int, cafile: str, path: str = "/login") -> tuple[int, bytes]:
    """(serial of the certificate served, the HTTP response) with hostname and chain verified."""
    context = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=NAME) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {NAME}\r\nConnection: close\r\n\r\n".encode())
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            serial = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
    return serial, answer


def serial_of(pem: str) -> int:
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def write(folder, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


class _Named(HTTPAdapter):
    """requests to https://127.0.0.1:port, verifying the certificate for NAME."""

    def init_poolmanager(self, *args, **kwargs):
        kwargs["server_hostname"] = NAME
        super().init_poolmanager(*args, **kwargs)


def test_files_are_served_over_https_and_a_replaced_pair_is_picked_up(app, tmp_path):
    cert1, key1 = self_signed([NAME])
    certfile, keyfile = write(tmp_path, "cert.pem", cert1), write(tmp_path, "key.pem", key1)
    with app.app_context():
        create_admin(*ADMIN)
        db.session().remove()
    with served(app, FileContexts(certfile, keyfile)) as base:
        port = int(base.rsplit(":", 1)[1])
        serial, answer = tls_fetch(port, write(tmp_path, "ca1.pem", cert1))
        assert serial == serial_of(cert1) and answer.startswith(b"HTTP/1.1 200") and b"csrf_token" in answer

        browser = Browser(base, verify=os.path.join(tmp_path, "ca1.pem"))
        browser.mount("https://", _Named())
        resp = browser.login()
        assert resp.status_code == 302 and "Secure" in resp.headers["Set-Cookie"]  # the app sees https
        assert browser.get(base + "/", allow_redirects=False).status_code == 200

        cert2, key2 = self_signed([NAME])
        write(tmp_path, "key.pem", key2)
        write(tmp_path, "cert.pem", cert2)
        serial, _ = tls_fetch(port, write(tmp_path, "ca2.pem", cert2))
        assert serial == serial_of(cert2)  # the next connection, no restart

        write(tmp_path, "cert.pem", "not a certificate")  # half-written: the last good pair stays
        serial, _ = tls_fetch(port, os.path.join(tmp_path, "ca2.pem"))
        assert serial == serial_of(cert2)

        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # plain HTTP: no page
            raw.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                assert b"csrf_token" not in raw.recv(65536)
            except ConnectionResetError:
                pass  # the handshake failed: the connection is simply dropped


def test_unusable_files_are_refused_with_the_option_names(tmp_path):
    cert, _ = self_signed([NAME])
    _, other_key = self_signed([NAME])
    with pytest.raises(ConfigError, match="--tls-cert .* / --tls-key"):
        FileContexts(write(tmp_path, "c.pem", cert), write(tmp_path, "k.pem", other_key))
    with pytest.raises(ConfigError, match="--tls-cert"):
        FileContexts(str(tmp_path / "missing.pem"), str(tmp_path / "missing.key"))


def test_a_managed_certificate_is_served_and_its_renewal_picked_up_without_a_restart(app, tmp_path):
    cert_id = make_certificate(app, NAME)
    with app.app_context():
        from webapp.services import certificates
        first = certificates.export_files(certificates.get(cert_id))["cert.pem"]
        db.session().remove()
    now = [0.0]
    contexts = ManagedContexts(app, cert_id, clock=lambda: now[0])
    with served(app, contexts) as base:
        port = int(base.rsplit(":", 1)[1])
        assert tls_fetch(port, write(tmp_path, "v1.pem", first))[0] == serial_of(first)
        renewed, _ = add_version(app, cert_id)
        assert tls_fetch(port, str(tmp_path / "v1.pem"))[0] == serial_of(first)  # looked up again later
        now[0] += RECHECK_SECONDS
        assert tls_fetch(port, write(tmp_path, "v2.pem", renewed))[0] == serial_of(renewed)


def test_a_certificate_without_a_version_cannot_be_served(app):
    from webapp.services import ca_profiles, certificates
    from tests.lab.servers import TECH_ZONE
    with app.app_context():
        profile = ca_profiles.create({"name": "P", "module": "letsencrypt", "email": "ops@example.com",
                                      "dns_zone": TECH_ZONE}, complete=True)
        draft = certificates.create({"profile_id": profile.id, "domains": NAME}).id
        db.session().remove()
    with pytest.raises(ConfigError, match="no issued version yet"):
        ManagedContexts(app, draft)


def _sslmanager(tmp_path, *args, wait_port: int | None = None):
    env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": str(tmp_path / "inst"), "SSLMANAGER_SCHEDULER_ENABLED": "0"}
    return subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "sslmanager"), *args], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sslmanager_run_serves_https_with_tls_cert_and_key(tmp_path):
    cert, key = self_signed([NAME])
    certfile, keyfile = write(tmp_path, "cert.pem", cert), write(tmp_path, "key.pem", key)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = _sslmanager(tmp_path, "run", "--port", str(port), "--tls-cert", certfile, "--tls-key", keyfile)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                serial, answer = tls_fetch(port, certfile)
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.1)
        assert serial == serial_of(cert) and answer.startswith(b"HTTP/1.1 200") and b"csrf_token" in answer
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0]
    assert f"serving on https://127.0.0.1:{port}/" in output


def test_sslmanager_run_refuses_half_a_tls_pair_clearly(tmp_path):
    server = _sslmanager(tmp_path, "run", "--port", "0", "--tls-cert", str(tmp_path / "c.pem"))
    output = server.communicate(timeout=60)[0]
    assert server.returncode == 1 and "--tls-cert and --tls-key go together" in output
    assert "Traceback" not in output
