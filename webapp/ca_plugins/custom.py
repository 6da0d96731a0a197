"""Any ACME CA by its directory URL: Pebble, step-ca, Buypass, Google Trust Services, SSL.com."""
from __future__ import annotations

from urllib.parse import urlsplit

from . import CAPlugin, ProfileView


class CustomAcme(CAPlugin):
    id = "custom"
    label = "Custom ACME"
    description = "Any RFC 8555 CA, by its directory URL, with an optional CA bundle for its TLS."
    custom_directory = True

    def validate(self, profile: ProfileView) -> dict[str, str]:
        url = profile.directory_url.strip()
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. "https://[::1/dir": an unclosed IPv6 bracket
            return {"directory_url": "Not a valid URL: check the host part (IPv6 addresses go in [ ])."}
        if not url:
            return {"directory_url": "Enter the CA's ACME directory URL, e.g. https://ca.example/acme/directory."}
        if parts.scheme != "https" or not parts.hostname:
            return {"directory_url": "Use an https:// URL with a host name (ACME requires HTTPS)."}
        return {}
