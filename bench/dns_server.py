"""Builtin DNS server vs Knot on loopback, same zone, same dnsperf runs; plus a malformed-packet
flood with RSS before/after.

    .venv/bin/python -m bench.dns_server [--seconds 10] [--records 1000] [--workers N]

Needs dnsperf and knotd (Debian: dnsperf, knot). Each server runs as its own process; dnsperf
shares the machine's cores with it, as it would in the lab. Runs per server:
  saturation  dnsperf -c 4 (100 queries in flight): the most it answers per second
  20k qps     dnsperf -Q 20000 -v: latency percentiles from every answer at the target load
  tcp         dnsperf -m tcp -c 4 at saturation
  flood       malformed packets as fast as one sender can make them, while dnsperf asks
              1000 good queries/s; RSS of the server before and after
The builtin server runs with `sslmanager dns serve`'s default number of workers (one per
core; --workers to change) and without its per-address rate limit above (dnsperf asks from
one address). With more than one worker, the flood is run once more on a single worker, for
comparison. A last run floods a builtin server WITH its default limit (200 qps/address) from
127.0.0.1 while dnsperf asks 150 good queries/s from 127.0.0.2.
"""
from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import sqlalchemy as sa

from webapp.dns.builtin.serving import default_workers

ZONE = "bench.test"
NS1 = f"ns1.{ZONE}"


# -- the data --------------------------------------------------------------------------------

def make_database(path: Path, records: int) -> tuple[str, list[tuple[str, str, int]]]:
    """SQLite database with one builtin zone and `records` TXT names (+ one with two values)."""
    from webapp.dns.builtin import RECORDS, ZONES
    from webapp.models import Base

    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    Base.metadata.create_all(engine)
    rows = [(f"_l{i:05d}.{ZONE}", f"value-{i:05d}-" + "x" * 30, 60) for i in range(records)]
    rows += [(f"both.{ZONE}", "apex-" + "a" * 38, 60), (f"both.{ZONE}", "wild-" + "b" * 38, 60)]
    with engine.begin() as conn:
        conn.execute(sa.insert(ZONES), [{"name": ZONE, "provider": "builtin", "options": {
            "nameservers": [NS1], "addresses": {NS1: ["127.0.0.1"]}, "negative_ttl": 5}}])
        conn.execute(sa.insert(RECORDS), [{"zone": ZONE, "name": n, "value": v, "ttl": t}
                                          for n, v, t in rows])
    engine.dispose()
    return url, rows


def query_file(path: Path, rows, count: int = 20000) -> Path:
    """60% TXT that exist, 10% SOA, 10% NS, 20% NXDOMAIN (random names)."""
    rng = random.Random(1)
    lines = []
    for _ in range(count):
        r = rng.random()
        if r < 0.6:
            lines.append(f"{rng.choice(rows)[0]} TXT")
        elif r < 0.7:
            lines.append(f"{ZONE} SOA")
        elif r < 0.8:
            lines.append(f"{ZONE} NS")
        else:
            lines.append(f"nx{rng.randrange(10**9)}.{ZONE} TXT")
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the servers -----------------------------------------------------------------------------

def free_port() -> int:
    while True:
        port = random.randint(20000, 32000)
        try:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            reply = dns.query.udp(dns.message.make_query(ZONE, "SOA"), "127.0.0.1", port=port,
                                  timeout=0.3)
            if reply.answer:
                return
        except Exception:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no SOA from 127.0.0.1:{port} after {timeout}s")


def start_builtin(url: str, port: int, workers: int, rate_limit: float = 0) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "bench.dns_server", "--serve", url, str(port),
                             str(workers), str(rate_limit)],
                            cwd=Path(__file__).resolve().parents[1])
    wait_ready(port, proc)
    return proc


def start_knot(workdir: Path, port: int, rows) -> subprocess.Popen:
    knotd = shutil.which("knotd") or "/usr/sbin/knotd"
    zone = [f"$ORIGIN {ZONE}.", "$TTL 60", "@ 60 SOA ns1 hostmaster 1 3600 600 86400 5",
            "@ 3600 NS ns1", "ns1 3600 A 127.0.0.1"]
    zone += [f'{name}. {ttl} TXT "{value}"' for name, value, ttl in rows]
    (workdir / f"{ZONE}.zone").write_text("\n".join(zone) + "\n")
    (workdir / "knot.conf").write_text(f"""\
server:
    rundir: {workdir}
    listen: 127.0.0.1@{port}
database:
    storage: {workdir}
template:
  - id: default
    storage: {workdir}
zone:
  - domain: {ZONE}
log:
  - target: stderr
    any: warning
""")
    proc = subprocess.Popen([knotd, "-c", str(workdir / "knot.conf")])
    wait_ready(port, proc)
    return proc


def rss_kib(pid: int) -> int:
    """Resident memory of a process and its children (the builtin server's workers)."""
    total = 0
    children = Path(f"/proc/{pid}/task/{pid}/children")
    pids = [pid] + ([int(p) for p in children.read_text().split()] if children.exists() else [])
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


# -- dnsperf ---------------------------------------------------------------------------------

def dnsperf(port: int, queries: Path, seconds: float, *extra: str) -> dict:
    """Run dnsperf; qps, loss, average latency and (with -v) percentiles of every answer."""
    verbose = "-v" in extra
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
                          "-l", str(seconds), *extra], capture_output=True, text=True,
                         check=True).stdout
    result = {"qps": float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1)),
              "lost": re.search(r"Queries lost:\s+\d+ \(([\d.]+)%\)", out).group(1) + "%",
              "avg_ms": 1000 * float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))}
    if verbose:
        latencies = sorted(float(line.rsplit(None, 1)[1]) for line in out.splitlines()
                           if line.startswith("> "))
        for p in (50, 90, 99, 99.9):
            index = min(len(latencies) - 1, int(len(latencies) * p / 100))
            result[f"p{p}"] = 1000 * latencies[index]
    return result


# -- the flood -------------------------------------------------------------------------------

def malformed_packets(rng: random.Random) -> list[bytes]:
    """A few hundred bad packets: random bytes, cut headers, no question, pointer loops, ..."""
    good = dns.message.make_query(ZONE, "SOA").to_wire()
    header = lambda qd=1, an=0, ar=0, flags=0x0100: struct.pack(  # noqa: E731
        "!HHHHHH", rng.randrange(65536), flags, qd, an, 0, ar)
    packets = [rng.randbytes(rng.randrange(0, 512)) for _ in range(200)]
    packets += [good[:rng.randrange(0, len(good))] for _ in range(50)]
    packets += [header(qd=0), header(qd=2) + good[12:] * 2, header(an=1) + good[12:],
                header() + b"\xc0\x0c\x00\x06\x00\x01", header() + b"\x01a\xc0\x0c\x00\x10\x00\x01",
                header() + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x10\x00\x01",
                header(ar=1) + good[12:] + b"\x00\x00\x29\x10\x00\x00\x00\x00\x00\xff\xff",
                header(flags=0x8400) + good[12:], header(flags=0x2800) + good[12:]]
    return packets


def flood(port: int, seconds: float) -> int:
    """Send malformed packets for `seconds` from one socket; the number sent."""
    packets = malformed_packets(random.Random(8482))
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for packet in packets:
                try:
                    sock.sendto(packet, ("127.0.0.1", port))
                    sent += 1
                except BlockingIOError:
                    time.sleep(0.0005)
                # Replies (FORMERR) are left unread: the socket's buffer overflows, as a
                # spoofed flood's victim would, and the server must not care.
    return sent


def flood_run(port: int, pid: int, queries: Path, seconds: float, *perf_args: str) -> dict:
    before = rss_kib(pid)
    perf = subprocess.Popen(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries),
                             "-l", str(seconds), *(perf_args or ("-Q", "1000"))],
                            stdout=subprocess.PIPE, text=True)
    sent = flood(port, seconds)
    out = perf.communicate()[0]
    completed = re.search(r"Queries completed:\s+\d+ \(([\d.]+)%\)", out).group(1)
    # Asked from another address than the flood's: with the rate limit on, 127.0.0.1's bucket
    # is still empty just after the flood, and a dropped query would say nothing of liveness.
    answer = dns.query.udp(dns.message.make_query(ZONE, "SOA"), "127.0.0.1", port=port, timeout=2,
                           source="127.0.0.3")
    return {"flood_pps": sent / seconds, "good_answered": completed + "%",
            "rss_before_mib": before / 1024, "rss_after_mib": rss_kib(pid) / 1024,
            "alive": bool(answer.answer)}


# -- main ------------------------------------------------------------------------------------

def bench(args) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-dns-") as tmp:
        tmp = Path(tmp)
        url, rows = make_database(tmp / "sslmanager.db", args.records)
        queries = query_file(tmp / "queries.txt", rows)
        (tmp / "knot").mkdir()
        results: dict[str, dict] = {}
        for name in ("builtin", "knot"):
            port = free_port()
            proc = (start_builtin(url, port, args.workers) if name == "builtin"
                    else start_knot(tmp / "knot", port, rows))
            try:
                print(f"-- {name} on 127.0.0.1:{port}", file=sys.stderr, flush=True)
                sat = dnsperf(port, queries, args.seconds, "-c", "4")
                lat = dnsperf(port, queries, args.seconds, "-c", "4", "-Q", "20000", "-v")
                tcp = dnsperf(port, queries, args.seconds / 2, "-c", "4", "-m", "tcp")
                fl = flood_run(port, proc.pid, queries, args.flood_seconds)
                results[name] = {"sat": sat, "lat": lat, "tcp": tcp, "flood": fl}
            finally:
                proc.terminate()
                proc.wait(10)
        single = None
        if args.workers != 1:  # the flood on one worker, as `dns serve --workers 1` runs
            port = free_port()
            proc = start_builtin(url, port, 1)
            try:
                print(f"-- builtin, one worker, on 127.0.0.1:{port}", file=sys.stderr, flush=True)
                single = flood_run(port, proc.pid, queries, args.flood_seconds)
            finally:
                proc.terminate()
                proc.wait(10)
        port = free_port()
        proc = start_builtin(url, port, args.workers, rate_limit=200)
        try:
            print(f"-- builtin, rate limited, on 127.0.0.1:{port}", file=sys.stderr, flush=True)
            limited = flood_run(port, proc.pid, queries, args.flood_seconds,
                                "-a", "127.0.0.2", "-Q", "150")
        finally:
            proc.terminate()
            proc.wait(10)
        print_table(results, args)
        if single:
            print(f"\nbuiltin with one worker (--workers 1), the same flood at "
                  f"{single['flood_pps']:,.0f} pkt/s: {single['good_answered']} of 1k qps answered, "
                  f"answers after the flood: {single['alive']}")
        print(f"\nbuiltin with its default rate limit (200 qps/address), flooded from 127.0.0.1 "
              f"at {limited['flood_pps']:,.0f} pkt/s for {args.flood_seconds:g} s: "
              f"{limited['good_answered']} of 150 qps from 127.0.0.2 answered, "
              f"RSS {limited['rss_before_mib']:.1f} -> {limited['rss_after_mib']:.1f} MiB")


def print_table(results: dict, args) -> None:
    b, k = results["builtin"], results["knot"]
    rows = [
        ("UDP saturation qps (-c 4)", b["sat"]["qps"], k["sat"]["qps"], "{:,.0f}"),
        ("  avg latency ms", b["sat"]["avg_ms"], k["sat"]["avg_ms"], "{:.3f}"),
        ("  lost", b["sat"]["lost"], k["sat"]["lost"], "{}"),
        ("UDP at 20k qps: achieved", b["lat"]["qps"], k["lat"]["qps"], "{:,.0f}"),
        ("  p50 ms", b["lat"]["p50"], k["lat"]["p50"], "{:.3f}"),
        ("  p90 ms", b["lat"]["p90"], k["lat"]["p90"], "{:.3f}"),
        ("  p99 ms", b["lat"]["p99"], k["lat"]["p99"], "{:.3f}"),
        ("  p99.9 ms", b["lat"]["p99.9"], k["lat"]["p99.9"], "{:.3f}"),
        ("  lost", b["lat"]["lost"], k["lat"]["lost"], "{}"),
        ("TCP saturation qps (-m tcp -c 4)", b["tcp"]["qps"], k["tcp"]["qps"], "{:,.0f}"),
        (f"malformed flood pkt/s ({args.flood_seconds:g} s)", b["flood"]["flood_pps"],
         k["flood"]["flood_pps"], "{:,.0f}"),
        ("  good queries answered (1k qps)", b["flood"]["good_answered"],
         k["flood"]["good_answered"], "{}"),
        ("  RSS before MiB", b["flood"]["rss_before_mib"], k["flood"]["rss_before_mib"], "{:.1f}"),
        ("  RSS after MiB", b["flood"]["rss_after_mib"], k["flood"]["rss_after_mib"], "{:.1f}"),
        ("  answers after the flood", b["flood"]["alive"], k["flood"]["alive"], "{}"),
    ]
    default = ", dns serve's default: one per core" if args.workers == default_workers() else ""
    print(f"\nbuiltin DNS server (workers={args.workers}{default}) vs Knot {knot_version()}, "
          f"{args.records} TXT names, dnsperf {args.seconds:g} s per run, "
          f"{_cores()} cores shared with dnsperf\n")
    print(f"{'':36} {'builtin':>12} {'knot':>12} {'builtin/knot':>13}")
    for label, bv, kv, fmt in rows:
        ratio = f"{bv / kv:.2f}" if isinstance(bv, float) and kv else ""
        print(f"{label:36} {fmt.format(bv):>12} {fmt.format(kv):>12} {ratio:>13}")


def knot_version() -> str:
    out = subprocess.run(["knotd", "-V"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "?"


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--flood-seconds", type=float, default=5)
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None,
                        help="builtin server processes (default: as `sslmanager dns serve`, one "
                             "per core)")
    parser.add_argument("--serve", nargs=4, metavar=("URL", "PORT", "WORKERS", "RATE"),
                        help=argparse.SUPPRESS)  # internal: run the builtin server
    args = parser.parse_args()
    args.workers = args.workers or default_workers()
    if args.serve:
        from webapp.dns.builtin.serving import serve
        url, port, workers, rate = args.serve
        # dnsperf asks from one address: with a rate limit it would measure the limit.
        serve(sa.create_engine(url), f"127.0.0.1:{port}", workers=int(workers),
              rate_limit=float(rate))
        return
    bench(args)


if __name__ == "__main__":
    main()
