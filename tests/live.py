"""The real app served the way `sslmanager run` serves it (webapp.server: waitress, and the TLS
front for HTTPS) on a free loopback port in a thread, and a browser-like `requests` client that
signs in and keeps its cookie; plus certificates with a self-signed version, for the key
downloads and the TLS server."""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from requests.adapters import HTTPAdapter

from tests.conftest import ADMIN
from webapp import db

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@contextmanager
def served(app, contexts=None) -> Iterator[str]:
    """The base URL of `app` served by webapp.server on 127.0.0.1:<free port>."""
    from webapp.server import make_server
    server = make_server(app, "127.0.0.1", 0, threads=4, contexts=contexts)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"{'https' if contexts else 'http'}://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(timeout=5)
        with app.app_context():
            db.session().remove()


class _FromAddress(HTTPAdapter):
    """Connect from another loopback address (127.0.0.2...): another client, as the server sees it."""

    def __init__(self, source: str):
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


class Browser(requests.Session):
    """A client that behaves like a browser on our forms: it reads each page's CSRF token."""

    def __init__(self, base: str, source: str | None = None, verify=True):
        super().__init__()
        self.base, self.verify = base, verify
        self.trust_env = False  # else REQUESTS_CA_BUNDLE beats `verify`, and a proxy may step in
        if source:
            self.mount("http://", _FromAddress(source))
            self.mount("https://", _FromAddress(source))

    def token(self, path: str = "/login") -> str:
        return TOKEN.search(self.get(self.base + path, allow_redirects=False).text).group(1)

    def login(self, username: str = ADMIN[0], password: str = ADMIN[1], **headers) -> requests.Response:
        data = {"csrf_token": self.token(), "username": username, "password": password}
        return self.post(self.base + "/login", data=data, headers=headers, allow_redirects=False)

    def send(self, request, **kwargs):  # every request: no redirects followed unless asked
        kwargs.setdefault("timeout", 30)
        return super().send(request, **kwargs)

    def form(self, path: str, data: dict, page: str = "/") -> requests.Response:
        """POST `data` to `path` with the CSRF token of `page`, as the browser would."""
        return self.post(self.base + path, data={"csrf_token": self.token(page), **data},
                         allow_redirects=False)

    def cookie_only(self) -> "Browser":
        """Another client that holds nothing but a copy of this one's cookies: what an attacker
        who copied the cookie has."""
        other = Browser(self.base, verify=self.verify)
        other.cookies.update(self.cookies.get_dict())
        return other


def self_signed(names: list[str], days: int = 90) -> tuple[str, str]:
    """A self-signed certificate (CA:TRUE, so a client can trust it directly) and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            # What strict verification (urllib3's) wants of a certificate that is its own CA.
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def add_version(app, cert_id: int) -> tuple[str, str]:
    """A new issued version of certificate `cert_id` (self-signed for its names), made Active;
    returns its PEM certificate and key."""
    from webapp.models import CertificateVersion
    from webapp.services import certificates
    with app.app_context():
        cert = certificates.get(cert_id)
        cert_pem, key_pem = self_signed(list(cert.domains))
        parsed = x509.load_pem_x509_certificate(cert_pem.encode())
        current = certificates.current_version(cert)
        db.session().add(CertificateVersion(
            certificate_id=cert.id, number=(current.number + 1) if current else 1, cert_pem=cert_pem,
            chain_pem="", private_key=key_pem, serial=format(parsed.serial_number, "x"),
            issuer="self-signed", not_before=parsed.not_valid_before_utc, not_after=parsed.not_valid_after_utc))
        cert.status = "active"
        db.session().commit()
        db.session().remove()
    return cert_pem, key_pem


def make_certificate(app, names: str = "sslm.customer.test") -> int:
    """A certificate (under a Let's Encrypt staging profile, never contacted) with one version."""
    from tests.lab.servers import TECH_ZONE
    from webapp.services import ca_profiles, certificates
    with app.app_context():
        profile = ca_profiles.create({"name": "LE STAGING", "module": "letsencrypt", "email": "ops@example.com",
                                      "dns_zone": TECH_ZONE}, complete=True)
        cert_id = certificates.create({"profile_id": profile.id, "domains": names}).id
        db.session().remove()
    add_version(app, cert_id)
    return cert_id
