"""nginx (Debian's) as a web server on loopback, for the agent's tests: one instance per
workdir, TLS on a free port with the certificate files an agent writes.

Pitfalls met: nginx will not start without its certificate files, so a self-signed
placeholder (serial 1) is written first; it needs every temp path inside its prefix (-p) and
`-e` for the error log it opens before reading the config (else /var/log/nginx); `daemon off`
keeps it in the foreground under ManagedServer; `-s reload` is asynchronous (the master
starts new workers with the new files a moment later), hence the agent's probe loop; and
the old worker keeps accepting with the old certificate until it handles its QUIT, so a test
waits for `settled()` (one worker again) before it asserts what nginx serves."""
from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .proc import ManagedServer, free_port, require_binary

PLACEHOLDER_SERIAL = 1


def _placeholder(directory: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "placeholder.invalid")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(PLACEHOLDER_SERIAL).not_valid_before(now).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "privkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class Nginx(ManagedServer):
    """nginx serving HTTPS on 127.0.0.1:<port> with cert_dir/fullchain.pem and privkey.pem
    (cert_dir defaults to <workdir>/certs). `reload_command` is what an agent runs."""

    name = "nginx"

    def __init__(self, cert_dir: Path | None = None) -> None:
        super().__init__()
        self.port = free_port()
        self._cert_dir = cert_dir
        self.binary = ""

    @property
    def cert_dir(self) -> Path:
        return self._cert_dir or self.workdir / "certs"

    @property
    def probe(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def reload_command(self) -> str:
        return f"{self.binary} -p {self.workdir} -c nginx.conf -e error.log -s reload"

    def _launch(self) -> None:
        self.binary = require_binary("/usr/sbin/nginx", "nginx-light")
        if not (self.cert_dir / "fullchain.pem").exists():
            _placeholder(self.cert_dir)
        wd = self.workdir
        temps = "".join(f"    {kind}_temp_path {wd}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (wd / "nginx.conf").write_text(f"""\
daemon off;
pid {wd}/nginx.pid;
error_log {wd}/error.log info;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temps}    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name _;
        ssl_certificate {self.cert_dir}/fullchain.pem;
        ssl_certificate_key {self.cert_dir}/privkey.pem;
        location / {{ return 200 "ok\\n"; }}
    }}
}}
""")
        self._spawn([self.binary, "-p", str(wd), "-c", "nginx.conf", "-e", "error.log"])

    def settled(self, timeout: float = 15) -> None:
        """Wait until the master has one worker again: after `-s reload` the old worker keeps
        accepting connections (with the old certificate) until it handles its QUIT, which on a
        busy host can be seconds after the new worker started serving."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + timeout
        while len(children.read_text().split()) != 1:
            if time.monotonic() > deadline:
                raise AssertionError(f"nginx still has workers {children.read_text()} after {timeout} s")
            time.sleep(0.02)

    def _ready(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
            return True
