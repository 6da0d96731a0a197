"""Every bench module in one command, one combined table, with the machine and the versions.

    .venv/bin/python -m bench.run_all [--only dns_server,issuance] [--full]
                                      [--dns-args "--seconds 5"] [--issuance-args "--runs 3"]
                                      [--renewals-args "--count 50"] [--agents-args "--seconds 60"]

Each module runs as its own process, one after the other (they would disturb each other's
timings), with its progress on stderr; the table comes at the end on stdout. A module that
fails shows as a FAILED row and the others still run. Default run: about 12-15 minutes on
2 CPUs (bench.dns_server ~1 min with 6 s dnsperf runs, bench.issuance ~5-8 min with lego's
quick counts, bench.pages and bench.scan ~1 min, bench.renewals ~5 min: 200 renewals each,
lego ~3 min of it), bench.agents ~6 min (1,000 agents for 180 s, then a renewal).

Adding a module: append a Module to MODULES. Either it writes the issuance JSON shape to the
path given for "{json}" ({"header": [lines], "rows": [{"figure", "sslm", "peer1", "peer2",
"check"} or {"section"}], "notes": [...], "columns": {"sslm": ..., "peer1": ..., "peer2": ...}}),
or give it a `parse(stdout)` returning that shape, as bench.dns_server's table is parsed here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@dataclass
class Module:
    name: str
    argv: list[str]                               # "{json}" is replaced by a temp file path
    parse: Callable[[str], dict] | None = None    # None: read the JSON file the module wrote


def parse_dns_server(stdout: str) -> dict:
    """bench.dns_server prints: a title line, a column header, rows of
    `label(36) builtin(12) knot(12) ratio(13)`, then a sentence on the flood on one worker (when
    the default is more) and one on the rate-limited flood."""
    rows, header, notes = [], [], []
    lines = stdout.splitlines()
    in_table = False
    for line in lines:
        if line.startswith("builtin DNS server"):
            header.append("DNS: " + line.strip())
            rows.append({"section": "DNS server: SSL Manager's builtin (column SSL Manager) vs "
                                    "Knot (column peer 1), dnsperf on loopback"})
            continue
        if line.strip().startswith("builtin") and "knot" in line and "builtin/knot" in line:
            in_table = True
            continue
        if line.startswith("builtin with "):  # one worker; the default rate limit
            notes.append("dns_server: " + line.strip())
            in_table = False
            continue
        if in_table and line.strip():
            label, rest = line[:36].rstrip(), line[36:].split()
            if len(rest) >= 2:
                rows.append({"figure": label, "sslm": rest[0], "peer1": rest[1], "peer2": "",
                             "check": f"builtin/knot {rest[2]}" if len(rest) > 2 else ""})
    return {"header": header, "rows": rows, "notes": notes,
            "columns": {"sslm": "builtin", "peer1": "knot", "peer2": ""}}


# Shorter dnsperf runs than bench.dns_server's own defaults (10 s, 5 s), so that everything
# fits in about ten minutes; rates and percentiles are steady well within 6 s.
DNS_DEFAULT_ARGS = ["--seconds", "6", "--flood-seconds", "4"]

MODULES = [
    Module("dns_server", [PY, "-m", "bench.dns_server"], parse_dns_server),
    Module("issuance", [PY, "-m", "bench.issuance", "--json", "{json}"]),
    Module("pages", [PY, "-m", "bench.pages", "--json", "{json}"]),
    Module("scan", [PY, "-m", "bench.scan", "--json", "{json}"]),
    Module("renewals", [PY, "-m", "bench.renewals", "--json", "{json}"]),
    # 100,000 certificates, three nodes, PostgreSQL and SQLite (~25 min; --scale-args
    # "--count 10000 --renewals 500" for a quick look).
    Module("scale", [PY, "-m", "bench.scale", "--json", "{json}"]),
    Module("agents", [PY, "-m", "bench.agents", "--json", "{json}"]),
]


# -- the machine ------------------------------------------------------------------------------

def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip()


def _dpkg(pkg: str) -> str:
    return _run(["dpkg-query", "-W", "-f=${Version}", pkg]) or "not installed"


def machine() -> list[str]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    named = _run(["named", "-v"]).split(" (")[0]
    unbound = next((ln for ln in _run(["unbound", "-V"]).splitlines()
                    if ln.startswith("Version")), "").replace("Version ", "")
    knot = re.search(r"version (\S+)", _run(["knotd", "-V"]))
    git = _run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]) or "?"

    def pyver(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "?"
    return [
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
        f"{mem_kib / 1024 / 1024:.1f} GiB RAM, Linux {platform.release()}",
        f"versions: Python {platform.python_version()}, Pebble {_dpkg('pebble')}, "
        f"lego {_dpkg('lego')}, {named or 'BIND ?'}, Unbound {unbound or '?'}, "
        f"Knot {knot.group(1) if knot else '?'}, dnsperf {_dpkg('dnsperf')}; "
        f"certbot acme {pyver('acme')}, dnspython {pyver('dnspython')}; "
        f"SSL Manager {git}",
    ]


# -- running and printing ---------------------------------------------------------------------

def run_module(module: Module, extra: list[str]) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{module.name}-") as tmp:
        json_path = os.path.join(tmp, "rows.json")
        argv = [json_path if a == "{json}" else a for a in module.argv] + extra
        print(f"[run_all] {module.name}: {' '.join(shlex.quote(a) for a in argv[1:])}",
              file=sys.stderr, flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        elapsed = time.monotonic() - t0
        if proc.returncode != 0:
            tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
            return {"header": [], "rows": [{"section": f"{module.name}: FAILED (exit "
                                                       f"{proc.returncode}) {tail}"}],
                    "notes": []}, elapsed
        if module.parse:
            return module.parse(proc.stdout), elapsed
        return json.loads(Path(json_path).read_text()), elapsed


def print_table(top: list[str], results: list[tuple[str, dict, float]]) -> None:
    cols = [("figure", ""), ("sslm", "SSL Manager"), ("peer1", "peer 1"), ("peer2", "peer 2"),
            ("check", "ratio / target")]
    rows = [r for _, res, _ in results for r in res["rows"]]
    widths = {k: max([len(t)] + [len(r.get(k, "")) for r in rows if "section" not in r])
              for k, t in cols}
    print()
    for line in top:
        print(line)
    for name, res, elapsed in results:
        columns = res.get("columns") or {}
        peers = ", ".join(f"{cols_title} = {columns[k]}" for k, cols_title in
                          (("peer1", "peer 1"), ("peer2", "peer 2")) if columns.get(k))
        print(f"\n[{name}] {elapsed:.0f} s" + (f"; {peers}" if peers else ""))
        for line in res.get("header", []):
            print(line)
    print()
    print("  ".join(t.ljust(widths[k]) for k, t in cols).rstrip())
    for name, res, _ in results:
        for r in res["rows"]:
            if "section" in r:
                print(f"\n[{name}] {r['section']}")
            else:
                print("  ".join(r.get(k, "").ljust(widths[k]) for k, _ in cols).rstrip())
    notes = [n for _, res, _ in results for n in res.get("notes", [])]
    if notes:
        print()
        for note in notes:
            print(f"note: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated module names: "
                        + ", ".join(m.name for m in MODULES))
    parser.add_argument("--full", action="store_true",
                        help="bench.issuance --full (lego as many certificates as the others; "
                             "adds about 10 minutes)")
    parser.add_argument("--dns-args", default=None,
                        help="arguments for bench.dns_server (default: "
                             f"{' '.join(DNS_DEFAULT_ARGS)})")
    parser.add_argument("--issuance-args", default="", help="extra arguments for bench.issuance")
    parser.add_argument("--renewals-args", default="", help="extra arguments for bench.renewals")
    parser.add_argument("--scale-args", default="", help="extra arguments for bench.scale")
    parser.add_argument("--agents-args", default="", help="extra arguments for bench.agents")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {m.name for m in MODULES}
    extra = {"dns_server": DNS_DEFAULT_ARGS if args.dns_args is None else shlex.split(args.dns_args),
             "issuance": shlex.split(args.issuance_args) + (["--full"] if args.full else []),
             "renewals": shlex.split(args.renewals_args),
             "scale": shlex.split(args.scale_args), "agents": shlex.split(args.agents_args)}
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    results = []
    for module in MODULES:
        if module.name in wanted:
            res, elapsed = run_module(module, extra.get(module.name, []))
            results.append((module.name, res, elapsed))
    top = machine() + [f"run: {time.monotonic() - t0:.0f} s in all, {time.strftime('%Y-%m-%d %H:%M')}; "
                       f"1-min load average {load0:.1f} at the start, {os.getloadavg()[0]:.1f} "
                       "at the end (other work on the machine slows wall times)"]
    print_table(top, results)


if __name__ == "__main__":
    main()
