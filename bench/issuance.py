"""Issuance latency, throughput and protocol cost: SSL Manager vs a reference client vs lego.

All on one lab (tests/lab: Pebble with PEBBLE_VA_NOSLEEP=1 and PEBBLE_AUTHZREUSE=0, BIND behind
Unbound), ECDSA P-256 keys, `_acme-challenge.<domain>` CNAMEd into acme.tech.test where the
TXT values are written by RFC 2136 + TSIG.

    .venv/bin/python -m bench.issuance [--runs 5] [--full] [--json OUT] [--profile]

Latency (existing account, CNAMEs in place), for one name, apex + wildcard, ten names:
  SSL Manager  `sslmanager cert process ID --wait 60`, wall time of the whole command, on a
               fresh certificate made beforehand with `sslmanager cert add`, twice: handed to
               `sslmanager run` serving the instance (its scheduler off, so it never races the
               command), and by itself with --here; and the in-process time from its "new
               order" timeline line to its "dns: removed" line (sslm_timeline_event.at,
               written when each line is flushed)
  reference    bench/reference_client.py as a process: wall time, and the same span
               (newOrder answered .. TXT cleanup done) from its own clock
  lego         `lego run`, wall time (its fastest honest settings, printed below)
Throughput: 100 single-name certificates at concurrency 1 and 8, every client as separate
processes: certificates per minute, CPU seconds per certificate and peak RSS of one process
(both from wait4's rusage of each child). lego does fewer unless --full.
Protocol cost per issuance: ACME HTTP requests by endpoint, counted by a small HTTPS reverse
proxy in front of Pebble (Pebble builds its URLs from the Host header), and DNS UPDATE
messages and records, counted from BIND's log (named -g logs each signed update).
"""
from __future__ import annotations

import argparse
import compileall
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.lab.servers import (TECH_ZONE, TSIG_ALGORITHM, TSIG_KEY_NAME,  # noqa: E402
                               TSIG_SECRET, Bind, Pebble, Unbound)

CUSTOMER_ZONE = "bench.test"
SCENARIOS = {
    "one": ("one name", ["one.bench.test"]),
    "aw": ("apex + wildcard", ["aw.bench.test", "*.aw.bench.test"]),
    "ten": ("ten names", [f"s{i}.ten.bench.test" for i in range(10)]),
}
PYTHON = sys.executable
SSLM_CLI = str(Path(sys.executable).parent / "sslmanager")
LEGO = shutil.which("lego") or "/usr/bin/lego"
LEGO_SETTINGS = {
    # lego sleeps one polling interval before its propagation check even with
    # --dns.disable-cp (dns01.Challenge.Solve): 0 removes the sleep (default 2 s).
    "RFC2136_POLLING_INTERVAL": "0",
    # The rfc2136 provider replaces the whole TXT RRset, so lego solves its authorizations
    # one after the other and pauses this long between them (default 60 s). Unbound here
    # caches nothing (cache-max-ttl 0), so no pause is needed for correctness.
    "RFC2136_SEQUENCE_INTERVAL": "0",
    "RFC2136_PROPAGATION_TIMEOUT": "10",  # unused with --dns.disable-cp
    "RFC2136_TTL": "30",                  # SSL Manager's profile and the reference use 30 too
}
LEGO_FLAGS = ["--key-type", "ec256", "--dns", "rfc2136", "--dns.disable-cp"]
# lego polls an authorization right after answering its challenge and, when Pebble has not
# validated yet, sleeps 5 s (no Retry-After from Pebble): a run is ~0.1-0.8 s or 6 s and more.
LEGO_SLEEP_S = 5.0
TARGETS = {"in_process_vs_ref": 3.0, "whole_command_s": 1.0, "lego_vs_sslm": 10.0}


# -- child processes --------------------------------------------------------------------------

@dataclass
class Child:
    """One finished child process: exit code, wall time, its own CPU and peak RSS (wait4)."""

    argv: list[str]
    rc: int
    wall: float
    cpu: float
    maxrss_kib: int
    stdout: str
    stderr: str
    started: float   # time.time() just before the spawn
    ended: float     # time.time() just after the reap


def run_child(argv: list[str], env: dict | None = None, timeout: float = 300) -> Child:
    """Run argv to the end; rusage comes from wait4 on this very child (not RUSAGE_CHILDREN,
    which mixes every child ever reaped)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env, cwd=ROOT, start_new_session=True)
        _RUNNING.add(proc)
        try:
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    os.killpg(proc.pid, 9)
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.001)
        finally:
            _RUNNING.discard(proc)
        wall = time.perf_counter() - t0
        ended = time.time()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Child(argv, proc.returncode, wall, usage.ru_utime + usage.ru_stime,
                     usage.ru_maxrss, out.read().decode(errors="replace"),
                     err.read().decode(errors="replace"), started, ended)


_RUNNING: set[subprocess.Popen] = set()


def kill_running() -> None:
    """Kill the process groups of children still running (on an error or ^C)."""
    for proc in list(_RUNNING):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, 9)


def must(child: Child, what: str) -> Child:
    if child.rc != 0:
        raise SystemExit(f"{what} failed (exit {child.rc}): {' '.join(child.argv)}\n"
                         f"{child.stdout[-2000:]}\n{child.stderr[-3000:]}")
    return child


def first_error(child: Child) -> str:
    """The line that names the error (a traceback's last line, or an `error:` line)."""
    lines = (child.stderr + "\n" + child.stdout).strip().splitlines()
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception)\b|^error:", line.strip()):
            return line.strip()[:300]
    return (lines[-1] if lines else "(no output)")[:300]


@dataclass
class Batch:
    """Many children, `concurrency` at a time."""

    n: int
    concurrency: int
    wall: float
    ok: int
    cpu: float
    maxrss_kib: int
    failures: list[str] = field(default_factory=list)


def run_batch(commands: list[tuple[list[str], dict]], concurrency: int,
              check=lambda child: child.rc == 0) -> Batch:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        children = list(pool.map(lambda c: run_child(c[0], c[1]), commands))
    wall = time.perf_counter() - t0
    good = [c for c in children if check(c)]
    bad = [f"exit {c.rc}: {first_error(c)}" for c in children if not check(c)]
    return Batch(len(commands), concurrency, wall, len(good), sum(c.cpu for c in children),
                 max(c.maxrss_kib for c in children), bad)


# -- the counting proxy -----------------------------------------------------------------------

PEBBLE_ENDPOINTS = [  # Pebble 2.4's paths -> RFC 8555 resource names
    ("/dir", "directory"), ("/nonce-plz", "newNonce"), ("/sign-me-up", "newAccount"),
    ("/my-account/", "account"), ("/order-plz", "newOrder"), ("/my-order/", "order"),
    ("/finalize-order/", "finalize"), ("/authZ/", "authorization"), ("/chalZ/", "challenge"),
    ("/certZ/", "certificate"), ("/revoke-cert", "revokeCert"),
    ("/rollover-account-key", "keyChange"),
]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "content-length"}


def endpoint_of(method: str, path: str) -> str:
    path = path.split("?", 1)[0]
    for prefix, name in PEBBLE_ENDPOINTS:
        if path == prefix or (prefix.endswith("/") and path.startswith(prefix)):
            return f"{method} {name}"
    return f"{method} {path}"


class CountingProxy:
    """HTTPS reverse proxy in front of Pebble that counts requests by endpoint, the requests
    Pebble rejected with badNonce, and the TLS connections clients opened."""

    def __init__(self, pebble: Pebble) -> None:
        self.upstream = (pebble.host, pebble.port)
        self.upstream_ctx = ssl.create_default_context(cafile=pebble.ca_bundle)
        self.server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # The same listener certificate as Pebble's, so clients trust the same CA bundle.
        self.server_ctx.load_cert_chain(pebble.workdir / "cert.pem", pebble.workdir / "key.pem")
        self.lock = threading.Lock()
        self.counts: Counter = Counter()
        self.bad_nonce: Counter = Counter()
        self.connections = 0
        self.local = threading.local()
        self.httpd: ThreadingHTTPServer | None = None

    def reset(self) -> None:
        with self.lock:
            self.counts, self.bad_nonce, self.connections = Counter(), Counter(), 0

    def snapshot(self) -> dict:
        with self.lock:
            return {"requests": dict(self.counts), "bad_nonce": dict(self.bad_nonce),
                    "connections": self.connections}

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.httpd.server_address[1]}/dir"

    def _upstream(self, fresh: bool = False) -> http.client.HTTPSConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = http.client.HTTPSConnection(*self.upstream, context=self.upstream_ctx,
                                               timeout=30)
            self.local.conn = conn
        return conn

    def forward(self, method: str, path: str, headers: dict, body: bytes | None):
        for attempt in (0, 1):
            conn = self._upstream(fresh=attempt > 0)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (OSError, http.client.HTTPException):
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def start(self) -> "CountingProxy":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with proxy.lock:
                    proxy.connections += 1

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                # Host passes through unchanged: Pebble writes the proxy's address into URLs.
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                status, resp_headers, data = proxy.forward(self.command, self.path, headers, body)
                name = endpoint_of(self.command, self.path)
                with proxy.lock:
                    if status == 400 and b"badNonce" in data:
                        proxy.bad_nonce[name] += 1
                    else:
                        proxy.counts[name] += 1
                self.send_response_only(status)
                for key, value in resp_headers:
                    if key.lower() not in HOP_BY_HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_POST = do_HEAD = _relay

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.socket = self.server_ctx.wrap_socket(self.httpd.socket, server_side=True)
        threading.Thread(target=self.httpd.serve_forever, name="acme-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()


# -- DNS UPDATE counting from BIND's log ------------------------------------------------------

class BindLog:
    """named -g logs every signed update: one `signer "..." approved` line per message, then
    one line per record added or deleted."""

    def __init__(self, bind: Bind) -> None:
        self.path = bind.log_path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size

    def since_mark(self) -> dict:
        time.sleep(0.1)  # named writes its log lines just after answering
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            text = fh.read().decode(errors="replace")
        return {"updates": text.count(f'signer "{TSIG_KEY_NAME}" approved'),
                "rr_added": text.count("adding an RR"),
                "rr_deleted": text.count("deleting an RR") + text.count("deleting rrset")}


# -- the three clients ------------------------------------------------------------------------

class SslManager:
    """Drives `sslmanager` (the console script) against one instance folder."""

    def __init__(self, workdir: Path, unbound: Unbound) -> None:
        # As `pip install` does: without it, PYTHONDONTWRITEBYTECODE=1 (set on some dev
        # machines) makes every process compile the app's modules from source.
        compileall.compile_dir(ROOT / "webapp", quiet=1)
        self.instance = workdir / "sslmanager-instance"
        self.instance.mkdir()
        self.db_path = self.instance / "sslmanager.db"
        self.env = {**os.environ, "SSLMANAGER_INSTANCE_PATH": str(self.instance),
                    "SSLMANAGER_ALLOW_PRIVATE_ADDRESSES": "1",
                    "SSLMANAGER_DNS_RESOLVERS": f"127.0.0.1:{unbound.port}",
                    "SSLMANAGER_SCHEDULER_ENABLED": "0"}

    def cli(self, *args: str) -> Child:
        return must(run_child([SSLM_CLI, *args], self.env), "sslmanager " + " ".join(args[:3]))

    def setup(self, bind: Bind, profiles: dict[str, tuple[str, str]]) -> None:
        """profiles: name -> (directory URL, CA bundle path)."""
        self.cli("db", "upgrade")
        self.cli("zone", "add", TECH_ZONE, "--provider", "rfc2136",
                 "--server", f"127.0.0.1:{bind.port}", "--tsig-key", TSIG_KEY_NAME,
                 "--tsig-secret", TSIG_SECRET, "--tsig-algorithm", TSIG_ALGORITHM)
        for name, (directory, bundle) in profiles.items():
            self.cli("ca", "add", "--name", name, "--module", "custom", "--directory-url",
                     directory, "--ca-bundle", bundle, "--email", "sslm@example.com",
                     "--dns-zone", TECH_ZONE, "--allow-wildcard", "--ttl", "30",
                     "--timeout", "10")
            self.cli("ca", "test", name)  # registers the profile's account once

    def helper(self, spec: dict, module: str = "bench.issuance") -> dict:
        """In-process work through SSL Manager's services (labels, many certificates), run by
        `module`'s --helper (another bench can bring its own ops)."""
        child = must(run_child([PYTHON, "-m", module, "--helper", json.dumps(spec)],
                               self.env), f"helper {spec['op']}")
        return json.loads(child.stdout.strip().splitlines()[-1])

    def add(self, profile: str, names: list[str]) -> int:
        out = self.cli("cert", "add", "--ca", profile, *names).stdout
        return int(re.search(r"Certificate (\d+) created", out).group(1))

    def process_argv(self, cert_id: int, *prefix: str, here: bool = False) -> list[str]:
        return [*prefix, SSLM_CLI, "cert", "process", str(cert_id), "--wait", "60",
                *(["--here"] if here else [])]

    @contextlib.contextmanager
    def service(self):
        """`sslmanager run` on this instance (its scheduler off, as in the whole bench, so it
        never races a measured command): while it runs, `cert process` hands it the job."""
        socket_path = self.instance / "control.sock"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = subprocess.Popen([SSLM_CLI, "run", "--port", str(port)], env=self.env, cwd=ROOT,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        _RUNNING.add(proc)
        try:
            deadline = time.monotonic() + 60
            while not socket_path.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"sslmanager run did not open {socket_path}")
                time.sleep(0.02)
            yield proc
        finally:
            proc.send_signal(signal.SIGINT)  # it closes and removes its socket
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
            _RUNNING.discard(proc)

    def timeline(self, cert_id: int) -> dict[str, float]:
        """Epoch seconds of the timeline lines that bound each step."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT at, message FROM sslm_timeline_event "
                              "WHERE certificate_id = ? ORDER BY id", (cert_id,)).fetchall()
        marks: dict[str, float] = {}

        def at(text: str) -> float:
            when = datetime.fromisoformat(text)
            return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
        for stamp, message in rows:
            for key, test in (("processing", message.startswith("processing:")),
                              ("order", message.startswith("new order")),
                              ("txt", message.startswith("dns: ") and " added in " in message),
                              ("ready", message.startswith("wait for validation")),
                              ("downloaded", message.startswith("download certificate")),
                              ("active", message.startswith("active:")),
                              ("clean", message.startswith("dns: removed the"))):
                if test and (key in ("active", "clean") or key not in marks):
                    marks[key] = at(stamp)
        return marks


def publish_cnames(bind: Bind, unbound: Unbound, targets: dict[str, str]) -> None:
    """`_acme-challenge.<base>` CNAME <target> in BIND for each base, then checked through
    Unbound (what Pebble will see)."""
    records = [(f"_acme-challenge.{b}", 60, "CNAME", t + ".") for b, t in targets.items()]
    for i in range(0, len(records), 50):
        chunk = records[i:i + 50]
        bind.update(CUSTOMER_ZONE, delete=[(n, 0, None, None) for n, *_ in chunk], add=chunk)
    for base, target in targets.items():
        answer = unbound.query(f"_acme-challenge.{base}", "CNAME")
        assert target in answer.to_text(), f"CNAME for {base} not served: {answer}"


class Reference:
    """bench/reference_client.py with one config per directory URL."""

    def __init__(self, workdir: Path, bind: Bind, targets: dict[str, str]) -> None:
        self.workdir = workdir
        self.key = workdir / "reference-account.pem"
        self.bind, self.targets = bind, targets
        self.configs: dict[str, Path] = {}

    def register(self, label: str, directory: str, bundle: str) -> None:
        cfg = {"directory": directory, "ca_bundle": bundle, "account_key": str(self.key),
               "email": "reference@example.com", "ttl": 30, "targets": self.targets,
               "dns": {"server": "127.0.0.1", "port": self.bind.port, "zone": TECH_ZONE,
                       "key_name": TSIG_KEY_NAME, "secret": TSIG_SECRET,
                       "algorithm": TSIG_ALGORITHM}}
        path = self.workdir / f"reference-{label}.json"
        path.write_text(json.dumps(cfg))
        out = must(run_child([PYTHON, "-m", "bench.reference_client", "register",
                              "--config", str(path)]), "reference register").stdout
        cfg["account_url"] = json.loads(out)["account_url"]
        path.write_text(json.dumps(cfg))
        self.configs[label] = path

    def argv(self, label: str, names: list[str]) -> list[str]:
        return [PYTHON, "-m", "bench.reference_client", "issue", "--config",
                str(self.configs[label]), *names]

    @staticmethod
    def result(child: Child) -> dict:
        return json.loads(must(child, "reference issue").stdout.strip().splitlines()[-1])


class Lego:
    """/usr/bin/lego with the rfc2136 provider, one --path per directory URL (its account)."""

    def __init__(self, workdir: Path, bind: Bind, unbound: Unbound, bundle: str) -> None:
        self.workdir = workdir
        self.resolver = f"127.0.0.1:{unbound.port}"
        self.env = {**os.environ, "LEGO_CA_CERTIFICATES": bundle,
                    "RFC2136_NAMESERVER": f"127.0.0.1:{bind.port}",
                    "RFC2136_TSIG_KEY": TSIG_KEY_NAME, "RFC2136_TSIG_SECRET": TSIG_SECRET,
                    "RFC2136_TSIG_ALGORITHM": TSIG_ALGORITHM + ".", **LEGO_SETTINGS}

    def argv(self, label: str, directory: str, names: list[str],
             command: tuple[str, ...] = ("run",)) -> list[str]:
        domains = [arg for name in names for arg in ("-d", name)]
        return [LEGO, "--server", directory, "--accept-tos", "--email", "lego@example.com",
                "--path", str(self.path(label)), *LEGO_FLAGS,
                "--dns.resolvers", self.resolver, *domains, *command]

    def path(self, label: str) -> Path:
        """lego's --path: its account, and certificates/<name>.crt."""
        return self.workdir / f"lego-{label}"

    @staticmethod
    def ok(child: Child) -> bool:
        return child.rc == 0 and "Server responded with a certificate" in child.stderr


# -- statistics and formatting ----------------------------------------------------------------

def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def fmt_time(s: dict | None, unit: str | None = None) -> str:
    if not s:
        return "-"
    unit = unit or ("ms" if s["max"] < 1 else "s")
    k, digits = (1000, 0) if unit == "ms" else (1, 2)
    f = lambda v: f"{v * k:.{digits}f}"  # noqa: E731
    return f"{f(s['median'])} {unit} [{f(s['min'])}-{f(s['max'])}] n={s['n']}"


def ratio(a: dict | None, b: dict | None) -> float | None:
    return a["median"] / b["median"] if a and b and b["median"] else None


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


# -- the bench --------------------------------------------------------------------------------

class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.results: dict = {}
        self.load: list[float] = [os.getloadavg()[0]]

    def log(self, text: str) -> None:
        print(f"[issuance {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def row(self, figure: str, sslm: str = "", ref: str = "", lego: str = "",
            check: str = "") -> None:
        self.rows.append({"figure": figure, "sslm": sslm, "peer1": ref, "peer2": lego,
                          "check": check})

    def section(self, title: str, load: float | None = None) -> None:
        """A titled block of rows; `load`: the 1-min load average when its runs began."""
        self.rows.append({"section": title + (f" [load {load:.1f}]" if load is not None else "")})

    def run(self) -> None:
        with contextlib.ExitStack() as stack:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-issuance-")))
            t_start = time.monotonic()
            self.log("starting BIND, Unbound, Pebble")
            bind = stack.enter_context(Bind(zones=(TECH_ZONE, CUSTOMER_ZONE)))
            unbound = stack.enter_context(Unbound(bind))
            pebble = stack.enter_context(Pebble(f"127.0.0.1:{unbound.port}"))
            proxy = CountingProxy(pebble).start()
            stack.callback(proxy.stop)
            stack.callback(kill_running)  # first on the way out: no child outlives the lab
            self.lab = (bind, unbound, pebble, proxy)
            self.bindlog = BindLog(bind)
            self.load = [os.getloadavg()[0]]
            self.setup(work)
            parts = set(self.args.only.split(","))
            if "latency" in parts:
                self.latency()
            if "counts" in parts:
                self.protocol_counts()
            if "throughput" in parts and self.args.throughput:
                self.throughput()
            if "startup" in parts:
                self.startup()
            if "breakdown" in parts:
                self.breakdown()
            self.load.append(os.getloadavg()[0])
            if self.args.profile:
                self.profile(work)
            self.results["elapsed_s"] = time.monotonic() - t_start
            self.log(f"done in {self.results['elapsed_s']:.0f} s; stopping the lab")

    # -- setup ----------------------------------------------------------------------------

    def setup(self, work: Path) -> None:
        bind, unbound, pebble, proxy = self.lab
        self.log("SSL Manager: db upgrade, zone add, ca add + ca test (direct and via the proxy)")
        self.sslm = SslManager(work, unbound)
        self.sslm.setup(bind, {"Pebble": (pebble.directory_url, pebble.ca_bundle),
                               "Pebble-counted": (proxy.directory_url, pebble.ca_bundle)})
        # Stable CNAME labels for every name any client will use, then the CNAMEs in BIND.
        self.tp_names = [f"n{i:03d}.tp.bench.test" for i in range(self.args.throughput)]
        bases = sorted({n.removeprefix("*.") for _, names in SCENARIOS.values() for n in names}
                       | set(self.tp_names))
        targets = self.sslm.helper({"op": "labels", "bases": bases})
        publish_cnames(bind, unbound, targets)
        self.log(f"{len(targets)} CNAMEs into {TECH_ZONE} set in BIND")
        self.ref = Reference(work, bind, targets)
        self.ref.register("direct", pebble.directory_url, pebble.ca_bundle)
        self.ref.register("counted", proxy.directory_url, pebble.ca_bundle)
        self.lego = Lego(work, bind, unbound, pebble.ca_bundle) if not self.args.no_lego else None
        if self.lego:
            self.log("lego: first run registers its account (not measured)")
            child = run_child(self.lego.argv("direct", pebble.directory_url,
                                             SCENARIOS["one"][1]), self.lego.env)
            if not Lego.ok(child):
                raise SystemExit(f"lego failed:\n{child.stderr[-3000:]}")
        # One unmeasured issuance each, so every measured run finds warm caches.
        cert_id = self.sslm.add("Pebble", SCENARIOS["one"][1])
        must(run_child(self.sslm.process_argv(cert_id), self.sslm.env), "warm-up")
        Reference.result(run_child(self.ref.argv("direct", SCENARIOS["one"][1])))

    # -- latency --------------------------------------------------------------------------

    def lego_runs(self, key: str) -> int:
        if self.args.no_lego:
            return 0
        if self.args.lego_runs is not None:
            return self.args.lego_runs
        # lego's one-name and apex + wildcard times are bimodal (see LEGO_SLEEP_S): as many
        # runs as SSL Manager's, or the median is a coin toss.
        full = {"one": self.args.runs, "aw": self.args.runs, "ten": 3}
        quick = {"one": self.args.runs, "aw": self.args.runs, "ten": 1}
        return (full if self.args.full else quick)[key]

    def latency(self) -> None:
        bind, unbound, pebble, proxy = self.lab
        with self.sslm.service():
            self.log("latency: `sslmanager run` serves the instance; one hand-off warm-up")
            cert_id = self.sslm.add("Pebble", SCENARIOS["one"][1])
            must(run_child(self.sslm.process_argv(cert_id), self.sslm.env), "warm-up (service)")
            for key, (label, names) in SCENARIOS.items():
                self.latency_scenario(key, label, names, pebble)

    def latency_scenario(self, key: str, label: str, names: list[str], pebble: Pebble) -> None:
        runs = self.args.runs
        self.log(f"latency, {label}: {2 * runs} x `cert add` (not measured)")
        ids = [self.sslm.add("Pebble", names) for _ in range(runs)]
        svc_ids = [self.sslm.add("Pebble", names) for _ in range(runs)]
        load = os.getloadavg()[0]
        data = {"sslm_wall": [], "sslm_inproc": [], "sslm_cpu": [], "svc_wall": [],
                "svc_inproc": [], "svc_cpu": [], "ref_wall": [], "ref_inproc": [],
                "ref_order_to_cert": [], "ref_cpu": [], "lego_wall": [], "lego_cpu": [],
                "sslm_marks": [], "svc_marks": [], "ref_marks": []}
        n_lego = self.lego_runs(key)
        for i in range(runs):
            # Interleaved, so every comparison is made under the same conditions.
            for prefix, cert_id, here in (("sslm", ids[i], True), ("svc", svc_ids[i], False)):
                child = must(run_child(self.sslm.process_argv(cert_id, here=here), self.sslm.env),
                             "sslmanager cert process" + (" --here" if here else ""))
                if "active" not in child.stdout:
                    raise SystemExit(f"certificate {cert_id} not active: {child.stdout}")
                marks = self.sslm.timeline(cert_id)
                data[f"{prefix}_wall"].append(child.wall)
                data[f"{prefix}_cpu"].append(child.cpu)
                # The same span as the reference's: newOrder answered .. TXT values removed.
                data[f"{prefix}_inproc"].append(marks["clean"] - marks["order"])
                data[f"{prefix}_marks"].append({"start": child.started, "end": child.ended,
                                                **marks})
            child = run_child(self.ref.argv("direct", names))
            result = Reference.result(child)
            m = result["marks"]
            data["ref_wall"].append(child.wall)
            data["ref_cpu"].append(child.cpu)
            data["ref_inproc"].append(m["clean"] - m["order"])
            data["ref_order_to_cert"].append(m["cert"])
            data["ref_marks"].append({"start": child.started, "end": child.ended,
                                      "epoch0": result["epoch0"], **m})
            if i < n_lego:
                self.log(f"latency, {label}: lego run {i + 1} of {n_lego}")
                child = run_child(self.lego.argv("direct", pebble.directory_url, names),
                                  self.lego.env)
                if not Lego.ok(child):
                    raise SystemExit(f"lego failed:\n{child.stderr[-3000:]}")
                data["lego_wall"].append(child.wall)
                data["lego_cpu"].append(child.cpu)
        self.results[f"latency_{key}"] = data
        self.report_latency(key, label, data, load)

    def report_latency(self, key: str, label: str, d: dict, load: float) -> None:
        s = {k: stats(v) for k, v in d.items() if not k.endswith("marks")}
        self.section(f"Latency, {label} ({', '.join(SCENARIOS[key][1][:2])}"
                     f"{', ...' if len(SCENARIOS[key][1]) > 2 else ''}): median [min-max]", load)
        for prefix, what in (("svc", "handed to the running service (`sslmanager run`)"),
                             ("sslm", "by itself (--here: imports, app, then the work)")):
            whole = s[f"{prefix}_wall"]
            self.row(f"whole command wall: cert process --wait 60, {what}", fmt_time(whole),
                     fmt_time(s["ref_wall"]) if prefix == "sslm" else "",
                     fmt_time(s["lego_wall"]),
                     f"sslm < {TARGETS['whole_command_s']:g} s: "
                     f"{verdict(whole['median'] < TARGETS['whole_command_s'])}")
            r = ratio(s["lego_wall"], whole)
            self.row("  lego wall / that", "", "", "",
                     f"{r:.1f}x >= {TARGETS['lego_vs_sslm']:g}: "
                     f"{verdict(r >= TARGETS['lego_vs_sslm'])}" if r else "lego not run")
        for prefix, what in (("sslm", "in its own process"), ("svc", "in the service (warm)")):
            r = ratio(s[f"{prefix}_inproc"], s["ref_inproc"])
            self.row(f"in-process: newOrder answered .. TXT removed, {what}",
                     fmt_time(s[f"{prefix}_inproc"], "ms"), fmt_time(s["ref_inproc"], "ms"), "",
                     f"sslm/ref {r:.2f} <= {TARGETS['in_process_vs_ref']:g}: "
                     f"{verdict(r <= TARGETS['in_process_vs_ref'])}")
        self.row("  reference: before newOrder .. certificate downloaded", "",
                 fmt_time(s["ref_order_to_cert"], "ms"))
        if d["lego_wall"]:
            slept = sum(w >= LEGO_SLEEP_S for w in d["lego_wall"])
            self.row(f"  lego runs that slept {LEGO_SLEEP_S:g} s at least once (lost the race)",
                     "", "", f"{slept} of {len(d['lego_wall'])}")
            # The median above is whichever way most runs went; each way apart, against the
            # handed-off / by-itself medians, says what the race hides.
            for lost, what in ((True, "lost the race (slept)"), (False, "won the race")):
                runs = [w for w in d["lego_wall"] if (w >= LEGO_SLEEP_S) == lost]
                if runs:
                    lego = stats(runs)
                    self.row(f"  lego runs that {what}", "", "", fmt_time(lego),
                             f"{ratio(lego, s['svc_wall']):.1f}x / "
                             f"{ratio(lego, s['sslm_wall']):.1f}x (handed off / by itself)")
        self.row("CPU seconds of the process (user+sys; handed off: of the command alone)",
                 f'{fmt_time(s["sslm_cpu"])} / {fmt_time(s["svc_cpu"])}',
                 fmt_time(s["ref_cpu"]), fmt_time(s["lego_cpu"]))
        handed = [m["processing"] - m["start"] for m in d["svc_marks"] if "processing" in m]
        self.row("  handed off: spawn .. 'processing:' (interpreter, socket, claim, CNAME check)",
                 fmt_time(stats(handed), "ms"))
        handed = [m["end"] - m["clean"] for m in d["svc_marks"] if "clean" in m]
        self.row("  handed off: TXT removed .. command exit", fmt_time(stats(handed), "ms"))
        self.row("  by itself (--here):")
        # Where the whole command's time goes, from the same realtime clock as the DB's `at`.
        sm = d["sslm_marks"]
        steps = [("start", "processing", "spawn .. 'processing:' (interpreter, imports, app, "
                  "claim, CNAME check)"),
                 ("processing", "order", "'processing:' .. 'new order' (account, directory, "
                  "nonce, newOrder)"),
                 ("order", "txt", "'new order' .. 'TXT added' (authz GETs, 1 UPDATE)"),
                 ("txt", "ready", "'TXT added' .. order ready (check TXT, answer, poll)"),
                 ("ready", "downloaded", "ready .. 'download certificate' (finalize, poll, "
                  "download)"),
                 ("downloaded", "clean", "downloaded .. TXT removed (renewal info, 1 UPDATE)"),
                 ("clean", "active", "TXT removed .. 'active:' (store the version)"),
                 ("active", "end", "'active:' .. process exit (plan, deploy, notify, commit)")]
        rm = d["ref_marks"]
        ref_steps = {"processing": None,
                     "order": [m["epoch0"] + m["order"] - m["start"] for m in rm],
                     "txt": [m["txt"] - m["order"] for m in rm],
                     "ready": [m["ready"] - m["txt"] for m in rm],
                     "downloaded": [m["cert"] - m["ready"] for m in rm],
                     "clean": [m["clean"] - m["cert"] for m in rm],
                     "active": None,
                     "end": [m["end"] - (m["epoch0"] + m["clean"]) for m in rm]}
        for a, b, what in steps:
            values = [m[b] - m[a] for m in sm if a in m and b in m]
            ref_values = ref_steps[b]
            if b == "processing":
                self.row("  " + what, fmt_time(stats(values), "ms"))
                continue
            if b == "order":
                what += " / ref: spawn .. newOrder answered"
            self.row("  " + what, fmt_time(stats(values), "ms"),
                     fmt_time(stats(ref_values), "ms") if ref_values else "")

    # -- requests and DNS updates per issuance ---------------------------------------------

    def protocol_counts(self) -> None:
        bind, unbound, pebble, proxy = self.lab
        counts: dict[str, dict[str, dict]] = {}
        # lego's account for the proxy's URL is made by its first run there: that run is the
        # one-name count, with its newAccount request shown apart (it is not issuance).
        lego_scenarios = [] if self.args.no_lego else (
            ["one", "aw", "ten"] if self.args.full else ["one", "aw"])
        for key, (label, names) in SCENARIOS.items():
            self.log(f"counting requests and DNS updates, {label}")
            cert_id = self.sslm.add("Pebble-counted", names)
            per: dict[str, dict] = {}
            for client in ("sslm", "ref", "lego"):
                if client == "lego" and key not in lego_scenarios:
                    continue
                proxy.reset()
                self.bindlog.mark()
                if client == "sslm":
                    child = must(run_child(self.sslm.process_argv(cert_id), self.sslm.env),
                                 "sslmanager cert process (counted)")
                elif client == "ref":
                    child = run_child(self.ref.argv("counted", names))
                    Reference.result(child)
                else:
                    child = run_child(self.lego.argv("counted", proxy.directory_url, names),
                                      self.lego.env)
                    if not Lego.ok(child):
                        raise SystemExit(f"lego failed:\n{child.stderr[-3000:]}")
                per[client] = {**proxy.snapshot(), "dns": self.bindlog.since_mark()}
            counts[key] = per
        self.results["counts"] = counts
        for key, per in counts.items():
            label = SCENARIOS[key][0]
            self.section(f"Per issuance, {label}: ACME requests by endpoint (via the counting "
                         "proxy), DNS UPDATEs (BIND log)")
            endpoints = sorted({e for p in per.values() for e in p["requests"]},
                               key=lambda e: [n for _, n in PEBBLE_ENDPOINTS].index(e.split()[1])
                               if e.split()[1] in [n for _, n in PEBBLE_ENDPOINTS] else 99)
            get = lambda c, e: per[c]["requests"].get(e, 0) if c in per else None  # noqa: E731
            cell = lambda v: "-" if v is None else str(v)  # noqa: E731
            for e in endpoints:
                note = " (lego: its registration, not counted below)" \
                    if e.endswith("newAccount") else ""
                self.row(f"  {e}{note}", cell(get("sslm", e)), cell(get("ref", e)),
                         cell(get("lego", e)))

            def total(c):
                if c not in per:
                    return None
                return sum(v for e, v in per[c]["requests"].items()
                           if not e.endswith("newAccount"))
            t_s, t_r = total("sslm"), total("ref")
            self.row("  total requests (badNonce rejections excluded)", cell(t_s), cell(t_r),
                     cell(total("lego")), f"sslm/ref {t_s / t_r:.2f}")
            bad = lambda c: sum(per[c]["bad_nonce"].values()) if c in per else None  # noqa: E731
            self.row("  badNonce rejections (Pebble rejects 5 % at random)", cell(bad("sslm")),
                     cell(bad("ref")), cell(bad("lego")))
            self.row("  TLS connections opened", cell(per["sslm"]["connections"]),
                     cell(per["ref"]["connections"]),
                     cell(per["lego"]["connections"]) if "lego" in per else "-")
            dnsc = lambda c, k: str(per[c]["dns"][k]) if c in per else "-"  # noqa: E731
            self.row("  DNS UPDATE messages", dnsc("sslm", "updates"), dnsc("ref", "updates"),
                     dnsc("lego", "updates"))
            self.row("  TXT records added / deleted",
                     *[f"{dnsc(c, 'rr_added')} / {dnsc(c, 'rr_deleted')}" if c in per else "-"
                       for c in ("sslm", "ref", "lego")])

    # -- throughput -----------------------------------------------------------------------

    def throughput(self) -> None:
        """SSL Manager as an operator runs a batch: ONE `cert process ID... --concurrency c`
        (orders bounded per CA, the scheduler's way); the peers as parallel processes, one per
        certificate. SSL Manager one process per certificate too, for comparison."""
        bind, unbound, pebble, proxy = self.lab
        n = self.args.throughput
        levels = (1, 8)
        self.log(f"throughput: creating {n * len(levels) * 2} single-name certificates in one "
                 "process (services API, not measured)")
        made = self.sslm.helper({"op": "create", "profile": "Pebble",
                                 "certs": [[name] for _ in range(2 * len(levels))
                                           for name in self.tp_names]})
        ids = made["ids"]
        load = os.getloadavg()[0]
        lego_n = {1: self.args.lego_throughput_1, 8: self.args.lego_throughput_8}
        if self.args.full:
            lego_n = {1: n, 8: n}
        results = {}
        for i, c in enumerate(levels):
            batch_ids = ids[2 * i * n:(2 * i + 1) * n]
            each_ids = ids[(2 * i + 1) * n:(2 * i + 2) * n]
            self.log(f"throughput: SSL Manager, {n} certificates in one process, {c} at a time")
            one = run_child([SSLM_CLI, "cert", "process", *map(str, batch_ids), "--wait", "60",
                             "--concurrency", str(c)], self.sslm.env, timeout=60 + 10 * n)
            sslm = Batch(n, c, one.wall, one.stdout.count(": active"), one.cpu, one.maxrss_kib,
                         [] if one.rc == 0 else [f"exit {one.rc}: {first_error(one)}"])
            self.log(f"throughput: SSL Manager, {n} certificates, a process each, {c} at a time")
            each = run_batch([(self.sslm.process_argv(cid), self.sslm.env) for cid in each_ids],
                             c, check=lambda ch: ch.rc == 0 and "active" in ch.stdout)
            self.log(f"throughput: reference, {n} certificates at concurrency {c}")
            ref = run_batch([(self.ref.argv("direct", [name]), None) for name in self.tp_names],
                            c)
            lego = None
            if self.lego and lego_n[c]:
                self.log(f"throughput: lego, {lego_n[c]} certificates at concurrency {c}")
                lego = run_batch([(self.lego.argv("direct", pebble.directory_url, [name]),
                                   self.lego.env) for name in self.tp_names[:lego_n[c]]],
                                 c, check=Lego.ok)
            results[c] = {"sslm": sslm, "sslm_each": each, "ref": ref, "lego": lego}
        self.results["throughput"] = {c: {k: (vars(v) if v else None) for k, v in r.items()}
                                      for c, r in results.items()}
        self.section(f"Throughput, single-name certificates (sslm: one `cert process ID... "
                     f"--concurrency c` for all; peers: a process each), {os.cpu_count()} CPUs",
                     load)
        per_min = lambda b: b.ok / b.wall * 60 if b else None  # noqa: E731
        for c, r in results.items():
            fmt_n = lambda b: f"{b.n} certs" if b else "-"  # noqa: E731
            self.row(f"concurrency {c}: certificates", fmt_n(r["sslm"]), fmt_n(r["ref"]),
                     fmt_n(r["lego"]) + (" (--quick)" if r["lego"] and r["lego"].n < n else ""))
            s, rf, lg = per_min(r["sslm"]), per_min(r["ref"]), per_min(r["lego"])
            self.row(f"concurrency {c}: certificates per minute (issued ones)", f"{s:.0f}",
                     f"{rf:.0f}", f"{lg:.1f}" if lg is not None else "-",
                     f"sslm/ref {s / rf:.2f}" + (f", sslm/lego {s / lg:.1f}" if lg else ""))
            cpu = lambda b: f"{b.cpu / b.n:.3f}" if b else "-"  # noqa: E731
            self.row(f"concurrency {c}: CPU s per certificate (client only)", cpu(r["sslm"]),
                     cpu(r["ref"]), cpu(r["lego"]))
            rss = lambda b: f"{b.maxrss_kib / 1024:.0f}" if b else "-"  # noqa: E731
            self.row(f"concurrency {c}: peak RSS of one process, MiB", rss(r["sslm"]),
                     rss(r["ref"]), rss(r["lego"]))
            fails = lambda b: str(b.n - b.ok) if b else "-"  # noqa: E731
            self.row(f"concurrency {c}: failed issuances", fails(r["sslm"]), fails(r["ref"]),
                     fails(r["lego"]))
            e = r["sslm_each"]
            self.row(f"concurrency {c}, sslm a process each (`cert process ID`): per minute, "
                     "CPU s per cert", f"{per_min(e):.0f}, {e.cpu / e.n:.3f}", "", "",
                     f"failed {e.n - e.ok}")
            for name, b in r.items():
                for failure in (b.failures if b else [])[:3]:
                    self.notes.append(f"{name} at concurrency {c}: {failure}")

    # -- where SSL Manager's fixed cost goes -------------------------------------------------

    def startup(self) -> None:
        """Where a `sslmanager` process's fixed cost goes, outside any issuance: one probe
        process imports what `sslmanager` imports, in layers, timing each, and prints the
        instant it is done; the parent sees it exit (teardown). Run 3 times as is and 3 times
        with gc.freeze() just before exit."""
        self.log("startup cost of a Python process with SSL Manager's imports")
        load = os.getloadavg()[0]
        runs = {"normal": [], "freeze": []}
        for mode in ("normal", "freeze"):
            for _ in range(3):
                child = must(run_child([PYTHON, "-c", STARTUP_PROBE, mode], self.sslm.env),
                             "startup probe")
                marks = json.loads(child.stdout.strip().splitlines()[-1])
                marks["teardown"] = child.ended - marks.pop("exit_at")
                marks["wall"] = child.wall
                marks["maxrss_mib"] = child.maxrss_kib / 1024
                runs[mode].append(marks)
        plain = [must(run_child([PYTHON, "-c", "pass"]), "python").wall for _ in range(3)]
        ref = [must(run_child([PYTHON, "-c", "import bench.reference_client"]), "ref").wall
               for _ in range(3)]
        self.results["startup"] = {"probe": runs, "python": plain, "reference_import": ref}
        col = lambda key, mode="normal": stats([m[key] for m in runs[mode]])  # noqa: E731
        self.section("Startup and exit of a Python process with SSL Manager's imports "
                     "(no issuance; probe run 3x): median [min-max]", load)
        self.row("python -c pass (interpreter start and exit)", fmt_time(stats(plain), "ms"))
        self.row("python -c 'import bench.reference_client' (its whole startup)", "",
                 fmt_time(stats(ref), "ms"))
        self.row("import sqlalchemy.orm, flask, flask_sqlalchemy", fmt_time(col("sqlalchemy_flask"), "ms"))
        self.row("import alembic.command etc. (webapp/db.py, at import)", fmt_time(col("alembic"), "ms"))
        self.row("import webapp.cli + create_app(), the rest", fmt_time(col("webapp_rest"), "ms"))
        self.row("  of which Argon2id dummy hash (webapp/services/auth.py, at import)",
                 fmt_time(col("argon2"), "ms"))
        self.row("  of which PublicSuffixList() (webapp/services/domains.py, at import)",
                 fmt_time(col("psl"), "ms"))
        self.row("interpreter teardown at exit (printed .. reaped)", fmt_time(col("teardown"), "ms"))
        self.row("  the same with gc.freeze() before exit", fmt_time(col("teardown", "freeze"), "ms"))
        self.row("peak RSS of the probe, MiB", f"{col('maxrss_mib')['median']:.0f}")

    def breakdown(self) -> None:
        """issuance.issue() and ReferenceClient.issue() run in-process with timing wrappers:
        where the in-process time goes, by kind."""
        names = SCENARIOS["one"][1]
        self.log("in-process time by kind: issuance.issue() vs ReferenceClient.issue(), 5 each")
        load = os.getloadavg()[0]
        made = self.sslm.helper({"op": "create", "profile": "Pebble", "certs": [names] * 10})
        sslm, warm, ref = [], [], []
        for i in range(5):
            cold_run, warm_run = self.sslm.helper({"op": "instrumented-sslm",
                                                   "cert_ids": made["ids"][2 * i:2 * i + 2]})
            sslm.append(cold_run)
            warm.append(warm_run)
            ref.append(self.sslm.helper({"op": "instrumented-ref", "names": names,
                                         "config": str(self.ref.configs["direct"])}))
        self.results["breakdown"] = {"sslm": sslm, "sslm_warm": warm, "ref": ref}
        self.section("In-process time by kind, one name, 5 runs in-process with timing wrappers "
                     "(sslm: issuance.issue(), account lookup .. TXT removed, first in its "
                     "process as in `cert process`; ref: ReferenceClient.issue(), newOrder .. "
                     "TXT removed): median", load)
        med = lambda rows, k: statistics.median([r.get(k, 0) for r in rows])  # noqa: E731
        for key, label in (("total", "total"), ("sleep", "sleeping (poll waits)"),
                           ("http", "HTTP requests to the CA"), ("dns", "DNS messages"),
                           ("db", "database statements and commits"),
                           ("rest", "the rest: Python work (ORM, JWS, parsing, crypto)")):
            count = ""
            if key in ("sleep", "http", "dns", "db"):
                count = " ({:.0f} / {:.0f})".format(med(sslm, "n_" + key), med(ref, "n_" + key))
            self.row(f"  {label}{count}", f"{med(sslm, key) * 1000:.1f} ms",
                     f"{med(ref, key) * 1000:.1f} ms", "",
                     f"sslm/ref {med(sslm, key) / med(ref, key):.2f}" if med(ref, key) else "")
        for key, label in (("total", "total"), ("rest", "the rest: Python work")):
            self.row(f"  {label}, sslm's second issue() in the same process (warm)",
                     f"{med(warm, key) * 1000:.1f} ms", f"{med(ref, key) * 1000:.1f} ms", "",
                     f"sslm/ref {med(warm, key) / med(ref, key):.2f}")

    def profile(self, work: Path) -> None:
        """cProfile of one whole `cert process` (prints the biggest cumulative entries)."""
        import pstats
        cert_id = self.sslm.add("Pebble", SCENARIOS["one"][1])
        prof = work / "cert-process.prof"
        must(run_child(self.sslm.process_argv(cert_id, PYTHON, "-m", "cProfile", "-o",
                                              str(prof)), self.sslm.env), "profile")
        print("\ncProfile of one `sslmanager cert process --wait 60` (one name), "
              "top 40 by cumulative time:", file=sys.stderr)
        stream = sys.stderr
        pstats.Stats(str(prof), stream=stream).sort_stats("cumulative").print_stats(40)

    # -- output ---------------------------------------------------------------------------

    def header(self) -> list[str]:
        lines = [
            "Issuance: SSL Manager vs reference client (bench/reference_client.py, certbot's "
            "acme package) vs lego",
            f"  lab: Pebble {self.versions().get('pebble', '?')} (PEBBLE_VA_NOSLEEP=1, "
            "PEBBLE_AUTHZREUSE=0, nonce reject 5 % default), BIND behind Unbound, P-256 keys, "
            f"CNAME _acme-challenge.<name> -> <label>.{TECH_ZONE}, TXT by RFC 2136 + TSIG",
            f"  lego settings: {' '.join(f'{k}={v}' for k, v in LEGO_SETTINGS.items())} "
            f"RFC2136_TSIG_ALGORITHM={TSIG_ALGORITHM}. {' '.join(LEGO_FLAGS)} --dns.resolvers "
            "<Unbound>; its account is reused. lego polls an authorization every 5 s when the CA "
            "sends no Retry-After (Pebble 2.4 sends none): no setting changes that.",
            "  reference client: existing account, one newOrder, one DNS UPDATE with every TXT "
            "value, every challenge answered back to back, order polled 15 ms after, x1.5 up "
            "to 250 ms.",
            "  in-process span, both: the newOrder answer .. the TXT values removed (SSL "
            "Manager: `at` of its 'new order' and 'dns: removed' timeline lines).",
            f"  SSL Manager at {git_state()}; 1-min load average {self.load[0]:.1f} at the start, "
            f"{self.load[-1]:.1f} at the end, on {os.cpu_count()} CPUs (wall times grow with "
            "it; CPU seconds much less).",
        ]
        return lines

    @staticmethod
    def versions() -> dict:
        def dpkg(pkg):
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                                 capture_output=True, text=True)
            return out.stdout.strip() or "?"
        return {"pebble": dpkg("pebble"), "lego": dpkg("lego")}

    def print_table(self) -> None:
        cols = [("figure", ""), ("sslm", "SSL Manager"), ("peer1", "reference"),
                ("peer2", "lego"), ("check", "ratio / target")]
        print_rows(self.header(), cols, self.rows, self.notes)

    def write_json(self, path: str) -> None:
        Path(path).write_text(json.dumps({
            "module": "issuance", "header": self.header(),
            "columns": {"sslm": "SSL Manager", "peer1": "reference", "peer2": "lego"},
            "rows": self.rows, "notes": self.notes, "results": self.results},
            indent=1, default=str))


def git_state() -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    return f"commit {out.stdout.strip()}" if out.returncode == 0 else "an unknown commit"


def print_rows(header: list[str], cols, rows: list[dict], notes: list[str]) -> None:
    widths = {k: max([len(title)] + [len(r.get(k, "")) for r in rows if "section" not in r])
              for k, title in cols}
    print()
    for line in header:
        print(line)
    print()
    line = "  ".join(title.ljust(widths[k]) for k, title in cols)
    print(line)
    for r in rows:
        if "section" in r:
            print(f"\n{r['section']}")
            continue
        print("  ".join(r.get(k, "").ljust(widths[k]) for k, _ in cols).rstrip())
    for note in notes:
        print(f"note: {note}")


# Imports what `sslmanager cert process` imports, in layers; prints each layer's seconds.
STARTUP_PROBE = r"""
import gc, json, sys, time
T = time.perf_counter
m = {}
t = T(); import sqlalchemy.orm, flask, flask_sqlalchemy; m["sqlalchemy_flask"] = T() - t
t = T()
import alembic.command, alembic.config, alembic.runtime.migration, alembic.script
m["alembic"] = T() - t
import argon2, publicsuffixlist
spent = {"argon2": 0.0, "psl": 0.0}
def timed(fn, key):
    def wrapper(*a, **k):
        t0 = T()
        try:
            return fn(*a, **k)
        finally:
            spent[key] += T() - t0
    return wrapper
argon2.PasswordHasher.hash = timed(argon2.PasswordHasher.hash, "argon2")
publicsuffixlist.PublicSuffixList.__init__ = timed(publicsuffixlist.PublicSuffixList.__init__, "psl")
t = T(); import webapp.cli; from webapp import create_app; create_app(); m["webapp_rest"] = T() - t
m.update(spent)
if sys.argv[1] == "freeze":
    gc.freeze()
m["exit_at"] = time.time()
print(json.dumps(m), flush=True)
"""


# -- in-process helper (runs inside SSL Manager's app) ----------------------------------------

class Instrument:
    """Time by kind spent inside one call: sleeping, HTTP, DNS, database, and the rest
    (Python work: ORM, JWS signing, parsing). Wrappers count only while `run` is inside."""

    def __init__(self) -> None:
        self.inside = False
        self.time: Counter = Counter()
        self.count: Counter = Counter()

    def wrap(self, owner, name: str, kind: str) -> None:
        original = getattr(owner, name)
        me = self

        def wrapper(*args, **kwargs):
            if not me.inside:
                return original(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                me.time[kind] += time.perf_counter() - t0
                me.count[kind] += 1
        setattr(owner, name, wrapper)

    def install(self) -> None:
        import dns.query
        import requests
        from sqlalchemy.engine import default
        self.wrap(time, "sleep", "sleep")
        self.wrap(requests.Session, "request", "http")
        self.wrap(dns.query, "tcp", "dns")
        self.wrap(dns.query, "udp", "dns")
        for name in ("do_execute", "do_executemany", "do_execute_no_params", "do_commit"):
            self.wrap(default.DefaultDialect, name, "db")

    def run(self, fn, *args):
        self.inside = True
        t0 = time.perf_counter()
        try:
            fn(*args)
        finally:
            total = time.perf_counter() - t0
            self.inside = False
        out = {"total": total, **{k: v for k, v in self.time.items()},
               **{f"n_{k}": v for k, v in self.count.items()}}
        out["rest"] = total - sum(self.time.values())
        return out


def helper(spec: dict) -> None:
    if spec["op"] == "instrumented-ref":
        from bench.reference_client import ReferenceClient
        inst = Instrument()
        inst.install()
        client = ReferenceClient(json.loads(Path(spec["config"]).read_text()))
        print(json.dumps(inst.run(client.issue, spec["names"])))
        return
    from webapp import create_app, db
    from webapp.services import ca_profiles, certificates, claims, domains, pipeline
    app = create_app()
    with app.app_context():
        if spec["op"] == "labels":
            targets = {b: domains.cname_target(b, TECH_ZONE) for b in spec["bases"]}
            db.session().commit()
            print(json.dumps(targets))
        elif spec["op"] == "create":
            profile = ca_profiles.by_name(spec["profile"])
            ids = []
            for names in spec["certs"]:
                cert = certificates.create({"profile_id": profile.id, "domains": " ".join(names),
                                            "key_type": "ec-p256", "auto_renew": "1"})
                certificates.request(cert)
                ids.append(cert.id)
            print(json.dumps({"ids": ids}))
        elif spec["op"] == "instrumented-sslm":
            # The first issue() of a process pays first-use costs (provider registry, CA
            # plugin discovery, lazy imports) that `cert process` always pays; the second,
            # in the same process, is what a long-running scheduler pays.
            results = []
            for cert_id in spec["cert_ids"]:
                claims.claim(cert_id)
                if not pipeline.check_cnames(certificates.get(cert_id)):
                    raise SystemExit(f"CNAME check failed for {cert_id}")
                inst = Instrument()
                inst.install()
                results.append(inst.run(pipeline.issue, certificates.get(cert_id)))
                claims.release(cert_id)
                status = certificates.get(cert_id).status
                if status != "active":
                    raise SystemExit(f"certificate {cert_id} is {status}")
            print(json.dumps(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="latency runs per scenario (5)")
    parser.add_argument("--lego-runs", type=int, default=None,
                        help="lego latency runs per scenario (default --runs for one name and "
                             "apex + wildcard, 1 for ten names; --full: 3 for ten names)")
    parser.add_argument("--throughput", type=int, default=100,
                        help="certificates per throughput batch (100; 0 skips throughput)")
    parser.add_argument("--lego-throughput-1", type=int, default=6,
                        help="lego certificates at concurrency 1 (quick default 6)")
    parser.add_argument("--lego-throughput-8", type=int, default=16,
                        help="lego certificates at concurrency 8 (quick default 16)")
    parser.add_argument("--full", action="store_true",
                        help="lego does as many as the others (100 x ~5 s at concurrency 1)")
    parser.add_argument("--no-lego", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile one `cert process` (printed to stderr)")
    parser.add_argument("--only", default="latency,counts,throughput,startup,breakdown",
                        help="comma-separated parts to run (default: all five)")
    parser.add_argument("--json", help="also write rows and raw results here (for run_all)")
    parser.add_argument("--helper", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.helper:
        helper(json.loads(args.helper))
        return
    bench = Bench(args)
    try:
        bench.run()
    finally:
        kill_running()
    bench.print_table()
    if args.json:
        bench.write_json(args.json)


if __name__ == "__main__":
    main()
