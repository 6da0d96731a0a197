"""A software WebAuthn authenticator for the tests that run without a browser: it answers the
app's real options with real ES256 signatures, CBOR attestation ("none") and authenticator
data, the way a platform authenticator does (the browser tests use Chromium's virtual one).
Its flags and counter can be set to what a bad or cloned key would send."""
from __future__ import annotations

import hashlib
import json
import os

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url

UP, UV, AT = 0x01, 0x04, 0x40


class SoftKey:
    def __init__(self, origin: str = "http://localhost", rp_id: str = "localhost", verifies_user: bool = True):
        self.origin, self.rp_id, self.verifies_user = origin, rp_id, verifies_user
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(16)
        self.user_handle: bytes | None = None  # kept at registration: a discoverable credential
        self.count = 0

    @property
    def id(self) -> str:
        return bytes_to_base64url(self.credential_id)

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin,
                           "crossOrigin": False}).encode()

    def _auth_data(self, flags: int, extra: bytes = b"") -> bytes:
        return hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags]) + self.count.to_bytes(4, "big") + extra

    def _flags(self) -> int:
        return UP | (UV if self.verifies_user else 0)

    def register(self, options_json: str) -> str:
        """navigator.credentials.create()'s answer to the app's registration options, as JSON."""
        options = json.loads(options_json)
        self.user_handle = base64url_to_bytes(options["user"]["id"])
        numbers = self.key.public_key().public_numbers()
        cose = cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})
        attested = bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id + cose
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {},
                                   "authData": self._auth_data(self._flags() | AT, attested)})
        return json.dumps({"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": bytes_to_base64url(self._client_data(
                               "webauthn.create", options["challenge"])),
                               "attestationObject": bytes_to_base64url(attestation), "transports": ["internal"]}})

    def answer(self, options_json: str, *, count: int | None = None, user_handle: bytes | None = None) -> str:
        """navigator.credentials.get()'s answer to the app's authentication options, as JSON
        (the counter steps up unless `count` says what to send)."""
        options = json.loads(options_json)
        self.count = self.count + 1 if count is None else count
        client_data = self._client_data("webauthn.get", options["challenge"])
        auth_data = self._auth_data(self._flags())
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        handle = user_handle if user_handle is not None else self.user_handle
        return json.dumps({"id": self.id, "rawId": self.id, "type": "public-key", "clientExtensionResults": {},
                           "response": {"clientDataJSON": bytes_to_base64url(client_data),
                                        "authenticatorData": bytes_to_base64url(auth_data),
                                        "signature": bytes_to_base64url(signature),
                                        "userHandle": bytes_to_base64url(handle) if handle else None}})
