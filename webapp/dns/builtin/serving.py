"""`sslmanager dns serve`: the builtin DNS server as one worker process per core sharing the
port (fork, SO_REUSEPORT), or as this process alone, until SIGTERM or SIGINT."""
from __future__ import annotations

import gc
import logging
import os
import signal
import threading

from sqlalchemy.engine import Engine

from .server import DnsServer
from .zone import parse_listen

log = logging.getLogger(__name__)


def default_workers() -> int:
    """One worker per core. Python answers on one core per process, and one process under a
    malformed-packet flood lets good queries go unanswered where two did not (bench/dns_server.py)."""
    return os.cpu_count() or 1


def serve(engine: Engine, listen_text: str, *, workers: int | None = None, **options) -> None:
    """Serve until SIGTERM/SIGINT on 'ADDR:PORT[,ADDR:PORT]' (the CLI's `dns serve`).

    workers > 1 forks that many processes sharing each port with SO_REUSEPORT; None means
    default_workers(), 1 serves in this process. Port 53 needs root or CAP_NET_BIND_SERVICE.
    Other keyword options go to DnsServer.
    """
    workers = default_workers() if workers is None else workers
    listen = parse_listen(listen_text)
    if not listen:
        raise ValueError("no listen address given (ADDR:PORT, comma separated)")
    if workers <= 1:
        _serve_here(engine, listen, **options)
        return
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # child: its own connections (never share a pool across fork)
            code = 0
            try:
                engine.dispose(close=False)
                _serve_here(engine, listen, reuse_port=True, **options)
            except BaseException:
                log.exception("builtin DNS worker failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    def forward(signum, _frame):
        for child in children:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        os.waitpid(child, 0)


def _serve_here(engine: Engine, listen: list[tuple[str, int]], **options) -> None:
    server = DnsServer(engine, listen, **options)
    # Before it answers: a SIGTERM from whoever saw it answer must stop it, not kill it.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: server._stopping.set())
    server.start()
    # Our own process: move everything loaded so far (SQLAlchemy, Flask, ...) out of the
    # collector's reach, so a full collection never walks it in the middle of a query.
    gc.freeze()
    server.serve_forever()
