"""Renewals: `sslmanager renew --due` (one process) vs `lego renew` (one process per name).

Same lab as bench/issuance.py (Pebble with PEBBLE_VA_NOSLEEP=1, BIND behind Unbound), N
single-name certificates r000.rn.bench.test .. each with its own `_acme-challenge` CNAME into
acme.tech.test. Both clients first issue every name (not measured), then renew all of them:

    .venv/bin/python -m bench.renewals [--count 200] [--concurrency 4] [--lego-count K]
                                       [--lego-concurrency C] [--no-lego] [--json OUT]

SSL Manager: every certificate made due (renew_at a minute ago), then ONE `sslmanager renew
--due --concurrency N` process (N orders in flight per CA at most): wall time,
CPU seconds and peak RSS of that process (wait4), checked afterwards in its SQLite file.
lego: `lego ... -d NAME renew --days 100000 --no-random-sleep`, one process per name, C at a
time: the batch's wall time, CPU seconds of all and peak RSS of one process.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.issuance import (
    CUSTOMER_ZONE,
    LEGO_FLAGS,
    LEGO_SETTINGS,
    SSLM_CLI,
    Bench,
    Lego,
    SslManager,
    first_error,
    fmt_time,
    git_state,
    kill_running,
    print_rows,
    publish_cnames,
    run_batch,
    run_child,
    stats,
    verdict,
)
from tests.lab.servers import TECH_ZONE, TSIG_ALGORITHM, Bind, Pebble, Unbound

TARGETS = {"rate_vs_lego": 5.0, "peak_rss_mib": 200}
LEGO_DAYS = 100000          # more than any Pebble lifetime: lego renews whatever is left
LEGO_SETUP_CONCURRENCY = 12
SETUP_THREADS = 8
COLUMNS = {"sslm": "SSL Manager", "peer1": "", "peer2": "lego"}


def log(text: str) -> None:
    print(f"[renewals {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def names_for(count: int) -> list[str]:
    return [f"r{i:03d}.rn.{CUSTOMER_ZONE}" for i in range(count)]


def epoch(stamp: str) -> float:
    """A timeline `at` as SQLite holds it (naive UTC text) -> epoch seconds."""
    when = datetime.fromisoformat(stamp)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


# -- SSL Manager ------------------------------------------------------------------------------

def sslm_setup(work: Path, bind: Bind, unbound: Unbound, pebble: Pebble,
               names: list[str]) -> SslManager:
    log("SSL Manager: db upgrade, zone add, ca add + ca test")
    sslm = SslManager(work, unbound)
    sslm.setup(bind, {"Pebble": (pebble.directory_url, pebble.ca_bundle)})
    publish_cnames(bind, unbound, sslm.helper({"op": "labels", "bases": names}))
    log(f"{len(names)} CNAMEs into {TECH_ZONE} set in BIND and seen through Unbound")
    log(f"SSL Manager: issuing {len(names)} certificates in one process, {SETUP_THREADS} "
        "threads (not measured), then making them due")
    made = sslm.helper({"op": "issue-due", "profile": "Pebble", "names": names},
                       module="bench.renewals")
    if made["statuses"] != {"active": len(names)} or made["due"] != len(names):
        raise SystemExit(f"setup: {made['statuses']}, {made['due']} due of {len(names)}")
    return sslm


def sslm_renew(sslm: SslManager, n: int, concurrency: int) -> dict:
    argv, bound = [SSLM_CLI, "renew", "--due", "--concurrency", str(concurrency)], concurrency
    log(f"SSL Manager: {' '.join(['sslmanager', *argv[1:]])} ({n} due)")
    child = run_child(argv, sslm.env, timeout=max(600, 10 * n))
    out = {"argv": argv[1:], "bound": bound, "rc": child.rc, "wall": child.wall,
           "cpu": child.cpu, "maxrss_kib": child.maxrss_kib,
           "failed_lines": [ln for ln in child.stdout.splitlines() if "FAILED" in ln],
           **verify(sslm.db_path)}
    if child.rc != 0 and not out["failed_lines"]:
        out["failed_lines"] = [f"exit {child.rc}: {first_error(child)}"]
    log(f"SSL Manager: {out['renewed']} renewed in {child.wall:.1f} s, max "
        f"{out['max_in_flight']} in flight")
    return out


def verify(db_path: Path) -> dict:
    """What the database says happened: statuses, versions, and each renewal's span."""
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        statuses = dict(db.execute("SELECT status, count(*) FROM sslm_certificate "
                                   "GROUP BY status").fetchall())
        versions = dict(db.execute("SELECT certificate_id, count(*) FROM "
                                   "sslm_certificate_version GROUP BY certificate_id").fetchall())
        lines = db.execute("SELECT certificate_id, at, message FROM sslm_timeline_event "
                           "ORDER BY id").fetchall()
    # Per certificate: its "renewal started" instants, then the renewal's "active:" and its
    # last line (TXT removal comes after "active:"; a failed renewal has no "active:").
    starts: dict[int, list[float]] = defaultdict(list)
    active: dict[int, float] = {}
    last: dict[int, float] = {}
    for cert_id, stamp, message in lines:
        if message.startswith("renewal started"):
            starts[cert_id].append(epoch(stamp))
        if starts[cert_id]:
            last[cert_id] = epoch(stamp)
            if message.startswith("active:"):
                active[cert_id] = epoch(stamp)
    good = [c for c, v in versions.items() if v == 2 and len(starts[c]) == 1 and c in active]
    return {"statuses": statuses, "renewed": len(good),
            "two_versions": sum(v == 2 for v in versions.values()),
            "renewed_twice": sum(len(s) > 1 for s in starts.values()),
            "span_s": [active[c] - starts[c][0] for c in good],
            "max_in_flight": max_overlap([(s[0], last[c]) for c, s in starts.items() if s])}


def max_overlap(spans: list[tuple[float, float]]) -> int:
    # At equal instants an end sorts before a start: a slot handed over is not two in flight.
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    peak = now = 0
    for _, delta in events:
        now += delta
        peak = max(peak, now)
    return peak


# -- lego -------------------------------------------------------------------------------------

def lego_setup(lego: Lego, pebble: Pebble, names: list[str]) -> None:
    log(f"lego: `lego run` for {len(names)} names (not measured; the first registers its "
        f"account, then {LEGO_SETUP_CONCURRENCY} at a time)")
    first = run_child(lego.argv("rn", pebble.directory_url, names[:1]), lego.env)
    if not Lego.ok(first):
        raise SystemExit(f"lego run failed:\n{first.stderr[-3000:]}")
    if names[1:]:
        batch = run_batch([(lego.argv("rn", pebble.directory_url, [n]), lego.env)
                           for n in names[1:]], LEGO_SETUP_CONCURRENCY, check=Lego.ok)
        if batch.failures:
            raise SystemExit(f"lego run failed: {batch.failures[:3]}")


def lego_cert(lego: Lego, name: str) -> Path:
    return lego.path("rn") / "certificates" / f"{name}.crt"


def days_left(pem: Path) -> float:
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(pem.read_bytes())
    return (cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() / 86400


def lego_renew(lego: Lego, pebble: Pebble, names: list[str], concurrency: int) -> dict:
    digest = lambda name: hashlib.sha256(lego_cert(lego, name).read_bytes()).hexdigest()
    before = {name: digest(name) for name in names}
    command = ("renew", "--days", str(LEGO_DAYS), "--no-random-sleep")
    log(f"lego: `lego ... -d NAME {' '.join(command)}` for {len(names)} names, "
        f"{concurrency} at a time")

    def renewed(child) -> bool:
        name = child.argv[child.argv.index("-d") + 1]
        return Lego.ok(child) and digest(name) != before[name]
    batch = run_batch([(lego.argv("rn", pebble.directory_url, [n], command), lego.env)
                       for n in names], concurrency, check=renewed)
    log(f"lego: {batch.ok} renewed in {batch.wall:.1f} s")
    return vars(batch)


# -- the report -------------------------------------------------------------------------------

class Report:
    def __init__(self, args, load: float) -> None:
        self.args, self.rows, self.notes = args, [], []
        self.load = [load]
        self.results: dict = {}

    def row(self, figure: str, sslm: str = "", lego: str = "", check: str = "") -> None:
        self.rows.append({"figure": figure, "sslm": sslm, "peer1": "", "peer2": lego,
                          "check": check})

    def build(self, s: dict, lg: dict | None, n: int) -> None:
        self.results.update({"sslm": s, "lego": lg})
        self.rows.append({"section": f"Renewals: {n} due single-name certificates against Pebble "
                                     f"(no validation sleep) [load {self.load[0]:.1f}]"})
        fails = n - s["renewed"]
        lego_n = f" (first {lg['n']} of {n})" if lg and lg["n"] < n else ""
        self.row("certificates renewed / failed", f"{s['renewed']} / {fails}",
                 f"{lg['ok']} / {lg['n'] - lg['ok']}{lego_n}" if lg else "-")
        self.row("wall time (sslm: the one process; lego: the batch)", f"{s['wall']:.1f} s",
                 f"{lg['wall']:.1f} s" if lg else "-")
        rate = s["renewed"] / s["wall"] * 60
        lrate = lg["ok"] / lg["wall"] * 60 if lg else None
        r = rate / lrate if lrate else None
        self.row("certificates per minute", f"{rate:.0f}", f"{lrate:.1f}{lego_n}" if lg else "-",
                 f"sslm/lego {r:.1f}x, target >= {TARGETS['rate_vs_lego']:g}x: "
                 f"{verdict(r >= TARGETS['rate_vs_lego'])}" if r else "lego not run")
        mib = s["maxrss_kib"] / 1024
        self.row("peak RSS, MiB (sslm: the one process; lego: one process)", f"{mib:.0f}",
                 f"{lg['maxrss_kib'] / 1024:.0f}" if lg else "-",
                 f"sslm < {TARGETS['peak_rss_mib']} MiB: {verdict(mib < TARGETS['peak_rss_mib'])}")
        self.row("CPU s per certificate (user+sys)", f"{s['cpu'] / n:.3f}",
                 f"{lg['cpu'] / lg['n']:.3f}" if lg else "-")
        bound = s["bound"]
        self.row("concurrency: bound / max in flight seen (timeline)",
                 f"{bound} / {s['max_in_flight']}",
                 f"{lg['concurrency']} processes" if lg else "-",
                 f"max <= bound: {verdict(s['max_in_flight'] <= bound)}")
        self.row("one renewal, 'renewal started' .. 'active:'",
                 fmt_time(stats(s["span_s"]), "ms"))
        ok = (s["renewed"] == n and s["statuses"] == {"active": n}
              and s["two_versions"] == n and not s["renewed_twice"])
        self.row("all Active, 2 versions each, none renewed twice",
                 f"{verdict(ok)} ({s['two_versions']} with 2, {s['renewed_twice']} twice)",
                 f"{verdict(lg['ok'] == lg['n'])} (new .crt, 'Server responded with a "
                 "certificate')" if lg else "-")
        self.notes += [f"sslm: {line}" for line in s["failed_lines"][:3]]
        self.notes += [f"lego: {line}" for line in (lg["failures"] if lg else [])[:3]]

    def header(self) -> list[str]:
        versions = Bench.versions()
        s = self.results.get("sslm") or {}
        lego = self.results.get("lego") or {}
        days = self.results.get("days_left")
        lab = (f"  lab: Pebble {versions['pebble']} (PEBBLE_VA_NOSLEEP=1, PEBBLE_AUTHZREUSE=0), "
               "BIND behind Unbound, P-256 keys, CNAME _acme-challenge.<name> -> "
               f"<label>.{TECH_ZONE}, TXT by RFC 2136 + TSIG"
               + (f"; lego's certificates have {days:.0f} days left when renewed" if days else ""))
        sslm = (f"  sslm: `sslmanager {' '.join(s.get('argv', ['renew', '--due']))}`"
                "; every certificate made due by setting renew_at a minute back")
        settings = " ".join(f"{k}={v}" for k, v in LEGO_SETTINGS.items())
        lego_line = (f"  lego {versions['lego']}{'' if lego else ' (not run)'}: "
                     f"{' '.join(LEGO_FLAGS)} --dns.resolvers <Unbound> -d NAME renew --days "
                     f"{LEGO_DAYS} --no-random-sleep, {lego.get('concurrency', '-')} processes "
                     "at a time, one shared --path (account and certificates from an unmeasured "
                     f"`lego run` each); {settings} RFC2136_TSIG_ALGORITHM={TSIG_ALGORITHM}. "
                     "lego sleeps 5 s when its first authorization poll is not valid yet (no "
                     "Retry-After from Pebble 2.4).")
        load = (f"  SSL Manager at {git_state()}; 1-min load average {self.load[0]:.1f} at the "
                f"start, {self.load[-1]:.1f} at the end, on {os.cpu_count()} CPUs.")
        title = ("Renewals: `sslmanager renew --due` (one process) vs `lego renew` (one process "
                 "per name, several at a time)")
        return [title, lab, sslm, lego_line, load]

    def print_table(self) -> None:
        cols = [("figure", ""), ("sslm", "SSL Manager"), ("peer2", "lego"),
                ("check", "ratio / target")]
        print_rows(self.header(), cols, self.rows, self.notes)

    def write_json(self, path: str) -> None:
        Path(path).write_text(json.dumps({
            "module": "renewals", "header": self.header(), "columns": COLUMNS,
            "rows": self.rows, "notes": self.notes, "results": self.results},
            indent=1, default=str))


# -- the run ----------------------------------------------------------------------------------

def run(args, report: Report) -> None:
    names = names_for(args.count)
    lego_names = [] if args.no_lego else names[:args.lego_count]
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-renewals-")))
        log("starting BIND, Unbound, Pebble")
        bind = stack.enter_context(Bind(zones=(TECH_ZONE, CUSTOMER_ZONE)))
        unbound = stack.enter_context(Unbound(bind))
        pebble = stack.enter_context(Pebble(f"127.0.0.1:{unbound.port}"))
        stack.callback(kill_running)  # first on the way out: no child outlives the lab
        sslm = sslm_setup(work, bind, unbound, pebble, names)
        lego = Lego(work, bind, unbound, pebble.ca_bundle)
        if lego_names:
            lego_setup(lego, pebble, lego_names)
            report.results["days_left"] = days_left(lego_cert(lego, lego_names[0]))
            if report.results["days_left"] >= LEGO_DAYS:
                raise SystemExit(f"--days {LEGO_DAYS} would not renew these certificates")
        report.load = [os.getloadavg()[0]]
        s = sslm_renew(sslm, len(names), args.concurrency)
        lg = lego_renew(lego, pebble, lego_names, args.lego_concurrency or args.concurrency) \
            if lego_names else None
        report.load.append(os.getloadavg()[0])
        report.build(s, lg, len(names))


def helper(spec: dict) -> None:
    """`issue-due`: create and issue every name (threads, as the scheduler's pool does), then
    make them all due through the ORM (the same column types as the app)."""
    from datetime import timedelta

    from sqlalchemy import update

    from webapp import create_app, db
    from webapp.models import Certificate, utcnow
    from webapp.services import ca_profiles, certificates, pipeline, renewals
    app = create_app()
    with app.app_context():
        profile = ca_profiles.by_name(spec["profile"])
        ids = []
        for name in spec["names"]:
            cert = certificates.create({"profile_id": profile.id, "domains": name,
                                        "key_type": "ec-p256", "auto_renew": "1"})
            certificates.request(cert)
            ids.append(cert.id)
        db.session().remove()

    def issue(cert_id: int) -> str:
        with app.app_context():
            try:
                return pipeline.process_until_final(cert_id, wait=120)
            finally:
                db.session().remove()
    with ThreadPoolExecutor(SETUP_THREADS) as pool:
        statuses = Counter(pool.map(issue, ids))
    with app.app_context():
        db.session().execute(update(Certificate).where(Certificate.id.in_(ids))
                             .values(renew_at=utcnow() - timedelta(minutes=1), next_run_at=None))
        db.session().commit()
        due = renewals.due(limit=len(ids) + 1)
    print(json.dumps({"ids": ids, "statuses": statuses, "due": len(due)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200,
                        help="due certificates, one name each (200)")
    parser.add_argument("--concurrency", type=int, default=4,
                        help="SSL Manager's bound, `renew --concurrency` (4, the default "
                             "of SSLMANAGER_CONCURRENCY_PER_CA)")
    parser.add_argument("--lego-count", type=int, default=None,
                        help="lego renews only the first K names (default: all)")
    parser.add_argument("--lego-concurrency", type=int, default=None,
                        help="lego processes at a time (default: --concurrency)")
    parser.add_argument("--no-lego", action="store_true")
    parser.add_argument("--json", help="also write rows and raw results here (for run_all)")
    parser.add_argument("--helper", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.helper:
        helper(json.loads(args.helper))
        return
    report = Report(args, os.getloadavg()[0])
    t0 = time.monotonic()
    try:
        run(args, report)
    finally:
        kill_running()
    log(f"done in {time.monotonic() - t0:.0f} s")
    report.print_table()
    if args.json:
        report.write_json(args.json)


if __name__ == "__main__":
    main()
