"""ZeroSSL: ACME with External Account Binding. With an account API access key, EAB comes
from ZeroSSL's REST API so certificates appear in the ZeroSSL dashboard; with no key at all,
temporary EAB is fetched per certificate by email and each certificate gets its own account."""
from __future__ import annotations

import logging
import re

import requests

from ..errors import AcmeError, AcmeNetworkError
from . import CAPlugin, EabCredentials, ProfileView

API_URL = "https://api.zerossl.com"
_ACCESS_KEY = re.compile(r"(access_key=)[^&\s\"']+")


class _MaskAccessKey(logging.Filter):
    """ZeroSSL takes the access key in the query string, and urllib3 logs every request line
    at DEBUG: mask the key before the record reaches any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "access_key=" in message:
            record.msg, record.args = _ACCESS_KEY.sub(r"\1••••••", message), ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_MaskAccessKey())


class ZeroSSL(CAPlugin):
    id = "zerossl"
    label = "ZeroSSL"
    description = "ACME with EAB; add an account API key so certificates show in your ZeroSSL account."
    directories = {"production": ("ZeroSSL", "https://acme.zerossl.com/v2/DV90")}
    default_key = "production"
    supports_api_key = True

    def _api(self) -> str:
        return self.settings.get("api_url", API_URL).rstrip("/")

    def _fetch(self, url: str, params: dict, data: dict, timeout: float, step: str) -> EabCredentials:
        verify = self.settings.get("ca_bundle") or True
        shown = url  # the access key goes in params, never in messages
        try:
            resp = requests.post(url, params=params, data=data, timeout=timeout, verify=verify)
        except requests.RequestException as exc:
            raise AcmeNetworkError(f"ZeroSSL API unreachable: {type(exc).__name__}", step=step,
                                   url=shown, hint="Check network access to the ZeroSSL API.") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code != 200 or not body.get("success"):
            error = body.get("error") or {}
            detail = error.get("type") or error.get("info") or resp.text[:200]
            raise AcmeError("ZeroSSL refused to issue EAB credentials", step=step, url=shown,
                            detail=str(detail), status=resp.status_code,
                            hint="Check the account API key in the ZeroSSL dashboard (Developer section).")
        return EabCredentials(body["eab_kid"], body["eab_hmac_key"], "")

    def eab_credentials(self, profile: ProfileView, *, timeout: float) -> EabCredentials | None:
        if profile.eab_kid and profile.eab_hmac:
            return EabCredentials(profile.eab_kid, profile.eab_hmac, "profile")
        if profile.api_key:
            creds = self._fetch(f"{self._api()}/acme/eab-credentials", {"access_key": profile.api_key},
                                {}, timeout, "ZeroSSL EAB from API key")
            creds.source = "ZeroSSL API key"
            return creds
        return None

    def account_per_certificate(self, profile: ProfileView) -> bool:
        return not (profile.api_key or (profile.eab_kid and profile.eab_hmac))

    def certificate_eab(self, profile: ProfileView, *, timeout: float) -> EabCredentials | None:
        creds = self._fetch(f"{self._api()}/acme/eab-credentials-email", {}, {"email": profile.email},
                            timeout, "ZeroSSL temporary EAB")
        creds.source = "ZeroSSL temporary (email)"
        return creds
