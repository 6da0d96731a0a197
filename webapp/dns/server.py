"""SSL Manager's own authoritative DNS server for the technical zones whose provider is
"builtin": SOA, NS (+ glue A/AAAA for in-zone NS names) and the DNS-01 TXT values that
BuiltinProvider writes to sslm_dns_record. Run it with `sslmanager dns serve --listen
ADDR:PORT` (the CLI calls webapp.dns.serving.serve). Port 53 needs root or
CAP_NET_BIND_SERVICE, e.g. `setcap cap_net_bind_service=+ep` on the interpreter or
AmbientCapabilities= in a systemd unit.

Design, for ~15x what a naive asyncio + dnspython responder does here:
- The database is the only state. A refresher thread reads a cheap fingerprint of it every
  `cache_ms` and only when it changes loads a new Snapshot (builtin.load_snapshot): every
  answer section already in wire format. Several processes or nodes on one database
  therefore serve the same data, at most `cache_ms` (+ a few ms to load) late.
- The hot path never runs dnspython: it checks the header, walks the question's labels
  (no compression pointers are legal there), reads an OPT record if present, and joins
  header + the client's own question bytes (keeping its 0x20 case) + precomputed sections.
  Each snapshot also caches whole responses by the query's bytes after the id.
- UDP: one blocking socket per listen address, each served by its own thread; `workers` > 1
  (serving.serve) forks processes sharing the port with SO_REUSEPORT, one per core.
  TCP: one selector thread, pipelining, idle timeout, connection limits.
- Abuse: responses are never sent to responses; anything malformed is dropped (too short to
  answer) or gets a header-only FORMERR; ANY gets one synthesized HINFO (RFC 8482); UDP
  answers are capped at min(client payload, 1232) with TC set beyond; a token bucket per
  source address (IPv6: per /64) drops the excess and answers every `slip`-th excess query
  with an empty TC response so a real resolver behind a flooded address retries over TCP
  (webapp.dns.ratelimit).
"""
from __future__ import annotations

import logging
import selectors
import socket
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from .builtin import (
    ANY_ANSWER,
    EDNS_PAYLOAD,
    Snapshot,
    load_snapshot,
    read_fingerprint,
)
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)

CACHE_ENTRIES = 4096         # responses cached per snapshot (UDP-sized ones only): <= ~6 MB
TCP_IDLE_SECONDS = 10.0      # RFC 7766 suggests seconds, not minutes
TCP_MAX_CONNECTIONS = 256
TCP_MAX_PER_ADDRESS = 16
TCP_MAX_PENDING_OUTPUT = 256 * 1024

OPT, IXFR, AXFR, ANY = 41, 251, 252, 255
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5
QR, AA, TC = 0x80, 0x04, 0x02  # bits of the third header byte

_COUNTS = struct.Struct("!HHHH")
_TYPE_CLASS = struct.Struct("!HH")
# OPT after its root owner: type, payload size, extended rcode, version, flags, rdlength
_OPT_FIXED = struct.Struct("!HHBBHH")
_POINTER = struct.Struct("!H")


def _opt_rr(do: bool, ext_rcode: int = 0) -> bytes:
    return b"\x00" + _OPT_FIXED.pack(OPT, EDNS_PAYLOAD, ext_rcode, 0, 0x8000 if do else 0, 0)


_OPT_PLAIN, _OPT_DO = _opt_rr(False), _opt_rr(True)
_OPT_BADVERS = {False: _opt_rr(False, 1), True: _opt_rr(True, 1)}  # rcode 16 = 1 << 4 | 0


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
            return self._build(snapshot, data, udp, True)
        key = data[2:] if udp else b"tcp" + data[2:]  # TCP has another size limit
        cached = snapshot.responses.get(key)
        if cached is not None:
            return data[:2] + cached
        response = self._build(snapshot, data, udp, False)
        # Only well-formed queries: garbage must not push real answers out.
        if (response is not None and len(response) <= EDNS_PAYLOAD
                and response[3] & 0x0F != FORMERR):
            if len(snapshot.responses) >= CACHE_ENTRIES:  # random names: start over
                snapshot.responses.clear()
            snapshot.responses[key] = response[2:]
        return response

    def _build(self, snapshot: Snapshot, data: bytes, udp: bool, truncate: bool) -> bytes | None:
        """answer() without the cache: parse the query, look it up in `snapshot`."""
        n = len(data)
        if n < 12 or data[2] & QR:  # unanswerable, or a response: never reply to those
            return None
        b2 = QR | (data[2] & 0x79)   # opcode and RD copied
        b3 = data[3] & 0x10          # CD copied; RA, AD stay clear
        if data[2] & 0x78:           # not a QUERY (UPDATE, NOTIFY, ...)
            return data[:2] + bytes((b2, b3 | NOTIMP)) + b"\0" * 8
        qd, an, ns, ar = _COUNTS.unpack_from(data, 4)
        if qd != 1 or an or ns or ar > 1:
            return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
        pos, labels = 12, []
        while True:
            if pos >= n:
                return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
            length = data[pos]
            if length == 0:
                break
            if length > 63:  # a compression pointer (or reserved label type) in a question
                return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
            labels.append(pos)
            pos += length + 1
        pos += 1
        qend = pos + 4
        if pos > 12 + 255 or qend > n:
            return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
        qtype, qclass = _TYPE_CLASS.unpack_from(data, pos)
        limit = 512 if udp else 65535
        opt = b""
        if ar:
            if qend + 11 > n or data[qend] != 0:
                return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
            rtype, payload, _, version, eflags, rdlen = _OPT_FIXED.unpack_from(data, qend + 1)
            if rtype != OPT or qend + 11 + rdlen != n:
                return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
            if version:
                return (data[:2] + bytes((b2, b3)) + _COUNTS.pack(1, 0, 0, 1)
                        + data[12:qend] + _OPT_BADVERS[bool(eflags & 0x8000)])
            opt = _OPT_DO if eflags & 0x8000 else _OPT_PLAIN
            if udp:
                limit = min(max(payload, 512), EDNS_PAYLOAD)
        elif qend != n:
            return data[:2] + bytes((b2, b3 | FORMERR)) + b"\0" * 8
        question = data[12:qend]
        arcount = 1 if opt else 0

        zones = snapshot.zones
        name = data[12:pos].lower()
        zone = None
        for off in labels:  # longest match first
            zone = zones.get(name[off - 12:])
            if zone is not None:
                break
        if zone is None or qclass != 1 or qtype == AXFR or qtype == IXFR:
            return (data[:2] + bytes((b2, b3 | REFUSED)) + _COUNTS.pack(1, 0, 0, arcount)
                    + question + opt)
        if truncate:
            return (data[:2] + bytes((b2 | AA | TC, b3)) + _COUNTS.pack(1, 0, 0, arcount)
                    + question + opt)
        node = zone.nodes.get(name)
        if node is not None:
            rrset = node.get(qtype)
            if rrset is None and qtype == ANY:
                rrset = ANY_ANSWER  # RFC 8482: one HINFO, not everything
            if rrset is not None:
                response = (data[:2] + bytes((b2 | AA, b3))
                            + _COUNTS.pack(1, rrset.count, 0, rrset.extra_count + arcount)
                            + question + rrset.wire + rrset.extra + opt)
                if len(response) > limit:
                    return (data[:2] + bytes((b2 | AA | TC, b3)) + _COUNTS.pack(1, 0, 0, arcount)
                            + question + opt)
                return response
            rcode = NOERROR
        else:
            rcode = NOERROR if name in zone.empty else NXDOMAIN
        # Negative answer: the SOA in authority, its owner a pointer to the apex in the question.
        return (data[:2] + bytes((b2 | AA, b3 | rcode)) + _COUNTS.pack(1, 0, 1, arcount)
                + question + _POINTER.pack(0xC000 | off) + zone.negative_soa + opt)

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
