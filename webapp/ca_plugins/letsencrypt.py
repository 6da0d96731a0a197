"""Let's Encrypt, production and staging."""
from __future__ import annotations

from . import CAPlugin


class LetsEncrypt(CAPlugin):
    id = "letsencrypt"
    label = "Let's Encrypt"
    description = "Free, automated certificates. Start on Staging, then switch to production."
    directories = {
        "staging": ("Let's Encrypt Staging", "https://acme-staging-v02.api.letsencrypt.org/directory"),
        "production": ("Let's Encrypt", "https://acme-v02.api.letsencrypt.org/directory"),
    }
    default_key = "staging"  # preselected: test the flow without spending production limits
    max_names = 100
