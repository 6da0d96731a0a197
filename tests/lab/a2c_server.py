"""Serve acme2certifier's WSGI app over TLS, with a request log and a few lab switches.

Runs INSIDE the acme2certifier venv (.lab/a2c-venv), never in the app's: it imports only the
standard library and acme2certifier. Started by tests/lab/acme2certifier.py as

    python a2c_server.py HOST PORT CERT_PEM KEY_PEM WORKDIR

with ACME_SRV_CONFIGFILE pointing at the acme_srv.cfg in WORKDIR. In WORKDIR it appends one JSON
line per request to requests.jsonl and reads control.json (if present) at every request:
- "refuse_replaces": true answers a newOrder whose payload has `replaces` with 409
  alreadyReplaced itself (a CA that refuses `replaces`), with a fresh nonce from the real app;
- "config": {section: {option: value}} is written into the app's live config before each
  request: options the app reads per request (e.g. [Renewalinfo]) change with no restart.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import socketserver
import sqlite3
import ssl
import sys
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

NEW_ORDER_PATH = "/acme/neworders"
NONCE_PATH = "/acme/newnonce"
ORDER_PATH = "/acme/order/"

# acme2certifier 0.46.3 marks a failed challenge and its authorization invalid but leaves the
# order "pending" for ever, against RFC 8555 7.1.6 ("invalid": an authorization failed). The
# lab repairs that before each order request, so a client polling the order sees what the CA
# decided: invalid, and the authorization's error.
INVALIDATE_ORDER = """
UPDATE orders SET status_id = (SELECT id FROM status WHERE name = 'invalid')
WHERE name = :name AND status_id = (SELECT id FROM status WHERE name = 'pending')
  AND EXISTS (SELECT 1 FROM "authorization" a WHERE a.order_id = orders.id
              AND a.status_id = (SELECT id FROM status WHERE name = 'invalid'))
"""


def _b64json(text: str):
    """Decode a base64url JSON part of a JWS; None for an empty payload (POST-as-GET)."""
    if not text:
        return None
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return {"undecodable": text}


class LabMiddleware:
    """Log each request, apply control.json, and answer alreadyReplaced when told to."""

    def __init__(self, app, config, workdir: str) -> None:
        self.app = app
        self.config = config
        self.log_path = os.path.join(workdir, "requests.jsonl")
        self.db_path = os.path.join(workdir, "acme_srv.db")
        self.control_path = os.path.join(workdir, "control.json")
        self.lock = threading.Lock()

    def control(self) -> dict:
        try:
            with open(self.control_path, encoding="utf8") as handle:
                return json.load(handle)
        except FileNotFoundError:
            return {}

    def __call__(self, environ, start_response):
        control = self.control()
        with self.lock:
            for section, options in control.get("config", {}).items():
                if not self.config.has_section(section):
                    self.config.add_section(section)
                for option, value in options.items():
                    self.config.set(section, option, str(value))
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        entry = {"time": time.time(), "method": environ["REQUEST_METHOD"],
                 "path": environ.get("PATH_INFO", "")}
        if entry["method"] == "POST" and body:
            try:
                jws = json.loads(body)
                entry["protected"] = _b64json(jws.get("protected", ""))
                entry["payload"] = _b64json(jws.get("payload", ""))
            except (ValueError, AttributeError):
                entry["body"] = body.decode("utf8", "replace")
        payload = entry.get("payload")
        if (control.get("refuse_replaces") and entry["path"].endswith(NEW_ORDER_PATH)
                and isinstance(payload, dict) and "replaces" in payload):
            status, headers, chunks = self.already_replaced(environ)
            entry["answered_by"] = "lab"
        else:
            if entry["path"].startswith(ORDER_PATH) and not entry["path"].endswith("/finalize"):
                self.order_follows_authorizations(entry["path"][len(ORDER_PATH):])
            status, headers, chunks = self.call_app(environ)
        entry["status"] = int(status.split()[0])
        nonce = [value for name, value in headers if name.lower() == "replay-nonce"]
        if nonce:
            entry["replay_nonce"] = nonce[0]
        # Logged before the answer leaves: a client that got its answer finds the line.
        with self.lock, open(self.log_path, "a", encoding="utf8") as log:
            log.write(json.dumps(entry) + "\n")
        start_response(status, headers)
        return chunks

    def order_follows_authorizations(self, order_name: str) -> None:
        """See INVALIDATE_ORDER: a pending order with an invalid authorization is invalid."""
        with sqlite3.connect(self.db_path, timeout=10) as db:
            db.execute(INVALIDATE_ORDER, {"name": order_name})

    def call_app(self, environ):
        """Run the real app to completion: (status, headers, body chunks)."""
        captured = {}

        def start_response(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        result = self.app(environ, start_response)
        try:
            chunks = [bytes(chunk) for chunk in result]
        finally:
            if hasattr(result, "close"):
                result.close()
        return captured["status"], captured["headers"], chunks

    def already_replaced(self, environ):
        """409 alreadyReplaced with a nonce the real app issued, so the client can go on."""
        nonce_environ = dict(environ, REQUEST_METHOD="HEAD", PATH_INFO=NONCE_PATH,
                             CONTENT_LENGTH="0", QUERY_STRING="")
        nonce_environ["wsgi.input"] = io.BytesIO(b"")
        _status, headers, _chunks = self.call_app(nonce_environ)
        nonce = {k.lower(): v for k, v in headers}["replay-nonce"]
        body = json.dumps({
            "type": "urn:ietf:params:acme:error:alreadyReplaced",
            "detail": "the certificate named in 'replaces' was already replaced (lab switch)",
            "status": 409,
        }).encode()
        return "409 Conflict", [("Content-Type", "application/problem+json"),
                                ("Replay-Nonce", nonce), ("Cache-Control", "no-store"),
                                ("Content-Length", str(len(body)))], [body]


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """wsgiref's server, one thread per connection (ACME clients poll while others wait)."""

    daemon_threads = True
    allow_reuse_address = True


class QuietHandler(WSGIRequestHandler):
    """No reverse DNS for the access log line; the JSON log is the record."""

    def address_string(self) -> str:
        return self.client_address[0]

    def log_message(self, *args) -> None:
        pass


def keep_validation_errors() -> None:
    """acme2certifier 0.46.3's SQLite handler drops a failed challenge's error: its
    challenge_update() never writes the validation_error column it reads back, so the challenge
    and its authorization come back invalid with no "error" (RFC 8555 7.1.4 and 8: the problem
    document of a failed challenge). The lab writes the column after the handler's update."""
    import sqlite3 as sqlite

    from acme2certifier.dbhandlers import wsgi_handler

    original = wsgi_handler.DBstore.challenge_update

    def challenge_update(self, data_dic):
        error = data_dic.get("validation_error")
        original(self, data_dic)
        if error:
            with sqlite.connect(self.db_name, timeout=10) as db:
                db.execute("UPDATE challenge SET validation_error = ? WHERE name = ?",
                           (error, data_dic["name"]))
    wsgi_handler.DBstore.challenge_update = challenge_update


def main() -> None:
    host, port, cert, key, workdir = sys.argv[1:6]
    # Imported only now: the module reads ACME_SRV_CONFIGFILE and opens the database at import.
    from acme2certifier.share import acme2certifier_wsgi as a2c

    keep_validation_errors()

    app = LabMiddleware(a2c.application, a2c.CONFIG, workdir)
    server = make_server(host, int(port), app, server_class=ThreadingWSGIServer,
                         handler_class=QuietHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    # wsgiref sets wsgi.url_scheme from the HTTPS environment variable.
    server.base_environ["HTTPS"] = "on"
    print(f"acme2certifier lab server on https://{host}:{port}", flush=True)
    server.serve_forever(poll_interval=0.05)


if __name__ == "__main__":
    main()
