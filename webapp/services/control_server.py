"""The service's end of webapp.control: `sslmanager run` and `sslmanager worker` listen on a Unix
socket in the instance folder (mode 0600, and the peer must be the service's own user or root)
and run the `cert process` jobs the `sslmanager` command hands them, with the same code and the
same printed lines as the command run by itself (bulk.process_and_report)."""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import struct
import threading
import time
from typing import Any

from .. import config as config_module
from ..control import VERSION, fingerprint
from . import audit, bulk

log = logging.getLogger("sslmanager.control")

MAX_REQUEST = 64 * 1024
MAX_IDS = 10_000
STANDBY_SECONDS = 10  # how often a standing-by service looks whether the socket is free


class ControlServer:
    """One listening socket and a thread per connection. `close()` stops taking jobs; jobs in
    flight go on (their orders are claimed, so nothing else starts them meanwhile)."""

    def __init__(self, app, path: str, database: str):
        self.app = app
        self.path = path
        self.database = database
        self._sock: socket.socket | None = None
        self._inode = 0
        self._closing = threading.Event()

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def listen(self) -> bool:
        """Bind the socket; False (and a log line saying why) when another service on this
        instance already listens, or the path cannot be used."""
        if os.path.exists(self.path) and not _stale(self.path):
            log.info("control socket %s: another service listens there; this one stands by",
                     self.path)
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_mask = os.umask(0o177)  # born 0600: no window in which another user could connect
        try:
            sock.bind(self.path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:  # another service of the instance was quicker
                log.info("control socket %s: taken by another service; this one stands by",
                         self.path)
            else:
                log.warning("control socket %s: %s; `sslmanager cert process` will work in its "
                            "own process (set SSLMANAGER_CONTROL_SOCKET to another path, or "
                            "\"off\")", self.path, exc)
            return False
        finally:
            os.umask(old_mask)
        sock.listen(64)
        self._sock, self._inode = sock, os.stat(self.path).st_ino
        threading.Thread(target=self._accept, name="sslm-control", daemon=True).start()
        log.info("control socket %s: taking `cert process` jobs", self.path)
        return True

    def stand_by(self) -> None:
        """Another process on this instance has the socket (several workers): take it over
        when that one stops, so `cert process` keeps a service to hand its jobs to."""
        def watch() -> None:
            while not self._closing.wait(STANDBY_SECONDS) and not self.listening:
                if not os.path.exists(self.path) or _stale(self.path):
                    self.listen()
        threading.Thread(target=watch, name="sslm-control-standby", daemon=True).start()

    def close(self) -> None:
        self._closing.set()
        if self._sock is None:
            return
        try:
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._sock.close()
        try:
            if os.stat(self.path).st_ino == self._inode:  # never remove a successor's socket
                os.unlink(self.path)
        except OSError:
            pass

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                if self._closing.is_set():
                    return
                time.sleep(0.1)  # out of descriptors, say: no busy loop while it lasts
                continue
            uid = _peer_uid(conn)
            if uid not in (os.getuid(), 0):
                log.warning("control socket: refused a connection from uid %s", uid)
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn, uid), name="sslm-control-job",
                             daemon=True).start()

    def _serve(self, conn: socket.socket, uid: int) -> None:
        reply = _Replies(conn)
        try:
            conn.settimeout(5)
            try:
                with conn.makefile("rb") as reader:
                    request = json.loads(reader.readline(MAX_REQUEST) or b"null")
            except (OSError, ValueError):
                request = None
            why = self._refusal(request)
            if why:
                reply.send(refused=why)
                return
            conn.settimeout(None)
            log.info("control: cert process %s (wait %ss) handed over by the command",
                     " ".join(map(str, request["ids"])), request["wait"])
            # Audited as the command's user, as if it had done the work itself.
            with audit.acting_as(audit.cli_actor(uid)):
                code = bulk.process_and_report(self.app, request["ids"], float(request["wait"]),
                                               request.get("concurrency"),
                                               out=lambda line: reply.send(out=line),
                                               err=lambda line: reply.send(err=line), shared=True)
            reply.send(exit=code)
        except Exception as exc:  # a bug must reach the operator, not kill the service
            log.exception("control: the job crashed")
            reply.send(err=f"error: the service failed: {type(exc).__name__}: {exc}")
            reply.send(exit=1)
        finally:
            conn.close()

    def _refusal(self, request: Any) -> str:
        """Why the request is not taken ("" when it is): the command then works by itself."""
        if not isinstance(request, dict) or request.get("version") != VERSION:
            return f"speaks version {VERSION} of the protocol"
        if request.get("command") != "cert-process":
            return "takes cert-process only"
        if request.get("database") != self.database:
            return "serves another database"
        ids, wait, limit = request.get("ids"), request.get("wait"), request.get("concurrency")
        if (not isinstance(ids, list) or not 0 < len(ids) <= MAX_IDS
                or not all(isinstance(i, int) and i > 0 for i in ids)):
            return "ids: a list of certificate IDs"
        if not isinstance(wait, (int, float)) or not 0 <= wait <= 86_400:
            return "wait: 0 to 86400 seconds"
        if limit is not None and not (isinstance(limit, int) and 1 <= limit <= 64):
            return "concurrency: 1 to 64"
        return ""


class _Replies:
    """Lines to the command; once it has gone (^C), the job goes on without it."""

    def __init__(self, conn: socket.socket):
        self.conn = conn
        self.gone = False
        self.lock = threading.Lock()  # several pool threads report at once

    def send(self, **message: Any) -> None:
        with self.lock:
            if self.gone:
                return
            try:
                self.conn.sendall(json.dumps(message).encode() + b"\n")
            except OSError:
                self.gone = True


def _stale(path: str) -> bool:
    """True when nothing listens at the socket path (a service that died); it is removed."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1)
    try:
        probe.connect(path)
        return False
    except (ConnectionRefusedError, FileNotFoundError):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def start(app) -> ControlServer | None:
    """Listen for this instance's `sslmanager cert process` (in `run` and `worker`), or stand by
    while another process of the instance does; None when SSLMANAGER_CONTROL_SOCKET is "off",
    the path cannot be used, or the app shares a host panel's database (the `sslmanager`
    command could not name that one)."""
    state = app.extensions["sslmanager"]
    path = config_module.control_socket(app.config, state.instance_path)
    url = app.config.get("SSLMANAGER_DATABASE_URL") or (
        config_module.database_url(app.config, state.instance_path) if state.standalone else None)
    if not path or not url:
        return None
    server = ControlServer(app, path, fingerprint(url))
    if not server.listen():
        if not os.path.exists(path):
            return None  # the path itself cannot be used (logged)
        server.stand_by()
    return server
