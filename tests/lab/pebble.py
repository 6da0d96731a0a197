"""Pebble, the test ACME CA, with its own listener certificate and optional EAB keys."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import ssl
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .proc import ManagedServer, _terminate, free_port, require_binary

PEBBLE_DEFAULT_ENV = {
    "PEBBLE_VA_NOSLEEP": "1",  # no random 0-15 s delay before each validation
    "PEBBLE_AUTHZREUSE": "0",  # default 50: half of repeat orders would skip DNS-01
}


def eab_mac_key(seed: str) -> str:
    """A deterministic EAB HMAC key: unpadded base64url, the only form Pebble accepts."""
    digest = hashlib.sha256(f"ssl-manager lab eab {seed}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


LAB_EAB_KEYS = {"kid-1": eab_mac_key("kid-1"), "kid-2": eab_mac_key("kid-2")}


class Pebble(ManagedServer):
    """/usr/bin/pebble on loopback, validating DNS-01 through `dns_server` (host:port)."""

    name = "pebble"
    host = "127.0.0.1"

    def __init__(
        self,
        dns_server: str,
        *,
        eab_keys: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        validity_seconds: int | None = None,
    ) -> None:
        super().__init__()
        self.validity_seconds = validity_seconds  # certificateValidityPeriod (Pebble >= 2.4)
        self.dns_server = dns_server
        self.eab_keys: dict[str, str] = dict(eab_keys or {})
        self.env: dict[str, str] = {**PEBBLE_DEFAULT_ENV, **(env or {})}
        self.port = free_port()
        self.mgmt_port = free_port()
        self.directory_url = f"https://{self.host}:{self.port}/dir"
        self.mgmt_url = f"https://{self.host}:{self.mgmt_port}"
        self.ca_bundle: str = ""  # set by start(): the file lives in the workdir

    def _launch(self) -> None:
        pebble = require_binary("/usr/bin/pebble", "pebble")
        ca_pem, cert_pem, key_pem = listener_certificate()
        (self.workdir / "ca.pem").write_bytes(ca_pem)
        (self.workdir / "cert.pem").write_bytes(cert_pem + ca_pem)  # served as full chain
        (self.workdir / "key.pem").write_bytes(key_pem)
        self.ca_bundle = str(self.workdir / "ca.pem")
        self._ssl = ssl.create_default_context(cafile=self.ca_bundle)
        config = self.workdir / "pebble-config.json"
        config.write_text(json.dumps(self._config(), indent=2))
        self._argv = [pebble, "-config", str(config), "-dnsserver", self.dns_server]
        self._spawn(self._argv, env={**os.environ, **self.env})

    def restart(self) -> None:
        """Stop and start again on the same ports with the same listener certificate: Pebble
        keeps nothing, so every account, order and certificate is forgotten (a CA reset)."""
        self.halt()
        self.resume()

    def halt(self) -> None:
        """Stop answering (a CA outage): the ports close until resume()."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _terminate(proc, self.stop_signal)

    def resume(self) -> None:
        """Start again after halt(), on the same ports and listener certificate (a new CA state:
        new roots, every account forgotten)."""
        self._spawn(self._argv, env={**os.environ, **self.env})
        self._wait_ready()

    def _config(self) -> dict:
        """Config in the shape of /usr/share/doc/pebble/examples/*.json."""
        conf = {
            "listenAddress": f"{self.host}:{self.port}",
            "managementListenAddress": f"{self.host}:{self.mgmt_port}",
            "certificate": str(self.workdir / "cert.pem"),
            "privateKey": str(self.workdir / "key.pem"),
            # Ports Pebble's VA would use for http-01/tls-alpn-01; nothing listens there.
            "httpPort": free_port(),
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": bool(self.eab_keys),
        }
        if self.eab_keys:
            conf["externalAccountMACKeys"] = self.eab_keys
        if self.validity_seconds:
            conf["certificateValidityPeriod"] = self.validity_seconds
        return {"pebble": conf}

    def _ready(self) -> bool:
        # Both listeners start in their own goroutines: probe each.
        return "newOrder" in self.directory() and bool(self.root_pem())

    def _get(self, url: str) -> bytes:
        """GET over TLS trusting only this Pebble's listener CA."""
        with urllib.request.urlopen(url, context=self._ssl, timeout=2) as resp:
            return resp.read()

    def directory(self) -> dict:
        """The ACME directory object."""
        return json.loads(self._get(self.directory_url))

    def root_pem(self, i: int = 0) -> str:
        """PEM of issuance root i (Pebble makes new ones at every start)."""
        return self._get(f"{self.mgmt_url}/roots/{i}").decode()

    def intermediate_pem(self, i: int = 0) -> str:
        """PEM of the intermediate under root i."""
        return self._get(f"{self.mgmt_url}/intermediates/{i}").decode()


def listener_certificate(
    ca_cn: str = "SSL Manager lab Pebble listener CA",
) -> tuple[bytes, bytes, bytes]:
    """A throwaway P-256 CA and a leaf for 127.0.0.1/localhost: (ca_pem, cert_pem, key_pem).

    A CA + leaf rather than one self-signed certificate, so the served certificate has the
    ordinary shape (CA:FALSE, serverAuth, AKI) that every TLS client expects; the CA is
    what clients trust (Pebble.ca_bundle). Pebble serves leaf + CA as its chain.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_cn)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), leaf.public_bytes(pem), key_pem


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    """digitalSignature always; keyCertSign+cRLSign for the CA."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
