"""The agent's side of the API: a conditional GET of what this token may deliver, the PEM
bundle of a version, and a report back. http.client, standard library only; one connection
serves a whole poll cycle (list, bundles, reports) and the agent closes it after."""
from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from .. import version

TIMEOUT = 30.0
MAX_BODY = 4 * 1024 * 1024
LIST_PATH = "api/v1/agent/certificates"
REPORT_PATH = "api/v1/agent/reports"
TOKEN_HINT = "create a new one with `sslmanager token create`"


class ApiError(Exception):
    """The server answered with an error, or could not be reached (status 0)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Answer:
    status: int
    etag: str
    data: Any


def _problem(status: int, body: bytes, what: str) -> str:
    """A sentence for the log: what was asked, what the server said, what to do."""
    detail = ""
    try:
        doc = json.loads(body)
        detail = str(doc.get("detail") or doc.get("title") or "")[:300]
    except (ValueError, AttributeError):
        pass
    if status == 401:
        return (f"{what}: the token was refused (401): revoked or expired; {TOKEN_HINT}"
                + (f" (server: {detail})" if detail else ""))
    if status == 403:
        return (f"{what}: forbidden (403): this token may not read it (it needs the keys:read "
                "scope and the certificate inside its restriction)" + (f" (server: {detail})" if detail else ""))
    return f"{what}: the server answered {status}" + (f": {detail}" if detail else "")


class Client:
    def __init__(self, server: str, token: str, agent: str, *, ca_bundle: str = "",
                 timeout: float = TIMEOUT, source: str | None = None):
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"--server: {server!r} is not an http(s) URL (e.g. https://ssl.example.net)")
        self.base = server.rstrip("/") + "/"
        self.token, self.agent, self.timeout = token, agent, timeout
        self._parts = parts
        self._context = None
        if parts.scheme == "https":
            self._context = ssl.create_default_context(cafile=ca_bundle or None)
        self._conn: http.client.HTTPConnection | None = None
        self._source = (source, 0) if source else None  # the local address to connect from

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self._parts.hostname, self._parts.port
            if self._context is not None:
                self._conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._context,
                                                         source_address=self._source)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout, source_address=self._source)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, url: str, *, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request on the kept-alive connection; a connection the server closed while idle
        is opened again once. OSError/HTTPException become ApiError(0, ...)."""
        target = urljoin(self.base, url)
        parts = urlsplit(target)
        if (parts.scheme, parts.netloc) != (self._parts.scheme, self._parts.netloc):
            raise ApiError(0, f"refusing {target}: not on {self.base}")  # the token stays on its server
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        sent = {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                "User-Agent": f"sslmanager-agent/{version.__version__}", "SSLManager-Agent": self.agent,
                **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                conn = self._connection()
                conn.request(method, path, body=payload, headers=sent)
                response = conn.getresponse()
                data = response.read(MAX_BODY + 1)
                if response.will_close:
                    self.close()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if attempt == 2:
                    raise ApiError(0, f"{self.base}: connection lost ({exc})") from None
            except ssl.SSLCertVerificationError as exc:
                self.close()
                raise ApiError(0, f"{self.base}: its TLS certificate is not trusted ({exc.verify_message}); "
                                  "pass the CA that signed it with --ca-bundle") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise ApiError(0, f"{self.base}: cannot reach the server ({exc})") from None
        raise AssertionError("unreachable")

    def certificates(self, etag: str) -> Answer:
        """What this token may deliver; Answer(304, etag, None) when unchanged since `etag`."""
        status, headers, body = self.request("GET", LIST_PATH, headers={"If-None-Match": etag} if etag else None)
        if status == 304:
            return Answer(304, headers.get("etag", etag), None)
        if status != 200:
            raise ApiError(status, _problem(status, body, "listing the certificates"))
        try:
            data = json.loads(body)
            items = data["certificates"]
            if not isinstance(items, list):
                raise TypeError("certificates is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(status, f"listing the certificates: not the answer expected ({exc})") from None
        return Answer(200, headers.get("etag", ""), data)

    def bundle(self, url: str) -> dict[str, str]:
        """A version's PEM bundle (the API's /certificates/<id>/pem with include_key: JSON with
        cert, chain, fullchain and key)."""
        status, _headers, body = self.request("GET", url)
        if status != 200:
            raise ApiError(status, _problem(status, body, f"fetching {url}"))
        try:
            data = json.loads(body)
            return {k: str(data[k]) for k in ("cert", "chain", "fullchain", "key")}
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(status, f"fetching {url}: not a PEM bundle ({exc})") from None

    def report(self, report: dict[str, Any]) -> None:
        status, _headers, body = self.request("POST", REPORT_PATH, body=report)
        if status not in (200, 201, 204):
            raise ApiError(status, _problem(status, body, "reporting the result"))
