"""A fault-injecting HTTPS reverse proxy in front of a real Pebble: scripted answers (503,
429 with Retry-After, resets), an extended directory (renewalInfo, profiles), ARI documents,
and a record of every request (to count requests per endpoint)."""
from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler

import requests

from .http import http_server, pebble_tls


class FaultProxy:
    """HTTPS reverse proxy in front of a real Pebble that injects scripted answers, extends
    the directory and serves ARI. Pebble builds its URLs from the Host header; it must be
    HTTPS because Pebble 2.4 checks each JWS "url" against https:// whatever
    X-Forwarded-Proto says. It serves Pebble's own listener certificate (valid for
    127.0.0.1), so clients trust it with pebble.ca_bundle."""

    def __init__(self, pebble) -> None:
        self.pebble = pebble
        self.upstream = requests.Session()
        self.faults: list[tuple[Callable[[str, str], bool], int, dict[str, str], bytes]] = []
        self.seen: list[tuple[str, str, bytes]] = []
        self.answered: list[tuple[str, str, int]] = []  # what Pebble said (badNonce included)
        self.directory_extra: dict[str, str] = {}
        self.meta_extra: dict = {}
        self.ari: dict[str, tuple[dict, dict[str, str]]] = {}
        self.extra_headers: dict[str, dict[str, str]] = {}  # path prefix -> headers to add
        self.base = ""

    def inject(self, method: str, path_prefix: str, status: int, *, times: int = 1,
               headers: dict[str, str] | None = None, problem: dict | None = None) -> None:
        """Answer the next `times` matching requests with `status` (and a problem document)."""
        body = json.dumps(problem).encode() if problem else b"<html>oops</html>"
        ctype = "application/problem+json" if problem else "text/html"
        for _ in range(times):
            self.faults.append((lambda m, p: m == method and p.startswith(path_prefix),
                                status, {"Content-Type": ctype, **(headers or {})}, body))

    def posted_payloads(self, path_prefix: str) -> list[dict]:
        """Decoded JWS payloads POSTed to paths starting with path_prefix."""
        out = []
        for method, path, body in self.seen:
            if method == "POST" and path.startswith(path_prefix):
                payload = json.loads(body)["payload"]
                out.append(json.loads(base64.urlsafe_b64decode(payload + "==")) if payload else {})
        return out

    def __call__(self, req: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        self.seen.append((req.command, req.path, body))
        for i, (matches, status, headers, fault_body) in enumerate(self.faults):
            if matches(req.command, req.path):
                del self.faults[i]
                return status, headers, fault_body
        if req.path.startswith("/ari/") and req.path in self.ari:
            doc, headers = self.ari[req.path]
            return 200, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()
        host = self.base.split("//", 1)[1]
        upstream = self.upstream.request(
            req.command, f"https://127.0.0.1:{self.pebble.port}{req.path}", data=body or None,
            headers={"Host": host, "Content-Type": req.headers.get("Content-Type", "")},
            verify=self.pebble.ca_bundle, timeout=10)
        content = upstream.content
        if req.command == "GET" and req.path == "/dir":
            directory = upstream.json()
            directory.update({k: self.base + v for k, v in self.directory_extra.items()})
            directory["meta"].update(self.meta_extra)
            content = json.dumps(directory).encode()
        keep = ("Content-Type", "Location", "Link", "Replay-Nonce", "Retry-After")
        headers = {k: upstream.headers[k] for k in keep if k in upstream.headers}
        self.answered.append((req.command, req.path, upstream.status_code))
        for prefix, extra in self.extra_headers.items():
            if req.path.startswith(prefix):
                headers.update(extra)
        return upstream.status_code, headers, content


@contextmanager
def running_proxy(pebble) -> Iterator[FaultProxy]:
    """A FaultProxy serving on loopback with Pebble's listener certificate."""
    fault_proxy = FaultProxy(pebble)
    with http_server(fault_proxy, tls=pebble_tls(pebble)) as base:
        fault_proxy.base = base
        yield fault_proxy
