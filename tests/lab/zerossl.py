"""A local stand-in for ZeroSSL's REST API EAB endpoints, handing out a lab Pebble's EAB keys.

It follows ZeroSSL's documented contract:
  POST /acme/eab-credentials?access_key=KEY   -> {"success": true, "eab_kid": ..., "eab_hmac_key": ...}
  POST /acme/eab-credentials-email  (email=)  -> the same shape, temporary credentials
  errors: {"success": false, "error": {"code": 101, "type": "invalid_access_key"}}
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class ZeroSSLApi:
    """Serve on 127.0.0.1 (plain HTTP): `url`, `valid_access_key`, `requests` (what was asked)."""

    def __init__(self, eab_keys: dict[str, str], valid_access_key: str = "lab-access-key"):
        self.eab_keys = list(eab_keys.items())
        self.valid_access_key = valid_access_key
        self.requests: list[tuple[str, dict]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _handler(self):
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                api.requests.append((parts.path, {**query, **form}))
                if parts.path == "/acme/eab-credentials":
                    if query.get("access_key") != api.valid_access_key:
                        return self._send(401, {"success": False, "error": {"code": 101, "type": "invalid_access_key"}})
                    kid, hmac = api.eab_keys[0]
                elif parts.path == "/acme/eab-credentials-email":
                    if "@" not in form.get("email", ""):
                        return self._send(400, {"success": False, "error": {"code": 2900, "type": "invalid_email"}})
                    kid, hmac = api.eab_keys[-1]
                else:
                    return self._send(404, {"success": False, "error": {"code": 404, "type": "not_found"}})
                self._send(200, {"success": True, "eab_kid": kid, "eab_hmac_key": hmac})

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def __enter__(self) -> "ZeroSSLApi":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
