"""A fault-injecting HTTPS reverse proxy in front of a real Pebble: scripted answers (503,
429 with Retry-After), network faults (a delayed answer, a connection closed without an
answer, a reset, a download that stalls), rewritten order statuses, an extended directory
(renewalInfo, profiles), ARI documents, and a record of every request (to count requests per
endpoint)."""
from __future__ import annotations

import base64
import io
import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

import requests

from .dnsservers import TECH_ZONE
from .http import http_server, pebble_tls

# Pebble's paths, for counting and matching (Pebble 2.4).
NEW_ORDER = "/order-plz"
FINALIZE = "/finalize-order/"
CERTIFICATE = "/certZ/"
ORDER = "/my-order/"


@dataclass
class _Fault:
    """One network misbehaviour for the next `times` matching requests."""

    method: str
    prefix: str
    kind: str              # "delay" | "drop" | "reset" | "stall" | "status"
    times: int
    forward: bool = True   # drop/reset: after Pebble has handled the request (the answer is lost)
    seconds: float = 0.0   # delay, stall
    status: str = ""       # status: the order status to show instead of Pebble's
    hits: list[float] = field(default_factory=list)  # when it fired (time.monotonic())

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and path.startswith(self.prefix)


class FaultProxy:
    """HTTPS reverse proxy in front of a real Pebble that injects scripted answers, extends
    the directory and serves ARI. Pebble builds its URLs from the Host header; it must be
    HTTPS because Pebble 2.4 checks each JWS "url" against https:// whatever
    X-Forwarded-Proto says. It serves Pebble's own listener certificate (valid for
    127.0.0.1), so clients trust it with pebble.ca_bundle."""

    def __init__(self, pebble) -> None:
        self.pebble = pebble
        self.upstream = requests.Session()  # kept for callers; each server thread has its own
        self.faults: list[tuple[Callable[[str, str], bool], int, dict[str, str], bytes]] = []
        self.network_faults: list[_Fault] = []
        self.seen: list[tuple[str, str, bytes]] = []
        self.answered: list[tuple[str, str, int]] = []  # what Pebble said (badNonce included)
        self.orders: list[list[str]] = []  # the names of each order Pebble created
        self.probe_orders: list[list[str]] = []  # Save and Test's probe orders (TECH_ZONE)
        self.directory_extra: dict[str, str] = {}
        self.meta_extra: dict = {}
        self.ari: dict[str, tuple[dict, dict[str, str]]] = {}
        self.extra_headers: dict[str, dict[str, str]] = {}  # path prefix -> headers to add
        self.base = ""
        self._lock = threading.Lock()
        self._sessions = threading.local()

    # -- scripting ----------------------------------------------------------------------------

    def inject(self, method: str, path_prefix: str, status: int, *, times: int = 1,
               headers: dict[str, str] | None = None, problem: dict | None = None) -> None:
        """Answer the next `times` matching requests with `status` (and a problem document)."""
        body = json.dumps(problem).encode() if problem else b"<html>oops</html>"
        ctype = "application/problem+json" if problem else "text/html"
        with self._lock:
            for _ in range(times):
                self.faults.append((lambda m, p: m == method and p.startswith(path_prefix),
                                    status, {"Content-Type": ctype, **(headers or {})}, body))

    def delay(self, method: str, path_prefix: str, seconds: float, *, times: int = 1) -> _Fault:
        """Answer the next `times` matching requests `seconds` late (Pebble handles them at once)."""
        return self._add(_Fault(method, path_prefix, "delay", times, seconds=seconds))

    def drop(self, method: str, path_prefix: str, *, times: int = 1, forward: bool = False) -> _Fault:
        """Close the connection without an answer; with forward=True Pebble handles the
        request first, so it takes effect and only the answer is lost."""
        return self._add(_Fault(method, path_prefix, "drop", times, forward=forward))

    def reset(self, method: str, path_prefix: str, *, times: int = 1, forward: bool = False) -> _Fault:
        """Reset the TCP connection (RST, no TLS close_notify) instead of answering; with
        forward=True after Pebble has handled the request. (Python's TLS client reports the
        RST as the end of the stream: "Remote end closed connection without response".)"""
        return self._add(_Fault(method, path_prefix, "reset", times, forward=forward))

    def stall(self, method: str, path_prefix: str, seconds: float, *, times: int = 1) -> _Fault:
        """Send Pebble's status line, headers and half the body, then nothing for `seconds`,
        then close: a download that stops in the middle."""
        return self._add(_Fault(method, path_prefix, "stall", times, seconds=seconds))

    def rewrite_status(self, method: str, path_prefix: str, status: str, *, times: int = 1) -> _Fault:
        """Show `status` instead of Pebble's in the JSON "status" of the next matching answers
        (e.g. a stored order that comes back "invalid")."""
        return self._add(_Fault(method, path_prefix, "status", times, status=status))

    def _add(self, fault: _Fault) -> _Fault:
        with self._lock:
            self.network_faults.append(fault)
        return fault

    def _take(self, method: str, path: str, kinds: tuple[str, ...]) -> _Fault | None:
        with self._lock:
            for fault in self.network_faults:
                if fault.kind in kinds and fault.matches(method, path):
                    fault.times -= 1
                    fault.hits.append(time.monotonic())
                    return fault
        return None

    # -- what happened ------------------------------------------------------------------------

    def count(self, method: str, path_prefix: str, *, status: int | None = None) -> int:
        """Requests the proxy received for the endpoint, or with `status`, the ones Pebble
        answered with that status (badNonce rejections and injected answers not included)."""
        if status is None:
            return sum(1 for m, p, _ in list(self.seen) if m == method and p.startswith(path_prefix))
        return sum(1 for m, p, s in list(self.answered)
                   if m == method and p.startswith(path_prefix) and s == status)

    def new_orders(self) -> int:
        """Orders Pebble created for certificates (newOrder answered 201; probe_orders apart)."""
        return len(self.orders)

    def ordered_names(self) -> Counter[str]:
        """How many created orders named each identifier."""
        return Counter(name for names in list(self.orders) for name in names)

    def posted_payloads(self, path_prefix: str) -> list[dict]:
        """Decoded JWS payloads POSTed to paths starting with path_prefix."""
        return [_payload(body) for method, path, body in list(self.seen)
                if method == "POST" and path.startswith(path_prefix)]

    # -- serving ------------------------------------------------------------------------------

    def __call__(self, req: BaseHTTPRequestHandler) -> tuple[int, dict[str, str], bytes]:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        self.seen.append((req.command, req.path, body))
        with self._lock:
            for i, (matches, status, headers, fault_body) in enumerate(self.faults):
                if matches(req.command, req.path):
                    del self.faults[i]
                    return status, headers, fault_body
        before = self._take(req.command, req.path, ("drop", "reset"))
        if before is not None and not before.forward:
            return self._hang_up(req, before.kind)
        if req.path.startswith("/ari/") and req.path in self.ari:
            doc, headers = self.ari[req.path]
            return 200, {"Content-Type": "application/json", **headers}, json.dumps(doc).encode()
        status, headers, content = self._forward(req, body)
        if before is not None:  # Pebble has acted on it; the client never hears
            return self._hang_up(req, before.kind)
        # A rewritten status is for an answer that has one: a badNonce refusal (Pebble refuses
        # some) must not use it up, or the retried request shows the real status.
        kinds = ("delay", "stall", "status") if 200 <= status < 300 else ("delay", "stall")
        fault = self._take(req.command, req.path, kinds)
        if fault is not None and fault.kind == "status":
            content = _with_status(content, fault.status)
        elif fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault is not None and fault.kind == "stall":
            return self._stall(req, status, headers, content, fault.seconds)
        return status, headers, content

    def _session(self) -> requests.Session:
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
        return session

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        host = self.base.split("//", 1)[1]
        upstream = self._session().request(
            req.command, f"https://127.0.0.1:{self.pebble.port}{req.path}", data=body or None,
            headers={"Host": host, "Content-Type": req.headers.get("Content-Type", "")},
            verify=self.pebble.ca_bundle, timeout=10)
        content = upstream.content
        if req.command == "GET" and req.path == "/dir":
            directory = upstream.json()
            directory.update({k: v if "://" in v else self.base + v  # absolute: as given
                              for k, v in self.directory_extra.items()})
            directory["meta"].update(self.meta_extra)
            content = json.dumps(directory).encode()
        keep = ("Content-Type", "Location", "Link", "Replay-Nonce", "Retry-After")
        headers = {k: upstream.headers[k] for k in keep if k in upstream.headers}
        self.answered.append((req.command, req.path, upstream.status_code))
        if req.command == "POST" and req.path.startswith(NEW_ORDER) and upstream.status_code == 201:
            names = [i["value"] for i in _payload(body).get("identifiers", [])]
            # Save and Test's probe order (which challenges does the CA offer?) is for the
            # technical zone's own name: kept apart, it is no certificate's order.
            (self.probe_orders if names == [TECH_ZONE] else self.orders).append(names)
        for prefix, extra in self.extra_headers.items():
            if req.path.startswith(prefix):
                headers.update(extra)
        return upstream.status_code, headers, content

    @staticmethod
    def _take_over(req: BaseHTTPRequestHandler) -> io.BufferedIOBase:
        """The real output stream; the server's own answer afterwards goes nowhere."""
        real = req.wfile
        req.wfile = io.BytesIO()  # type: ignore[assignment]
        req.close_connection = True
        return real

    def _hang_up(self, req: BaseHTTPRequestHandler, kind: str) -> tuple[int, dict[str, str], bytes]:
        self._take_over(req)
        sock = req.connection
        try:
            if kind == "reset":  # linger 0: close() sends RST at once
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if kind == "reset":
            req.rfile.close()  # drop the handler's reference, or close() waits for it (and
            sock.close()       # the server's later shutdown would send a FIN, not the RST)
        return 599, {}, b""

    def _stall(self, req: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
               content: bytes, seconds: float) -> tuple[int, dict[str, str], bytes]:
        out = self._take_over(req)
        head = [f"HTTP/1.1 {status} Stalled"] + [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Content-Length: {len(content)}", "Connection: close"]
        try:
            out.write(("\r\n".join(head) + "\r\n\r\n").encode() + content[: len(content) // 2])
            out.flush()
            time.sleep(seconds)
            req.connection.shutdown(socket.SHUT_RDWR)
        except OSError:  # the client gave up first
            pass
        return 599, {}, b""


def _payload(body: bytes) -> dict:
    """The decoded payload of a JWS request body ({} for POST-as-GET)."""
    payload = json.loads(body)["payload"]
    return json.loads(base64.urlsafe_b64decode(payload + "==")) if payload else {}


def _with_status(content: bytes, status: str) -> bytes:
    try:
        doc = json.loads(content)
    except ValueError:
        return content
    if isinstance(doc, dict) and "status" in doc:
        doc["status"] = status
        return json.dumps(doc).encode()
    return content


@contextmanager
def running_proxy(pebble) -> Iterator[FaultProxy]:
    """A FaultProxy serving on loopback with Pebble's listener certificate."""
    fault_proxy = FaultProxy(pebble)
    with http_server(fault_proxy, tls=pebble_tls(pebble)) as base:
        fault_proxy.base = base
        yield fault_proxy
