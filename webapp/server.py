"""The server behind `sslmanager run`: waitress, and for HTTPS a TLS front in front of it.

Waitress speaks plain HTTP only. For HTTPS each connection is accepted here, its TLS handshake
done with the Python ssl module, and the decrypted stream handed to waitress as one of its own
connections (over a socket pair): waitress still parses every request and runs the app on its
threads, and sees the real client address and an https scheme. The certificate is looked up
for every new connection, so a renewed one (a replaced file, or a new version of a certificate
SSL Manager manages) is served without a restart.
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
from typing import Any, Callable, Protocol

import waitress
from flask import Flask

from . import db
from .errors import ConfigError
from .services import certificates

log = logging.getLogger("sslmanager.server")

HANDSHAKE_SECONDS = 10      # a client that does not finish its handshake is dropped
IDLE_SECONDS = 120          # nor one that sends nothing for this long
MAX_CONNECTIONS = 200       # TLS connections served at once; more wait in the listen queue
RECHECK_SECONDS = 30        # how often a managed certificate's current version is looked up


class Server(Protocol):
    effective_port: int

    def run(self) -> None: ...

    def close(self) -> None: ...


def body_limit(app: Flask) -> int:
    """What waitress reads at most: well over SSLMANAGER_MAX_CONTENT_LENGTH, so a body just over
    it still reaches the app and gets its 413 page; a far larger one is refused unread."""
    return int(app.config["SSLMANAGER_MAX_CONTENT_LENGTH"]) * 2 + 65536


def make_server(app: Flask, host: str, port: int, threads: int = 8,
                contexts: "ContextSource | None" = None, ident: str = "") -> Server:
    """A server for `app` on host:port (port 0: any free one), HTTPS when `contexts` is given.
    ident="": no Server header (nothing to tell a scanner which software answers)."""
    options = {"threads": threads, "ident": ident, "max_request_body_size": body_limit(app),
               # Waitress drops X-Forwarded-* itself; behind trusted proxies the app's ProxyFix
               # (SSLMANAGER_TRUSTED_PROXIES) must see them, and is the one place they are read.
               "clear_untrusted_proxy_headers": not app.config.get("SSLMANAGER_TRUSTED_PROXIES")}
    if contexts is None:
        return PlainServer(waitress.create_server(app, host=host, port=port, **options))
    return TLSServer(app, host, port, contexts, options)


def _stop(server: Any, running: bool) -> None:
    """Close a waitress server and its connections on its own loop thread (closing a socket
    under its select() from another thread fails it with EBADF); its loop then ends."""
    done = threading.Event()

    def close_all() -> None:
        for dispatcher in list(server._map.values()):
            try:
                dispatcher.close()
            except OSError:
                pass
        done.set()
    if running:
        try:
            server.trigger.pull_trigger(close_all)
        except OSError:  # the loop already closed its trigger (it stopped): close from here
            running = False
    if not done.wait(5 if running else 0):
        close_all()
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)


class PlainServer:
    """Waitress on host:port, plain HTTP."""

    def __init__(self, inner: Any):
        self.inner, self.effective_port, self._running = inner, inner.effective_port, False

    def run(self) -> None:
        self._running = True
        self.inner.run()

    def close(self) -> None:
        _stop(self.inner, self._running)


# -- certificates to serve ----------------------------------------------------------------------

class ContextSource(Protocol):
    def current(self) -> ssl.SSLContext: ...


def _context(certfile: str, keyfile: str) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


class FileContexts:
    """A certificate and key in PEM files (--tls-cert, --tls-key), reloaded when either changes."""

    def __init__(self, certfile: str, keyfile: str):
        self.files = (certfile, keyfile)
        self._lock = threading.Lock()
        self._stamp: Any = None
        self._context: ssl.SSLContext | None = None
        try:
            self.current()
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-cert {certfile} / --tls-key {keyfile}: {exc}",
                              hint="Give a PEM certificate (with its chain) and the PEM private key "
                                   "that belongs to it, both readable by this user.") from None

    def current(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = tuple((s.st_mtime_ns, s.st_size, s.st_ino) for s in map(os.stat, self.files))
                if stamp != self._stamp:
                    self._stamp = stamp  # a bad pair is tried once, then again when a file changes
                    self._context = _context(*self.files)
                    log.info("serving the certificate in %s", self.files[0])
            except (OSError, ssl.SSLError) as exc:
                if self._context is None:
                    raise
                # Mid-replacement (the certificate written, the key not yet): keep the last good
                # pair until the files change again.
                log.warning("could not load %s / %s (%s); still serving the previous certificate",
                            *self.files, exc)
            assert self._context is not None
            return self._context


class ManagedContexts:
    """The current version of a certificate SSL Manager manages (--tls-from-certificate ID):
    looked up at most every RECHECK_SECONDS, loaded again when a renewal made a new one."""

    def __init__(self, app: Flask, cert_id: int, clock: Callable[[], float] = time.monotonic):
        self.app, self.cert_id, self.clock = app, cert_id, clock
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._version: Any = None
        self._context: ssl.SSLContext | None = None
        self.current()

    def _load(self) -> None:
        with self.app.app_context():
            try:
                cert = certificates.get(self.cert_id)
                version = certificates.current_version(cert)
                if version is None:
                    raise ConfigError(f"--tls-from-certificate {self.cert_id}: the certificate has no "
                                      "issued version yet.", hint="Wait until it is Active, then start again.")
                if version.id == self._version:
                    return
                files = certificates.export_files(cert, version)
                names, version_id, number = ", ".join(cert.domains), version.id, version.number
            finally:
                db.session().remove()
        folder = tempfile.mkdtemp(prefix="sslmanager-tls-")  # 0700: the key is there for a moment
        try:
            paths = []
            for name in ("fullchain.pem", "privkey.pem"):
                path = os.path.join(folder, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(files[name])
                paths.append(path)
            self._context = _context(*paths)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self._version = version_id
        log.info("serving certificate #%d (%s), version %s", self.cert_id, names, number)

    def current(self) -> ssl.SSLContext:
        with self._lock:
            if self.clock() - self._checked >= RECHECK_SECONDS or self._context is None:
                self._checked = self.clock()
                try:
                    self._load()
                except Exception:
                    if self._context is None:
                        raise
                    log.warning("could not look up certificate #%d; still serving the version "
                                "loaded before", self.cert_id, exc_info=True)
            assert self._context is not None
            return self._context


# -- the TLS front -----------------------------------------------------------------------------

class TLSServer:
    """HTTPS on host:port in front of a waitress server that listens on nothing reachable (a
    Unix socket in a private folder): connections reach it only through this front."""

    def __init__(self, app: Flask, host: str, port: int, contexts: ContextSource,
                 options: dict[str, Any]):
        self.contexts = contexts
        self._folder = tempfile.mkdtemp(prefix="sslmanager-http-")
        self.inner = waitress.create_server(app, unix_socket=os.path.join(self._folder, "http.sock"),
                                            unix_socket_perms="600", url_scheme="https", **options)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, port), family=family, backlog=128)
        self.effective_port = self.listener.getsockname()[1]
        self.inner.effective_port, self.inner.server_name = self.effective_port, host  # type: ignore[union-attr]
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._closed = threading.Event()
        self._inner_thread: threading.Thread | None = None

    def run(self) -> None:
        self._inner_thread = threading.Thread(target=self.inner.run, name="waitress", daemon=True)
        self._inner_thread.start()
        while not self._closed.is_set():
            try:
                raw, address = self.listener.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            self._slots.acquire()
            threading.Thread(target=self._connection, args=(raw, address), name="tls", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        self.listener.close()
        _stop(self.inner, self._inner_thread is not None)
        if self._inner_thread is not None:
            self._inner_thread.join(timeout=5)
        shutil.rmtree(self._folder, ignore_errors=True)

    def _connection(self, raw: socket.socket, address: Any) -> None:
        ours = theirs = tls = None
        try:
            raw.settimeout(HANDSHAKE_SECONDS)
            tls = self.contexts.current().wrap_socket(raw, server_side=True)
            tls.settimeout(IDLE_SECONDS)
            ours, theirs = socket.socketpair()
            ours.settimeout(IDLE_SECONDS)
            self._hand_over(theirs, address)
            theirs = None  # waitress owns it now
            _pump(tls, ours)
        except (OSError, ValueError):
            pass  # a failed handshake, a reset, a timeout: that connection ends, nothing else
        except Exception:
            log.warning("TLS connection from %s failed", address[0], exc_info=True)
        finally:
            for sock in (ours, theirs, tls, raw):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
            self._slots.release()

    def _hand_over(self, sock: socket.socket, address: Any) -> None:
        """Give waitress one end of the pair as if it had accepted it from `address`; done on
        waitress's own loop thread (its connection map is not shared between threads)."""
        inner = self.inner
        inner.trigger.pull_trigger(  # type: ignore[union-attr]
            lambda: inner.channel_class(inner, sock, address[:2], inner.adj, map=inner._map))  # type: ignore[union-attr]


def _pump(tls: ssl.SSLSocket, plain: socket.socket) -> None:
    """Copy both ways until either side closes or stays silent for IDLE_SECONDS. TLS may hold
    decrypted bytes select() cannot see: `pending()` is asked first."""
    while True:
        ready = [tls] if tls.pending() else select.select([tls, plain], [], [], IDLE_SECONDS)[0]
        if not ready:
            return
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            (plain if sock is tls else tls).sendall(data)
