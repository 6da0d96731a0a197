"""Fixtures for the API tests: tokens made by the service, and their Authorization header."""
from __future__ import annotations

import pytest

from tests.lab.servers import TECH_ZONE
from tests.conftest import make_certificate
from webapp.services import ca_profiles, certificates, tags, tokens


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def make_token(app):
    """make_token(name, scopes, **restriction) -> the secret, shown once."""
    def make(name="panel", scopes=("read",), **kwargs):
        with app.app_context():
            return tokens.create(name, list(scopes), **kwargs).secret
    return make


@pytest.fixture
def api(app):
    return app.test_client()


@pytest.fixture
def profile_id(app):
    """A complete Let's Encrypt Staging profile (no network needed until issuance)."""
    with app.app_context():
        return ca_profiles.create({"name": "LE STAGING", "module": "letsencrypt", "email": "ops@example.com",
                                   "dns_zone": TECH_ZONE}, complete=True).id


@pytest.fixture
def two(app, profile_id):
    """Two certificates: one tagged web-03, one tagged web-04."""
    a = make_certificate(app, profile_id, "a.example.com")
    b = make_certificate(app, profile_id, "b.example.com")
    with app.app_context():
        tags.replace(certificates.get(a), ["web-03"])
        tags.replace(certificates.get(b), ["web-04"])
    return a, b
