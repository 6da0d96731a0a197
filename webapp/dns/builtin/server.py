"""SSL Manager's own authoritative DNS server for the technical zones whose provider is
"builtin": SOA, NS (+ glue A/AAAA for in-zone NS names) and the DNS-01 TXT values that
BuiltinProvider writes to sslm_dns_record. Run it with `sslmanager dns serve --listen
ADDR:PORT` (the CLI calls serving.serve). Port 53 needs root or CAP_NET_BIND_SERVICE, e.g.
`setcap cap_net_bind_service=+ep` on the interpreter or AmbientCapabilities= in a systemd unit.

Design, for ~15x what a naive asyncio + dnspython responder does here:
- The database is the only state. A refresher thread reads a cheap fingerprint of it every
  `cache_ms` and only when it changes loads a new Snapshot (snapshot.load_snapshot): every
  answer section already in wire format. Several processes or nodes on one database
  therefore serve the same data, at most `cache_ms` (+ a few ms to load) late.
- The hot path (answer.respond) never runs dnspython. Each snapshot also caches whole
  responses by the query's bytes after the id.
- UDP: one blocking socket per listen address, each served by its own thread; `workers` > 1
  (serving.serve, one per core by default) forks processes sharing the port with
  SO_REUSEPORT. TCP: one selector thread, pipelining, idle timeout, connection limits.
- Abuse: responses are never sent to responses; malformed queries get silence or FORMERR
  (answer.py); a token bucket per source address (IPv6: per /64) drops the excess and
  answers every `slip`-th excess query with an empty TC response so a real resolver behind
  a flooded address retries over TCP (ratelimit.py).
"""
from __future__ import annotations

import logging
import selectors
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from .answer import FORMERR, respond
from .ratelimit import RateLimiter
from .snapshot import EDNS_PAYLOAD, Snapshot, load_snapshot, read_fingerprint

log = logging.getLogger(__name__)

CACHE_ENTRIES = 4096         # responses cached per snapshot (UDP-sized ones only): <= ~6 MB
TCP_IDLE_SECONDS = 10.0      # RFC 7766 suggests seconds, not minutes
TCP_MAX_CONNECTIONS = 256
TCP_MAX_PER_ADDRESS = 16
TCP_MAX_PENDING_OUTPUT = 256 * 1024


# -- the server --------------------------------------------------------------------------------

class DnsServer:
    """Authoritative server for every builtin zone in the database behind `engine`.

    listen: (host, port) pairs; port 0 picks a free one (see `addresses` after start()).
    rate_limit: queries/s per source address over UDP (0 turns limiting off); burst: bucket
    size; slip: every slip-th excess query gets an empty TC answer, the rest are dropped.
    cache_ms: how often the database is checked for changes; 0 checks on every query
    (slow: for tests that query right after writing).
    """

    def __init__(self, engine: Engine, listen: list[tuple[str, int]], *,
                 rate_limit: float = 200, burst: int = 400, slip: int = 2,
                 cache_ms: int = 50, reuse_port: bool = False):
        if not listen:
            raise ValueError("no listen address")
        self.engine = engine
        self.listen = list(listen)
        self.cache_ms = cache_ms
        self.reuse_port = reuse_port
        self.limiter = RateLimiter(rate_limit, burst, slip) if rate_limit > 0 else None
        self.snapshot = Snapshot()
        self.addresses: list[tuple[str, int]] = []
        self.stats: dict[str, int] = defaultdict(int)
        self._udp: list[socket.socket] = []
        self._tcp: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._wakeup: tuple[socket.socket, socket.socket] | None = None  # stops the TCP select
        self._check_lock = threading.Lock()
        self._last_error_log = 0.0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> "DnsServer":
        """Load the zones, bind every address, start the threads; return once listening."""
        self.snapshot = load_snapshot(self.engine)  # fail early on a broken database
        try:
            for host, port in self.listen:
                udp, tcp = self._bind_pair(host, port)
                self._udp.append(udp)
                self._tcp.append(tcp)
                self.addresses.append((host, udp.getsockname()[1]))
        except OSError:
            self._close_sockets()
            raise
        for udp in self._udp:
            self._spawn(self._serve_udp, udp)
        self._wakeup = socket.socketpair()
        self._spawn(self._serve_tcp)
        if self.cache_ms > 0:
            self._spawn(self._refresh_loop)
        names = ", ".join(sorted(z.name for z in self.snapshot.zones.values())) or "none yet"
        log.info("builtin DNS server on %s serving %s",
                 ", ".join(f"{h}:{p}" for h, p in self.addresses), names)
        return self

    def serve_forever(self) -> None:
        """start() if needed, then block until stop() (or Ctrl-C)."""
        if not self._threads:
            self.start()
        try:
            while not self._stopping.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop every thread and close the sockets; safe to call twice."""
        self._stopping.set()
        for sock in self._udp:
            try:  # Linux wakes a reader blocked in recvfrom() with an empty datagram
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._wakeup:
            self._wakeup[1].send(b"x")
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5)
        self._threads = []
        self._close_sockets()

    def __enter__(self) -> "DnsServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True,
                                  name=f"dns-{target.__name__.strip('_')}")
        thread.start()
        self._threads.append(thread)

    def _bind_pair(self, host: str, port: int) -> tuple[socket.socket, socket.socket]:
        """UDP and TCP sockets on one port; port 0 retries until a port is free for both."""
        for attempt in range(50):
            udp = self._bind(host, port, socket.SOCK_DGRAM)
            try:
                return udp, self._bind(host, udp.getsockname()[1], socket.SOCK_STREAM)
            except OSError:
                udp.close()
                if port or attempt == 49:
                    raise
        raise AssertionError("unreachable")

    def _bind(self, host: str, port: int, kind: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if kind == socket.SOCK_DGRAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                if host in ("0.0.0.0", "::"):
                    # Reply from the address the query came to, not the route's choice.
                    level, opt = ((socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO)
                                  if family == socket.AF_INET6 else (socket.IPPROTO_IP, 8))
                    sock.setsockopt(level, opt, 1)  # 8 = IP_PKTINFO (not in Python 3.11)
            sock.bind((host, port))
            if kind == socket.SOCK_STREAM:
                sock.listen(128)
                sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _close_sockets(self) -> None:
        for sock in self._udp + self._tcp + list(self._wakeup or ()):
            sock.close()
        self._udp, self._tcp, self._wakeup = [], [], None

    # -- database ------------------------------------------------------------------------

    def _refresh_loop(self) -> None:
        while not self._stopping.wait(self.cache_ms / 1000):
            self.refresh()

    def refresh(self) -> bool:
        """Reload the snapshot if the database changed; True if it did. Errors keep the old one."""
        with self._check_lock:
            try:
                fingerprint = read_fingerprint(self.engine)
                if fingerprint == self.snapshot.fingerprint:
                    return False
                snapshot = load_snapshot(self.engine, fingerprint)
            except Exception as exc:  # keep serving what we have; say so, once in a while
                self._log_error("reading the database failed, serving the last data: %s", exc)
                return False
            self.snapshot = snapshot  # one reference swap: readers see old or new, whole
        log.debug("builtin DNS: reloaded, serials %s",
                  {z.name: z.serial for z in snapshot.zones.values()})
        return True

    def _log_error(self, message: str, *args, exc_info: bool = False) -> None:
        """Log an error at most every 10 s: a flood of bad packets must not flood the log."""
        now = time.monotonic()
        if now - self._last_error_log > 10:
            self._last_error_log = now
            log.error("builtin DNS: " + message, *args, exc_info=exc_info)

    # -- answering -----------------------------------------------------------------------

    def answer(self, data: bytes, *, udp: bool = True, truncate: bool = False) -> bytes | None:
        """The wire response to one query, or None to send nothing. truncate: empty TC reply."""
        if self.cache_ms <= 0:
            self.refresh()
        snapshot = self.snapshot
        if truncate:
            return respond(snapshot, data, udp, True)
        key = data[2:] if udp else b"tcp" + data[2:]  # TCP has another size limit
        cached = snapshot.responses.get(key)
        if cached is not None:
            return data[:2] + cached
        response = respond(snapshot, data, udp, False)
        # Only well-formed queries: garbage must not push real answers out.
        if (response is not None and len(response) <= EDNS_PAYLOAD
                and response[3] & 0x0F != FORMERR):
            if len(snapshot.responses) >= CACHE_ENTRIES:  # random names: start over
                snapshot.responses.clear()
            snapshot.responses[key] = response[2:]
        return response

    # -- UDP -----------------------------------------------------------------------------

    def _serve_udp(self, sock: socket.socket) -> None:
        answer, limiter, stopping = self.answer, self.limiter, self._stopping
        pktinfo = sock.getsockname()[0] in ("0.0.0.0", "::")
        recvfrom, sendto, recvmsg, sendmsg = sock.recvfrom, sock.sendto, sock.recvmsg, sock.sendmsg
        monotonic, ALLOW, SLIP = time.monotonic, RateLimiter.ALLOW, RateLimiter.SLIP
        ancillary: list = []
        data = b""
        while not stopping.is_set():
            try:
                if pktinfo:
                    data, ancillary, _, addr = recvmsg(4096, 64)
                else:
                    data, addr = recvfrom(4096)
                if not data:
                    continue
                truncate = False
                if limiter is not None:
                    verdict = limiter.check(addr[0], monotonic())
                    if verdict != ALLOW:
                        self.stats["rate_limited"] += 1
                        if verdict != SLIP:
                            continue
                        truncate = True
                response = answer(data, truncate=truncate)
                if response is None:
                    self.stats["dropped"] += 1
                elif pktinfo:
                    sendmsg([response], _reply_from(ancillary), 0, addr)
                else:
                    sendto(response, addr)
            except OSError as exc:
                if stopping.is_set():
                    return
                self.stats["send_errors"] += 1  # unreachable client, full buffers: skip it
                self._log_error("UDP: %s", exc)
            except Exception:  # a bug must cost one packet, not the server
                self.stats["errors"] += 1
                self._log_error("UDP: failed on a %d-byte packet", len(data), exc_info=True)

    # -- TCP -----------------------------------------------------------------------------

    def _serve_tcp(self) -> None:
        selector = selectors.DefaultSelector()
        for sock in self._tcp:
            selector.register(sock, selectors.EVENT_READ, None)
        selector.register(self._wakeup[0], selectors.EVENT_READ, "wakeup")
        conns: dict[socket.socket, _TcpConn] = {}
        last_sweep = time.monotonic()
        try:
            while not self._stopping.is_set():
                for key, events in selector.select(timeout=1.0):
                    if key.data == "wakeup":
                        return
                    if key.data is None:
                        self._accept(key.fileobj, selector, conns)
                    else:
                        self._tcp_event(key.data, events, selector, conns)
                now = time.monotonic()
                if now - last_sweep > 1:
                    last_sweep = now
                    for conn in [c for c in conns.values() if now - c.seen > TCP_IDLE_SECONDS]:
                        self._tcp_close(conn, selector, conns)
        finally:
            for conn in list(conns.values()):
                self._tcp_close(conn, selector, conns)
            selector.close()

    def _accept(self, listener, selector, conns) -> None:
        for _ in range(64):
            try:
                sock, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: try again on the next event
                self._log_error("TCP accept: %s", exc)
                return
            peer = addr[0]
            if (len(conns) >= TCP_MAX_CONNECTIONS
                    or sum(c.peer == peer for c in conns.values()) >= TCP_MAX_PER_ADDRESS):
                self.stats["tcp_refused"] += 1
                sock.close()
                continue
            sock.setblocking(False)
            conn = _TcpConn(sock, peer)
            conns[sock] = conn
            selector.register(sock, selectors.EVENT_READ, conn)

    def _tcp_event(self, conn: "_TcpConn", events, selector, conns) -> None:
        try:
            if events & selectors.EVENT_READ:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    return self._tcp_close(conn, selector, conns)
                conn.seen = time.monotonic()
                conn.inbuf += chunk
                while len(conn.inbuf) >= 2:
                    size = int.from_bytes(conn.inbuf[:2], "big")
                    if len(conn.inbuf) < 2 + size:
                        break
                    message = bytes(conn.inbuf[2:2 + size])
                    del conn.inbuf[:2 + size]
                    response = self.answer(message, udp=False)
                    if response is not None:
                        conn.outbuf += len(response).to_bytes(2, "big") + response
            if conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
            if len(conn.outbuf) > TCP_MAX_PENDING_OUTPUT:  # a client that never reads
                return self._tcp_close(conn, selector, conns)
            wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
            if wanted != conn.events:
                conn.events = wanted
                selector.modify(conn.sock, wanted, conn)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._tcp_close(conn, selector, conns)
        except Exception:
            self.stats["errors"] += 1
            self._log_error("TCP: failed on a message", exc_info=True)
            self._tcp_close(conn, selector, conns)

    @staticmethod
    def _tcp_close(conn, selector, conns) -> None:
        conns.pop(conn.sock, None)
        try:
            selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()


@dataclass(slots=True, eq=False)
class _TcpConn:
    sock: socket.socket
    peer: str
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    seen: float = field(default_factory=time.monotonic)
    events: int = selectors.EVENT_READ


def _reply_from(ancillary: list) -> list:
    """Ancillary data making a wildcard socket reply from the address the query was sent to."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == 8 and len(data) >= 12:  # in_pktinfo
            return [(level, kind, b"\0\0\0\0" + data[8:12] + b"\0\0\0\0")]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(data) >= 20:
            return [(level, kind, data[:20])]  # in6_pktinfo: address + interface
    return []
