"""Secrets at rest and in logs: after a whole flow (an EAB profile, a ZeroSSL profile with an API
key, the technical zone with its TSIG secret, an SMTP channel with a password, certificates
issued and notified), none of those secrets, no private key and no ACME account key appears in
clear in the SQLite file, in a pg_dump of a PostgreSQL database used the same way, or in
anything logged at DEBUG meanwhile."""
from __future__ import annotations

import base64
import json
import logging
import secrets
import ssl
import subprocess
from pathlib import Path

import pyotp
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography.hazmat.primitives import serialization

from tests.conftest import add_lab_profile, add_lab_zone, make_app
from tests.faults.conftest import new_cert
from tests.lab.http import closed_port, pebble_tls
from tests.lab.postgres import postgres_bindir
from tests.lab.servers import LAB_EAB_KEYS, TSIG_SECRET
from tests.lab.zerossl import ZeroSSLApi
from webapp import db
from webapp.models import CAProfile, Certificate, NotificationChannel
from webapp.models import utcnow
from webapp.services import ca_profiles, certificates, pipeline, sessions, two_factor
from webapp.services.auth import create_admin

USER_PASSWORD = "user-" + secrets.token_urlsafe(18)
SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-" + secrets.token_urlsafe(18)
API_KEY = "zerossl-" + secrets.token_hex(16)
EAB_KID = "kid-2"


class Mailbox:
    """A real SMTP server's handler (STARTTLS, login required): keeps what it receives."""

    def __init__(self):
        self.logins: list[bytes] = []
        self.messages = 0

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.password == SMTP_PASSWORD.encode()
        self.logins.append(auth_data.login)
        return AuthResult(success=ok, handled=False)

    async def handle_DATA(self, server, session, envelope):
        self.messages += 1
        return "250 OK"


@pytest.fixture
def mailbox(lab_pebble):
    """An SMTP server on loopback with Pebble's listener certificate (trusted via its CA PEM)."""
    box = Mailbox()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*pebble_tls(lab_pebble))
    controller = Controller(box, hostname="127.0.0.1", port=closed_port(), tls_context=context,
                            authenticator=box.authenticate, auth_required=True, auth_require_tls=True)
    controller.start()
    yield box, controller.port, Path(lab_pebble.ca_bundle).read_text()
    controller.stop()


@pytest.fixture
def zerossl_api(lab_pebble_eab):
    with ZeroSSLApi(lab_pebble_eab.eab_keys, valid_access_key=API_KEY) as api:
        yield api


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """(SQLAlchemy URL, a function returning the stored bytes: the SQLite files or a pg_dump)."""
    if request.param == "sqlite":
        path = tmp_path / "secrets.db"

        def stored() -> bytes:  # the database and its write-ahead log (recent writes live there)
            return b"".join(p.read_bytes() for p in sorted(tmp_path.glob("secrets.db*")))
        return f"sqlite:///{path}", stored
    url = request.getfixturevalue("pg_database")
    postgres = request.getfixturevalue("lab_postgres")
    name = url.rsplit("/", 1)[1]

    def dump() -> bytes:
        return subprocess.run([f"{postgres_bindir()}/pg_dump", "-h", postgres.host, "-p", str(postgres.port),
                               "-U", postgres.user, name], capture_output=True, check=True).stdout
    return url, dump


def pem_forms(pem: str) -> list[bytes]:
    """A private key as PEM, as DER, and its private numbers as bytes, hex and base64 (the JWK
    "d" is base64url). Not PEM lines one by one: the last lines encode the public key, which
    the CSR and the certificate rightly hold."""
    key = serialization.load_pem_private_key(pem.encode(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    numbers = key.private_numbers()
    values = ([numbers.private_value] if hasattr(numbers, "private_value")
              else [numbers.d, numbers.p, numbers.q])
    forms = [pem.encode(), der]
    for value in values:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        forms += [raw, raw.hex().encode(), base64.b64encode(raw).rstrip(b"="),
                  base64.urlsafe_b64encode(raw).rstrip(b"=")]
    return forms


def text_forms(secret: str) -> list[bytes]:
    return [secret.encode(), json.dumps(secret).encode()]


def test_no_secret_in_clear_in_the_database_or_the_logs(
        tmp_path, database, caplog, lab_bind, lab_unbound, lab_pebble_eab, zerossl_api, mailbox, cnames):
    url, stored = database
    box, smtp_port, smtp_ca = mailbox
    caplog.set_level(logging.DEBUG)
    app = make_app(tmp_path, SSLMANAGER_DATABASE_URL=url,
                   SSLMANAGER_DNS_RESOLVERS=[f"127.0.0.1:{lab_unbound.port}"],
                   SSLMANAGER_CA_OVERRIDES={"zerossl": {
                       "directory_url": lab_pebble_eab.directory_url, "ca_bundle": lab_pebble_eab.ca_bundle,
                       "api_url": zerossl_api.url}})
    with app.app_context():
        add_lab_zone(lab_bind)
        eab = add_lab_profile(lab_pebble_eab, name="Pebble", eab_kid=EAB_KID, eab_hmac=LAB_EAB_KEYS[EAB_KID])
        assert ca_profiles.test(eab).ok, eab.last_test_message
        zerossl = ca_profiles.create({"name": "ZeroSSL", "module": "zerossl"})
        ca_profiles.update(zerossl, {"name": "ZeroSSL", "email": "ops@example.com", "dns_zone": "acme.tech.test",
                                     "dns_ttl": "30", "api_timeout": "10", "api_key": API_KEY})
        assert ca_profiles.test(zerossl).ok, zerossl.last_test_message
        db.session().add(NotificationChannel(
            name="Ops mail", kind="email", enabled=True, events=[], secret=SMTP_PASSWORD,
            settings={"host": "127.0.0.1", "port": smtp_port, "security": "starttls", "username": SMTP_USER,
                      "from_addr": "sslmanager@example.com", "to": ["ops@example.com"], "ca_bundle": smtp_ca}))
        db.session().commit()
        # A user with a password, TOTP on (its secret and recovery codes) and a signed-in session.
        user = create_admin("operator", USER_PASSWORD, role="operator")
        totp_secret = two_factor.pending_secret(user)
        recovery = two_factor.confirm(user, pyotp.TOTP(totp_secret).now())
        session_token = sessions.open_session(user, "127.0.0.1", "test", utcnow())
        db.session().commit()
        for name, profile in (("secret-eab.customer.test", "Pebble"), ("secret-zerossl.customer.test", "ZeroSSL")):
            cert = new_cert(name, profile=profile)
            cnames(cert)
            assert pipeline.process(cert.id) == "active", certificates.get(cert.id).last_error

        # What must never be in clear: read back through the app (decrypted), so it is real.
        keys = [pem for (pem,) in db.session().query(Certificate.private_key)]
        keys += [pem for (pem,) in db.session().query(CAProfile.account_key)]
        assert len(keys) == 4 and all("PRIVATE KEY" in k for k in keys)
        assert ca_profiles.by_name("Pebble").eab_hmac == LAB_EAB_KEYS[EAB_KID]
        assert ca_profiles.by_name("ZeroSSL").api_key == API_KEY
        assert db.session().query(NotificationChannel).one().secret == SMTP_PASSWORD
        data_key = (tmp_path / "instance" / "encryption.key").read_text().strip()
        db.session().remove()
        app.extensions["sslmanager"].engine.dispose()
    assert box.logins == [SMTP_USER.encode()] * 2 and box.messages == 2  # the password was used
    assert zerossl_api.requests and all(  # and the API key
        path == "/acme/eab-credentials" and asked["access_key"] == API_KEY for path, asked in zerossl_api.requests)

    forbidden = {f"private key {i}": pem_forms(pem) for i, pem in enumerate(keys)}
    forbidden.update({
        "EAB HMAC": text_forms(LAB_EAB_KEYS[EAB_KID]),
        "EAB HMAC from ZeroSSL": text_forms(LAB_EAB_KEYS["kid-1"]),
        "TSIG secret": text_forms(TSIG_SECRET),
        "API key": text_forms(API_KEY),
        "SMTP password": text_forms(SMTP_PASSWORD),
        "data-encryption key": text_forms(data_key),
        "user password": text_forms(USER_PASSWORD),
        "TOTP secret": text_forms(totp_secret) + [base64.b32decode(totp_secret),
                                                 base64.b32decode(totp_secret).hex().encode()],
        "recovery codes": [f for code in recovery for f in text_forms(code) + text_forms(code.replace("-", ""))],
        "session token": text_forms(session_token),
    })
    at_rest = stored()
    assert b"sslm_ca_profile" in at_rest  # the right database
    found = sorted(what for what, forms in forbidden.items() if any(f in at_rest for f in forms))
    assert found == [], f"in clear in the database: {found}"

    # The lab's own SMTP server logs what it receives on the wire; it is not the app's log.
    logged = "\n".join(f"{r.name}: {r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records
                       if not r.name.startswith("mail.log")).encode()
    assert b"new order" in logged and b"acme.client" in logged  # DEBUG output was captured
    leaked = {what: next(f for f in forms if f in logged)
              for what, forms in forbidden.items() if any(f in logged for f in forms)}
    assert leaked == {}, "in the logs: " + "; ".join(
        f"{what}: ...{logged[max(0, logged.find(f) - 120):logged.find(f) + 20].decode(errors='replace')}"
        for what, f in leaked.items())
