"""Outbound HTTP that goes only where it was allowed to: a requests adapter that judges each
host once (resolving it once) and then connects to the very address it judged. The Host
header, TLS SNI and the certificate check keep the name. A DNS answer that changes after the
check (rebinding) therefore cannot send a request somewhere else. No Flask here: the judge
is passed in (services/addresses.py builds it from the app's settings)."""
from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import requests
import requests.adapters

# url -> (the address to connect to, None), or (None, why not); (None, None) when the name
# does not resolve (the request then fails in its own words).
Judge = Callable[[str], "tuple[str | None, str | None]"]


class RefusedAddress(requests.ConnectionError):
    """The judge refused the host: no connection was made."""


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class JudgedAdapter(requests.adapters.HTTPAdapter):
    """Mount on a Session for http:// and https://. Each host name is judged on first use
    (verdicts kept for the adapter's life, e.g. one issuance); IP literals are judged too but
    need no pinning."""

    def __init__(self, judge: Judge, *, pins: dict[str, str] | None = None) -> None:
        super().__init__(max_retries=0)
        self.judge = judge
        self.pins: dict[str, str] = dict(pins or {})  # host name -> address
        self.lock = threading.Lock()

    def address_for(self, url: str) -> str | None:
        host = (urlsplit(url).hostname or "").lower().rstrip(".")
        with self.lock:
            if host in self.pins:
                return self.pins[host]
        address, problem = self.judge(url)
        if problem:
            raise RefusedAddress(problem)
        if address:
            with self.lock:
                self.pins[host] = address
        return address

    def problem(self, url: str) -> str | None:
        """Why `url`'s host may not be used (None if it may), judged once like a request's."""
        try:
            self.address_for(url)
        except RefusedAddress as exc:
            return str(exc)
        return None

    def send(self, request, *args, **kwargs):
        parts = urlsplit(request.url)
        address = self.address_for(request.url)
        if address and not _is_ip(parts.hostname or ""):
            request.headers["Host"] = parts.netloc.rpartition("@")[2]  # the name, not the address
        return super().send(request, *args, **kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        host = host_params["host"].lower().rstrip(".")
        with self.lock:
            address = self.pins.get(host)
        if address and not _is_ip(host):
            host_params["host"] = address
            if host_params["scheme"] == "https":
                pool_kwargs["server_hostname"] = host
                pool_kwargs["assert_hostname"] = host
        return host_params, pool_kwargs


def guard(session: requests.Session, judge: Judge, *, pins: dict[str, str] | None = None) -> JudgedAdapter:
    """Make every request of `session` go through `judge` (and pinned addresses); returns the
    adapter, whose verdicts other checks can share (`problem`)."""
    adapter = JudgedAdapter(judge, pins=pins)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return adapter
