"""Keys, CSRs, certificate parsing, and encryption of secrets at rest. No Flask here."""
from __future__ import annotations

import base64
import os
import secrets
import stat
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, CryptoError

KEY_FILE = "encryption.key"
_PREFIX = "enc1"


def new_data_key() -> str:
    """A new data-encryption key: urlsafe base64 of 32 random bytes."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def _decode_key(text: str, source: str) -> bytes:
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
        return Keyring(_decode_key(configured, "SSLMANAGER_ENCRYPTION_KEY"))
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
        return Keyring(_decode_key(text, path))
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


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random token."""
    return secrets.token_urlsafe(nbytes)
