"""Fixtures shared by the page tests."""
from __future__ import annotations

import pytest

from tests.lab.servers import TECH_ZONE
from webapp.services import ca_profiles


@pytest.fixture
def profile_id(app):
    """A complete Let's Encrypt Staging profile (no network needed until issuance)."""
    with app.app_context():
        return ca_profiles.create({"name": "LE STAGING", "module": "letsencrypt", "email": "ops@example.com",
                                   "dns_zone": TECH_ZONE}, complete=True).id
