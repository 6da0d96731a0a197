"""Account keys and certificate identifiers for the ACME adapter (cryptography + josepy)."""
from __future__ import annotations

import josepy as jose
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from webapp.errors import AcmeError, CryptoError

_EC_ALGS = {"secp256r1": jose.ES256, "secp384r1": jose.ES384, "secp521r1": jose.ES512}


def generate_account_key() -> bytes:
    """A new EC P-256 account private key as PEM (account keys sign ES256)."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_account_key(pem: bytes) -> tuple[jose.JWK, jose.JWASignature]:
    """The account key as a JWK and the JWS algorithm it signs with (ES256 for P-256)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CryptoError("the ACME account key is not a readable unencrypted PEM private key",
                          step="load account key") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _EC_ALGS:
        return jose.JWKEC(key=key), _EC_ALGS[key.curve.name]
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    raise CryptoError("the ACME account key must be EC (P-256/384/521) or RSA",
                      step="load account key")


def load_certificate(pem: str | bytes, *, step: str) -> x509.Certificate:
    """The first certificate of a PEM (a full chain starts with the leaf)."""
    try:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise AcmeError("the certificate is not valid PEM", step=step, detail=str(exc)) from exc


def load_csr(pem: str | bytes, *, step: str) -> x509.CertificateSigningRequest:
    """A CSR from PEM."""
    try:
        return x509.load_pem_x509_csr(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise AcmeError("the certificate request (CSR) is not valid PEM", step=step,
                        detail=str(exc)) from exc


def ari_cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 certID: base64url(AKI keyIdentifier) "." base64url(DER serial), unpadded."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    serial = cert.serial_number
    serial_der = serial.to_bytes((serial.bit_length() + 8) // 8, "big", signed=True)
    return f"{jose.b64encode(aki.key_identifier).decode()}.{jose.b64encode(serial_der).decode()}"
