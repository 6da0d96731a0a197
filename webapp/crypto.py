"""Keys, CSRs, certificate parsing, and encryption of secrets at rest. No Flask here."""
from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, CryptoError

KEY_FILE = "encryption.key"
_PREFIX = "enc1"


def new_data_key() -> str:
    """A new data-encryption key: urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def decode_key(text: str, source: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text.strip().encode())
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise ConfigError(
            f"The encryption key from {source} is not valid: expected urlsafe base64 of 32 bytes.",
            hint="Restore the original key; generate a new one only for a new, empty database.")
    return raw


def key_id(raw: bytes) -> str:
    """A short public fingerprint of a key, stored with each secret so rotation knows which."""
    # start-up: cryptography's parts load on first use (a handed-off command needs none)
    import hashlib
    return hashlib.sha256(b"sslmanager-key-id" + raw).hexdigest()[:8]


@dataclass
class Keyring:
    """Encrypts with the primary key; decrypts with any key it holds (for rotation)."""

    primary: bytes
    others: tuple[bytes, ...] = ()

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        ct = AESGCM(self.primary).encrypt(nonce, plaintext.encode(), None)
        blob = base64.urlsafe_b64encode(nonce + ct).decode()
        return f"{_PREFIX}:{key_id(self.primary)}:{blob}"

    def decrypt(self, token: str) -> str:
        try:
            prefix, kid, blob = token.split(":", 2)
        except ValueError:
            raise CryptoError("A stored secret is not in the encrypted format.") from None
        if prefix != _PREFIX:
            raise CryptoError("A stored secret is not in the encrypted format.")
        for key in (self.primary, *self.others):
            if key_id(key) == kid:
                raw = base64.urlsafe_b64decode(blob.encode())
                try:
                    return AESGCM(key).decrypt(raw[:12], raw[12:], None).decode()
                except Exception:
                    raise CryptoError("A stored secret failed its integrity check.") from None
        raise CryptoError(
            "A stored secret was encrypted with a key SSL Manager does not have.",
            hint="Set SSLMANAGER_ENCRYPTION_KEY (or instance/encryption.key) to the key in use "
                 "when the secret was saved.")


def load_keyring(instance_path: str, configured: str | None, *, create: bool) -> Keyring:
    """The key from config, else instance/encryption.key; generated there (0600) on first run."""
    if configured:
        return Keyring(decode_key(configured, "SSLMANAGER_ENCRYPTION_KEY"))
    path = os.path.join(instance_path, KEY_FILE)
    if os.path.exists(path):
        try:
            with open(path, encoding="ascii") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(
                f"The encryption key file {path} cannot be read: {exc.strerror}.",
                hint="Fix its permissions (the app's user must read it) or set "
                     "SSLMANAGER_ENCRYPTION_KEY. Never delete it: secrets in the database "
                     "need it.") from None
        return Keyring(decode_key(text, path))
    if not create:
        raise ConfigError(f"No encryption key at {path}.",
                          hint="Run `sslmanager db upgrade` once, or set SSLMANAGER_ENCRYPTION_KEY.")
    write_key_file(path, new_data_key())
    return load_keyring(instance_path, None, create=False)


def write_key_file(path: str, key: str) -> None:
    """Write a key file with mode 0600, never replacing an existing one in place."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")


# -- certificate keys, CSRs and certificates ---------------------------------------------------

KEY_TYPES = {  # id -> label; ECDSA P-256 is the default
    "ec-p256": "ECDSA P-256", "ec-p384": "ECDSA P-384",
    "rsa-2048": "RSA 2048", "rsa-3072": "RSA 3072", "rsa-4096": "RSA 4096",
}


def generate_private_key(key_type: str) -> str:
    """A new private key of `key_type`, as unencrypted PKCS#8 PEM (stored encrypted by the caller)."""
    # start-up: cryptography's parts load on first use (a handed-off command needs none)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    if key_type == "ec-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "ec-p384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif key_type in ("rsa-2048", "rsa-3072", "rsa-4096"):
        key = rsa.generate_private_key(65537, int(key_type.split("-")[1]))
    else:
        raise CryptoError(f"Unknown key type {key_type!r}.", hint=f"Use one of {', '.join(KEY_TYPES)}.")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def make_csr(key_pem: str, names: list[str]) -> str:
    """A CSR for `names` (SANs; the first is also the CN when short enough)."""
    # start-up: cryptography's parts load on first use (a handed-off command needs none)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    builder = x509.CertificateSigningRequestBuilder().add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    if len(names[0]) <= 64:
        builder = builder.subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class CertInfo:
    serial: str
    issuer: str
    subject: str
    sans: list[str]
    not_before: object
    not_after: object
    sha256: str
    key_type: str


def split_pem_chain(fullchain: str) -> tuple[str, str]:
    """(leaf PEM, chain PEM) from a full chain."""
    marker = "-----END CERTIFICATE-----"
    parts = [p.strip() + "\n" + marker + "\n" for p in fullchain.split(marker) if "BEGIN CERTIFICATE" in p]
    return parts[0], "".join(parts[1:])


def cert_info(cert_pem: str) -> CertInfo:
    """What the detail page shows about a certificate."""
    # start-up: cryptography's parts load on first use (a handed-off command needs none)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        sans = []
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        key_type = f"ECDSA {public.curve.name}"
    elif isinstance(public, rsa.RSAPublicKey):
        key_type = f"RSA {public.key_size}"
    else:
        key_type = type(public).__name__
    return CertInfo(serial=f"{cert.serial_number:x}", issuer=cert.issuer.rfc4514_string(),
                    subject=cert.subject.rfc4514_string(), sans=list(sans),
                    not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                    sha256=cert.fingerprint(hashes.SHA256()).hex(":").upper(), key_type=key_type)


def key_matches_cert(key_pem: str, cert_pem: str) -> bool:
    """True when the certificate's public key is the private key's."""
    # start-up: cryptography's parts load on first use (a handed-off command needs none)
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


def pkcs12(key_pem: str, cert_pem: str, chain_pem: str, password: str, name: str, *,
           legacy: bool = False) -> bytes:
    """A PKCS#12 bundle protected by `password`: AES-256 (PBES2) as current OpenSSL expects, or
    with legacy=True 3DES and a SHA-1 MAC, the only kind older Windows and macOS import (as
    `openssl pkcs12 -legacy` and other tools offer it)."""
    # start-up: cryptography's parts load on first use (a handed-off command needs none)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12 as p12
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    cas = x509.load_pem_x509_certificates(chain_pem.encode()) if chain_pem.strip() else None
    if legacy:
        encryption = (serialization.PrivateFormat.PKCS12.encryption_builder()
                      .kdf_rounds(2048).key_cert_algorithm(p12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
                      .hmac_hash(hashes.SHA1()).build(password.encode()))
    else:
        encryption = serialization.BestAvailableEncryption(password.encode())
    return p12.serialize_key_and_certificates(name.encode(), key, cert, cas, encryption)
